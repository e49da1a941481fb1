#!/usr/bin/env bash
# Short runs of every online method on the embedded models (issue 12 item 8), recorded in
# docs/benchmarks/online.md. CPU only; sized so that all of them finish in about an hour on a
# busy 2-core machine.
#
#   scripts/online-runs.sh [WORK_DIR] [STEP ...]     (default WORK_DIR /tmp/online-runs; all steps)
#
# As recorded (a clean tree of commit C, run with the repository's venv):
#   git archive C | tar -x -C /tmp/clean && echo C > /tmp/clean/.commit
#   PY=$PWD/.venv/bin/python HH=$PWD/../shared/data/hh-rlhf-harmless-base-test.first800.jsonl.gz \
#     PARALLEL=1 /tmp/clean/scripts/online-runs.sh /tmp/online-runs
#
# Steps, in order: prompts rm bon eval-bon sft eval-sft odpo eval-odpo rloo eval-rloo grpo
# eval-grpo ppo eval-ppo report. Each step logs to WORK/logs/STEP.log, writes its --json result to
# WORK/STEP.json and its wall time / peak RSS to WORK/logs/STEP.time; a failed step is
# reported and the later ones still run (an eval step needs its training step's result).
#
# Proxy and gold are kept apart on purpose: the proxy reward model learns from the bundled
# HH-RLHF harmless pairs (human labels), and the held-out judge is the principle judge `rules`,
# which produces no training signal anywhere in these runs.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# PY: a Python with prefline's dependencies (default: the repository's venv). The stages run
# from $ROOT/src, so a clean `git archive` of a commit runs its own code with that venv.
PY=${PY:-$ROOT/.venv/bin/python}
export PYTHONPATH="$ROOT/src"
PREFLINE="$PY -m prefline"
HH=${HH:-$ROOT/../shared/data/hh-rlhf-harmless-base-test.first800.jsonl.gz}
FIGS=${FIGS:-$ROOT/docs/benchmarks/online-figures}
WORK=${1:-/tmp/online-runs}
shift || true
STEPS=${*:-prompts rm bon eval-bon sft eval-sft odpo eval-odpo rloo eval-rloo grpo eval-grpo ppo eval-ppo report}
mkdir -p "$WORK/logs"
export PREFLINE_DB="sqlite:///$WORK/store.db"
export PREFLINE_HOME="$WORK/home"
# One torch thread per process: on a shared, oversubscribed machine a second thread makes
# every matmul wait for a preempted worker (a SmolLM2 decode step 3.4 s with 2 threads vs
# 0.2 s with 1, docs/benchmarks/generation.md); the first online runs here, with 2 threads,
# did one monitor pass in 30 minutes.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

NEW=48          # new tokens per response, everywhere
GOLD=rules      # held-out judge: never a training signal
RM="$WORK/rm"
TRAIN="$WORK/prompts-train.jsonl"   # 32 bundled train prompts (stratified by category)
DEV="$WORK/prompts-dev.jsonl"       # 16 bundled eval prompts: the monitor's fixed set
EVAL="$WORK/prompts-eval.jsonl"     # 32 other bundled eval prompts: the held-out evaluation
MON=(--monitor-prompts "$DEV" --monitor-limit 16 --gold "$GOLD" --gold-patience 100)

step() {  # step NAME CMD...: run one stage, JSON result to WORK/NAME.json
  local name=$1; shift
  echo "$(date -u +%H:%M:%S) start $name"
  /usr/bin/time -f "wall_s=%e max_rss_kb=%M" -o "$WORK/logs/$name.time" \
    "$@" --json >"$WORK/$name.json" 2>"$WORK/logs/$name.log"
  local rc=$?
  echo "$(date -u +%H:%M:%S) end $name rc=$rc $(cat "$WORK/logs/$name.time" | tail -1)"
  return $rc
}

