"""The one way training writes a checkpoint: periodic `ckpt-<step>.pt` and `best.pt` alike.

Before any file is written, the weights must be finite (else `TrainingDiverged`, and the last good checkpoint is
kept) and, under torchrun, identical on every rank. Every rank calls these functions (the checks and the RNG
gathering are collectives); rank 0 alone writes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sngan import checkpoint as ckpt
from sngan.distributed import max_divergence
from sngan.errors import SnganError, TrainingDiverged
from sngan.train.ownership import MARKER, read_run_id
from sngan.train.state import TrainState


def write_checkpoint(state: TrainState, path: Path) -> Path:
    """Check the weights, snapshot the state (all ranks) and write it atomically to `path` (rank 0)."""
    check_finite_weights(state)
    check_ranks_agree(state)
    snapshot = state.snapshot()
    if state.dist.is_main:
        check_still_ours(path.parent.parent, state.run_id)
        ckpt.save_checkpoint(snapshot, path)
    return path


def check_still_ours(run_dir: Path, run_id: str | None) -> None:
    """Stop when the run folder lost its marker (deleted or replaced while training): saving would re-create
    checkpoints/ in a folder that is no longer this run's."""
    if run_id is not None and read_run_id(run_dir) != run_id:
        raise SnganError(f"run folder '{run_dir}' is gone or no longer this run's (its {MARKER} marker is missing "
                         f"or changed): stopping without writing; the weights since the last checkpoint are lost")


def save_periodic(state: TrainState, ckpt_dir: Path) -> Path:
    """`ckpt-<step>.pt` through `write_checkpoint`, then prune old periodic checkpoints (best.pt is kept apart)."""
    path = write_checkpoint(state, ckpt.checkpoint_path(ckpt_dir, state.step))
    if state.dist.is_main:
        ckpt.prune_checkpoints(ckpt_dir, state.cfg.train.keep_checkpoints)
    return path


def check_ranks_agree(state: TrainState) -> None:
    """Under torchrun, the trained weights (and D's spectral-norm vectors) must be identical on every rank."""
    for name, net in (("generator", state.g.module), ("discriminator", state.d.module)):
        diff = max_divergence([*net.parameters(), *net.buffers()], state.dist)
        if diff > 0:
            raise SnganError(f"{name} differs between ranks by {diff:.3g} at step {state.step}: the processes "
                             f"are out of sync (report this as a bug)")


def check_finite_weights(state: TrainState) -> None:
    """Raise TrainingDiverged when a parameter of G or D holds NaN/inf (one host sync per network)."""
    for name, net in (("generator", state.g.module), ("discriminator", state.d.module)):
        if not torch.stack([torch.isfinite(p).all() for p in net.parameters()]).all():
            raise TrainingDiverged(f"non-finite {name} weights at step {state.step}; no checkpoint written "
                                   f"(the last good one is kept): lower optim.lr or check the data")
