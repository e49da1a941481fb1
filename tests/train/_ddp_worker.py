"""Run under torchrun: trains the toy task and writes rank 0's losses to argv[1]."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from toy import ToyTask, toy_data, toy_model  # noqa: E402

from prefline.train.engine import TrainConfig, Trainer  # noqa: E402

if __name__ == "__main__":
    out, batch = Path(sys.argv[1]), int(sys.argv[2])
    cfg = TrainConfig(lr=0.05, batch_size=batch, epochs=2, precision="fp32", warmup_ratio=0.0)
    result = Trainer(toy_model(), ToyTask(), toy_data(), cfg, run_dir=out).fit()
    (out / "losses.json").write_text(json.dumps([r["loss"] for r in result.history]))
