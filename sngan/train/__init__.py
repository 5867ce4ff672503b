"""Training: config -> `build_state` -> `train` (the loop) -> checkpoints, logs and samples in a run directory.

- `launch`: the `sngan train` command as a plain function (start or continue, torchrun's start-up agreement).
- `build`: seeding, data, models, optimisers, DDP and compile -> a `TrainState` (`state`, which also holds
  `open_resume`, the one opener of a checkpoint to continue).
- `steps`: one G iteration's pieces (learning rate, G step, D steps, EMA); `losses`, `regularizers`, `ema`, `perf`
  are their maths and speed options.
- `loop`: `train`, reading top to bottom, and the one checkpoint writer; `rundir`, `ownership`, `progress`,
  `tboard`, `wandb_log`: the run directory's files, its lock, its lines and its sinks; `signals`: graceful stops.
"""

from sngan.train.build import build_state
from sngan.train.loop import dry_run_summary, train
from sngan.train.state import TrainState

__all__ = ["TrainState", "build_state", "dry_run_summary", "train"]