path_of() {  # the trained policy folder from a training step's JSON result
  "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["path"])' "$WORK/$1.json"
}

evaluate() {  # evaluate NAME POLICY: policy vs the untouched base on the held-out prompts
  step "eval-$1" $PREFLINE eval policy --policy "$2" --baseline default --prompts "$EVAL" \
    --judge "$GOLD" --reward "$RM" --max-new-tokens $NEW --n-samples 1 --seed 0 \
    --out "$WORK/eval-$1"
}

run_step() {
  case $1 in
  prompts) "$PY" - "$ROOT/src/prefline/data/prompts.jsonl" "$TRAIN" "$DEV" "$EVAL" <<'EOF'
import json, sys
from collections import defaultdict
rows = [json.loads(line) for line in open(sys.argv[1])]
by = defaultdict(list)
for r in rows:
    by[(r["split"], r["category"])].append(r)
cats = sorted({r["category"] for r in rows})
def take(split, start, counts):  # the first prompts of each category, in file order
    return [r for c, n in zip(cats, counts) for r in by[(split, c)][start:start + n]]
train = take("train", 0, [5, 5, 5, 5, 4, 4, 4])
evl = take("eval", 0, [5, 5, 5, 5, 4, 4, 4])
dev = take("eval", 5, [3, 3, 2, 2, 2, 2, 2])
for path, part in zip(sys.argv[2:], (train, dev, evl)):
    with open(path, "w") as f:
        f.writelines(json.dumps({"id": r["id"], "prompt": r["prompt"], "category": r["category"]}) + "\n"
                     for r in part)
    print(path, len(part))
EOF
  ;;
  rm) step rm $PREFLINE train reward --data "$HH" \
        --max-steps 24 --batch-size 8 --max-length 128 --out "$RM" ;;
  bon) step bon $PREFLINE generate --prompts "$TRAIN" --best-of 4 --reward "$RM" \
        --max-new-tokens $NEW --temperature 1.0 --seed 0 --out "$WORK/best-of-4.jsonl" ;;
  sft) step sft $PREFLINE train sft --data "$WORK/best-of-4.jsonl" --val-fraction 0 --test-fraction 0 \
        --max-steps 8 --batch-size 4 --lr 2e-5 --max-length 256 --out "$WORK/sft" ;;
  odpo) step odpo $PREFLINE train online-dpo --prompts "$TRAIN" --reward "$RM" "${MON[@]}" \
        --rounds 2 --prompts-per-round 16 --k 4 --max-new-tokens $NEW --max-steps 4 --batch-size 4 \
        --beta 0.1 --lr 5e-5 --out "$WORK/odpo" ;;
  rloo|grpo) local steps=6; [ "$1" = grpo ] && steps=4
      step "$1" $PREFLINE train "$1" --prompts "$TRAIN" --reward-model "$RM" "${MON[@]}" \
        --monitor-every 2 --k 4 --max-new-tokens $NEW --max-steps $steps --batch-size 4 --lr 2e-5 \
        --out "$WORK/$1" ;;
  ppo) step ppo $PREFLINE train ppo --prompts "$TRAIN" --reward-model "$RM" "${MON[@]}" \
        --monitor-every 2 --k 1 --max-new-tokens $NEW --max-steps 4 --batch-size 8 --lr 2e-5 \
        --out "$WORK/ppo" ;;
  eval-bon) step eval-bon $PREFLINE eval policy --policy default --baseline best-of-4:default \
        --prompts "$EVAL" --judge "$GOLD" --reward "$RM" --max-new-tokens $NEW --n-samples 1 --seed 0 \
        --out "$WORK/eval-bon" ;;
  report) "$PY" - "$WORK" "$FIGS" <<'EOF'
