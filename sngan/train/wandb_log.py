"""Optional Weights & Biases logging (`pip install 'sngan[wandb]'`, `train.wandb_project`): the same records and
sample grids TensorBoard gets, under the same grouped tags (`sngan.train.tboard.scalars`), at the same steps.

The W&B run is the sngan run: its id is the run folder's id (`.sngan-run`), so a resumed run continues the same
W&B run (`resume="allow"`), and its files live in `<run>/wandb/`. With `train.wandb_mode: offline` nothing leaves
the machine (`wandb sync <run>/wandb/offline-run-*` uploads later). TensorBoard stays the default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sngan.config import TrainConfig
from sngan.errors import SnganError
from sngan.train.tboard import scalars


def check_wandb(t: TrainConfig) -> None:
    """Refuse `train.wandb_project` without the wandb package, before anything is written."""
    if not t.wandb_project:
        return
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise SnganError("train.wandb_project is set but the wandb package is not installed: pip install "
                         "'sngan[wandb]', or set train.wandb_project to ''") from None
    if t.wandb_mode == "online" and not logged_in():
        raise SnganError("train.wandb_project is set but W&B is not logged in on this machine: run `wandb login` "
                         "(or set WANDB_API_KEY), or set train.wandb_mode=offline and `wandb sync` later")


def logged_in() -> bool:
    """Whether an online W&B run can start without asking: an API key in WANDB_API_KEY or in the netrc entry
    `wandb login` writes for the W&B host (WANDB_BASE_URL, default api.wandb.ai)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    import netrc
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        found = netrc.netrc(os.environ.get("NETRC")).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(found and found[2])


def open_wandb(run_dir: Path, run_id: str, t: TrainConfig, config: dict[str, Any]) -> Any | None:
    """The W&B run for `run_dir` (None when `train.wandb_project` is empty)."""
    if not t.wandb_project:
        return None
    import wandb

    return wandb.init(project=t.wandb_project, entity=t.wandb_entity or None, mode=t.wandb_mode, dir=str(run_dir),
                      id=run_id, name=run_dir.name, resume="allow", config=config)


class WandbSink:
    """One of the run log's sinks: a record's finite numbers at its step, sample grids as the image `samples`."""

    def __init__(self, run: Any):  # a wandb run (open_wandb)
        self.run = run

    def write(self, record: dict[str, Any]) -> None:
        values = scalars(record)
        if values:
            self.run.log(values, step=int(record["step"]))

    def grid(self, path: Path, step: int) -> None:
        import wandb

        self.run.log({"samples": wandb.Image(str(path))}, step=step)

    def close(self) -> None:
        self.run.finish()
