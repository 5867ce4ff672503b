"""Training: config -> `build_state` -> `train` (the loop) -> checkpoints, logs and samples in a run directory.

- `build`: seeding, data, models, optimisers, DDP and compile -> a `TrainState` (`state`).
- `steps`: one G iteration's pieces (learning rate, G step, D steps, EMA); `losses`, `ema`, `perf` are their maths
  and speed options.
- `loop`: `train`, reading top to bottom; `saving`: the one checkpoint writer; `rundir`: the run directory's files;
  `signals`: graceful stops.
"""

from sngan.train.build import build_state
from sngan.train.loop import dry_run_summary, train
from sngan.train.state import TrainState

__all__ = ["TrainState", "build_state", "dry_run_summary", "train"]