# Per-run monitor plots copied, one combined Gao et al. figure, and the numbers of the tables.
import json, shutil, sys
from pathlib import Path
from prefline.base.plots import new_figure, png_bytes
work, figs = Path(sys.argv[1]), Path(sys.argv[2])
runs = {"online DPO": "odpo", "RLOO": "rloo", "GRPO": "grpo", "PPO": "ppo"}
fig, _ = new_figure(9.0, 3.4)
fig.clf()  # two panels side by side: proxy and gold share the KL axis, not the scale
ax_p, ax_g = fig.subplots(1, 2)
for label, name in runs.items():
    mon = work / name / "monitor.jsonl"
    if not mon.exists():
        continue
    shutil.copy(work / name / "overoptimisation.png", figs / f"overoptimisation-{name}.png")
    recs = sorted((json.loads(line) for line in open(mon)), key=lambda r: r["step"])
    for r in recs:
        print(name, {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()})
    kl = [r["kl"] for r in recs]
    ax_p.plot(kl, [r["proxy"] for r in recs], "o-", label=label)
    ax_g.plot(kl, [r["gold"] for r in recs], "s--", label=label)
for ax, what in ((ax_p, "proxy: MiniLM reward model (optimised)"),
                 (ax_g, "gold: rules judge (held out)")):
    ax.set_xlabel("KL(π‖π_init), nats per response")
    ax.set_title(what, fontsize=9)
ax_p.set_ylabel("mean score, 16 monitor prompts")
ax_g.legend(fontsize=8)
(figs / "overoptimisation-smollm2-all.png").write_bytes(png_bytes(fig))
r3 = lambda v: None if v is None else round(v, 3)  # noqa: E731
for name in ("bon", "sft", "odpo", "rloo", "grpo", "ppo"):
    p = work / f"eval-{name}.json"
    if not p.exists() or not p.stat().st_size:
        print("eval", name, "missing")
        continue
    e = json.loads(p.read_text())
    j, x = e["judge"], e.get("proxy") or {}
    times = {s: (work / "logs" / f"{s}.time").read_text().strip()
             for s in (name, f"eval-{name}") if (work / "logs" / f"{s}.time").exists()}
    print("eval", name, "judge", r3(j["win_rate"]), [r3(c) for c in j["ci"]],
          "lc", r3(j["length_controlled_win_rate"]), "proxy", r3(x.get("win_rate")),
          [r3(c) for c in x.get("ci", [])], "rm", r3(x.get("mean_reward_policy")),
          r3(x.get("mean_reward_baseline")), "kl", r3(e["kl"]),
          "len", e["policy"]["mean_length_words"], e["baseline"]["mean_length_words"], times)
EOF
  ;;
  eval-*) local name=${1#eval-}; evaluate "$name" "$(path_of "$name")" ;;
  *) echo "unknown step $1" >&2; return 2 ;;
  esac
}

# The code version: the checkout's commit and how many tracked files differ from it, or the
# .commit file written next to a `git archive` of one.
if git -C "$ROOT" rev-parse HEAD >/dev/null 2>&1; then
  echo "commit $(git -C "$ROOT" rev-parse --short HEAD) dirty=$(git -C "$ROOT" status --porcelain -uno | wc -l)"
else
  echo "commit $(cat "$ROOT/.commit" 2>/dev/null || echo unknown) (archive)"
fi
# PARALLEL=1 runs the four online methods (each followed by its eval) at once: on a shared
# machine four processes get about four times the CPU share of one.
chain() { for s in "$@"; do run_step "$s" || echo "step $s FAILED (see $WORK/logs/$s.log)"; done; }
if [ "${PARALLEL:-0}" = 1 ] && [ -z "${*:-}" ]; then
  chain prompts rm bon eval-bon sft eval-sft
  for m in odpo rloo grpo ppo; do chain "$m" "eval-$m" > "$WORK/logs/chain-$m.out" 2>&1 & done
  wait
  cat "$WORK"/logs/chain-*.out
  chain report
else
  chain $STEPS
fi
echo "$(date -u +%H:%M:%S) all done"
