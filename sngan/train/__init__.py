"""Training: config -> `build_state` -> `train` (the loop) -> checkpoints, logs and samples in a run directory.

- `launch`: the `sngan train` command as a plain function (start or continue, torchrun's start-up agreement).
- `state`: `build_state` (seeding, data, models, optimisers, DDP and compile) -> a `TrainState`, its checkpoint
  dict both ways, and `open_resume`, the one opener of a checkpoint to continue.
- `steps`: one G iteration's pieces (learning rate, G step, D steps, EMA); `losses`, `regularizers`, `ema`, `perf`
  are their maths and speed options.
- `loop`: `train`, reading top to bottom, the one checkpoint writer, and graceful stops on a signal; `rundir`: run
  folders, their names, owner and lock; `runlog`: what a run records as it runs (its lines, and its records and
  grids in metrics.jsonl, TensorBoard and W&B).
"""

from sngan.train.loop import train
from sngan.train.state import TrainState, build_state

__all__ = ["TrainState", "build_state", "train"]
