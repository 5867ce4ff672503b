"""What a run records while it runs: its lines (`Progress`: the terminal and log.txt) and its records and sample
grids (`RunLog`: metrics.jsonl, TensorBoard, W&B, one sink each).

Lines. A bar redraws itself with carriage returns; in a file (a cluster job, `2>log`, `nohup`) every redraw stays,
one per iteration on one endless line. So the bar is shown only when stderr is a terminal and progress is on;
otherwise each `train.log_every` record becomes one line (step, losses, lr, it/s, ETA), printed through the run's
`log` (`--no-progress` keeps these lines). Every line the run says, from its first notice to its stop, done or error
line, is also kept in the run folder's `log.txt` with its UTC time (as StyleGAN2-ADA's runs keep one); the terminal
keeps the plain lines.

Records. `RunLog` writes each record to metrics.jsonl (the file every reader uses), then to its sinks in order:
TensorBoard (`TensorBoardSink`, when installed) and W&B (`WandbSink`, when `train.wandb_project` is set).
Every tag is `<group>/<key>`, the key exactly as metrics.jsonl writes it (a search for a key finds its tag), grouped
by their first component as TensorBoard lays them out: `loss/d_loss`, `loss/g_loss`; `train/lr`, `train/it_per_s`;
peak memory under `resources/` (`resources/cpu_mem_gb`, on CUDA `resources/cuda_mem_gb`); spectral-norm diagnostics
(`train.inspect_every`) under `sn/` (`sn/sn_ratio/<layer>`, `sn/sn_ratio_min`, `sn/lipschitz_bound`); everything
else, the metrics (`is5k`, `fid5k_train50k`, ...), under `metrics/`. A record's `time` (Unix seconds) is the event's
wall time, not a scalar: as float32 every value would read 1.796e9.

W&B (`pip install 'sngan[wandb]'`, `train.wandb_project`) gets the same records and grids under the same tags, at
the same steps. The W&B run is the sngan run: its id is the run folder's id (`.sngan-run`), so a resumed run
continues the same W&B run (`resume="allow"`), and its files live in `<run>/wandb/`. With `train.wandb_mode:
offline` nothing leaves the machine (`wandb sync <run>/wandb/offline-run-*` uploads later). TensorBoard stays the
default.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Literal, Protocol, cast

import numpy as np
from tqdm import tqdm

from sngan.config import TrainConfig
from sngan.errors import SnganError
from sngan.io import Folder, writing
from sngan.progress import eta
from sngan.train.rundir import RunFolder

# Lines: the terminal and log.txt

def log_line(record: dict[str, Any], total: int) -> str:
    """'step 100/900 | d_loss 1.2345 | g_loss 0.6789 | lr 2.00e-04 | 31.2 it/s | mem cpu 1.23 GB cuda 4.56 GB |
    ETA 25s' from a loss record (the peak memory of `steps.peak_memory`; cuda only on CUDA, none in older
    records)."""
    rate = record["it_per_s"]
    left = eta((total - record["step"]) / rate) if rate > 0 else "?"
    memory = " ".join(f"{name} {record[key]:.2f} GB" for name, key in (("cpu", "cpu_mem_gb"),
                                                                         ("cuda", "cuda_mem_gb")) if key in record)
    return (f"step {record['step']}/{total} | d_loss {record['d_loss']:.4f} | g_loss {record['g_loss']:.4f} | "
            f"lr {record['lr']:.2e} | {rate:.1f} it/s | {f'mem {memory} | ' if memory else ''}ETA {left}")


class Progress:
    """What a run prints: its one-line messages, the bar or the plain lines, and its log.txt.

    Every message is printed through `log` (rank 0's message function; None on the other ranks) and kept, with
    the UTC time it was said, for the run folder's log.txt: messages said before the folder is open (the start
    notices) are written there when it opens, so log.txt holds every line of the run with a time on each.

    Args:
        log: where plain lines go (None: this rank prints nothing).
        bar: draw a tqdm bar once `begin` is called (asked for, and stderr is a terminal:
            `sngan.progress.on_terminal`); else print one line per record.
    """

    def __init__(self, log: Callable[[str], None] | None, bar: bool):
        self._log, self.show_bar = log, bar
        self._file: IO[str] | None = None
        self._early: list[str] = []  # lines said before log.txt opened, with their times
        self.total = 0
        self.bar: tqdm | None = None

    def begin(self, total: int, initial: int) -> None:
        """Start the bar (on a terminal) for a run that goes from step `initial` to `total`."""
        self.total = total
        self.bar = tqdm(total=total, initial=initial, disable=not self.show_bar, dynamic_ncols=True, desc="train")

    def open_file(self, folder: RunFolder) -> None:
        """Append every line said so far and every later line to the run folder's log.txt."""
        if self._log is None:
            return
        self._file = folder.handle.open_append("log.txt")  # closed in close(); through the handle, never a link
        self._file.write("".join(self._early))
        self._early = []

    def keep(self, text: str) -> None:
        """Keep a line in log.txt only (what the command line prints itself: the stop line, the final error)."""
        if self._log is None:
            return
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {text}\n"  # UTC, whole seconds
        if self._file is not None:
            self._file.write(line)
            self._file.flush()
        else:
            self._early.append(line)

    def message(self, text: str) -> None:
        """A one-line message: printed through `log` and kept in log.txt."""
        if self._log is None:
            return
        self._log(text)
        self.keep(text)

    def update(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def report(self, record: dict[str, Any]) -> None:
        """One loss record: the bar's postfix on a terminal, else one printed line; always a line in log.txt."""
        line = log_line(record, self.total)
        if self.show_bar and self.bar is not None:
            self.bar.set_postfix(d=f"{record['d_loss']:.3f}", g=f"{record['g_loss']:.3f}", lr=f"{record['lr']:.2e}")
            self.keep(line)
        else:
            self.message(line)

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def close(self) -> None:
        self.close_bar()
        if self._file is not None:
            self._file.close()
            self._file = None


# Records and grids: TensorBoard and W&B tags, the sinks, the run log that feeds them

TRAIN_GROUPS = {"d_loss": "loss", "g_loss": "loss", "lr": "train", "it_per_s": "train", "cpu_mem_gb": "resources",
                "cuda_mem_gb": "resources"}  # StyleGAN2-ADA's groups
SN_KEYS = ("sn_ratio", "lipschitz_bound", "operator_norm_product")


def tensorboard_tag(key: str) -> str:
    """'d_loss' -> 'loss/d_loss', 'sn_ratio/block1.c1' -> 'sn/sn_ratio/block1.c1', 'fid5k_train50k' ->
    'metrics/fid5k_train50k': the group, then the metrics.jsonl key as it is."""
    if key in TRAIN_GROUPS:
        return f"{TRAIN_GROUPS[key]}/{key}"
    if key.startswith(SN_KEYS):
        return f"sn/{key}"
    return f"metrics/{key}"


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """{tag: value} of a record's finite numbers, `step` and `time` left out."""
    return {tensorboard_tag(k): float(v) for k, v in record.items()
            if k not in ("step", "time") and isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v)}


class TensorBoardSink:
    """One of the run log's sinks: a record's scalars at its step, stamped with its own wall time when it has one,
    and sample grids (PNG) as the image `samples`.

    TensorBoard's writer thread reopens its event file by name for every append. Where the system names open
    folders (`/proc/self/fd/N`, Linux) it is given the run's `tensorboard/` handle by that name (else its path), so
    its appends land in the folder the run made whatever its path now leads to; each record first checks that the part
    is still that folder (`Folder.check`), so a swapped `tensorboard/` stops the run with a checkpoint.
    """

    def __init__(self, folder: Folder, purge_step: int | None):
        from torch.utils.tensorboard import SummaryWriter

        self.folder = folder
        with writing(folder.path):
            # events at steps >= purge_step are hidden: step start_step itself is kept, as in metrics.jsonl
            proc = f"/proc/self/fd/{folder.fd}"
            self.writer = SummaryWriter(proc if os.path.isdir(proc) else str(folder.path), purge_step=purge_step)

    def write(self, record: dict[str, Any]) -> None:
        self.folder.check()
        walltime = record.get("time")
        for tag, value in scalars(record).items():
            self.writer.add_scalar(tag, value, record["step"], walltime=walltime)

    def grid(self, path: Path, step: int) -> None:
        from PIL import Image

        self.folder.check()
        with Image.open(path) as image:
            self.writer.add_image("samples", np.asarray(image.convert("RGB")), step, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


def check_wandb(t: TrainConfig) -> None:
    """Refuse `train.wandb_project` (set) without the wandb package, before anything is written."""
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

    mode = cast(Literal["online", "offline", "disabled"], t.wandb_mode)  # the config's choices, checked there
    return wandb.init(project=t.wandb_project, entity=t.wandb_entity or None, mode=mode, dir=str(run_dir),
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


class Sink(Protocol):
    """Where the run log writes besides metrics.jsonl: TensorBoard (`TensorBoardSink`), W&B (`WandbSink`)."""

    def write(self, record: dict[str, Any]) -> None: ...

    def grid(self, path: Path, step: int) -> None: ...

    def close(self) -> None: ...


class RunLog:
    """The run's records: every record goes to metrics.jsonl, the file every reader uses, then with each sample grid
    to its `sinks`: TensorBoard events (when installed) and a W&B run (`wandb`: `open_wandb` bound to the config,
    when asked for). It writes only through its `RunFolder`, which owns the folder (checks, lock, marker, what a
    resume sets aside); TensorBoard hides the events of steps a resume abandoned (`purge_step`: they stay in the
    event files, which TensorBoard cannot split).
    """

    def __init__(self, folder: RunFolder, wandb: Callable[[Path, str], Any] | None = None):
        self.folder = folder
        self.sinks: list[Sink] = []
        try:
            try:
                import torch.utils.tensorboard  # noqa: F401
            except ImportError:  # TensorBoard is the optional extra sngan[tensorboard]
                pass
            else:
                self.sinks.append(TensorBoardSink(folder.part("tensorboard"), folder.purge_step))
            wandb_run = wandb(folder.path, folder.run_id) if wandb is not None else None  # open_wandb, bound
            if wandb_run is not None:
                self.sinks.append(WandbSink(wandb_run))
        except BaseException:
            self.close()
            raise

    def log(self, record: dict[str, Any]) -> None:
        """Write one record (must hold `step`): metrics.jsonl first, then every sink (TensorBoard, W&B)."""
        self.folder.append_record(json.dumps(record) + "\n")
        for sink in self.sinks:
            sink.write(record)

    def grid(self, path: Path, step: int) -> None:
        """Show a saved sample grid (`samples` at `step`) in every sink that shows images."""
        for sink in self.sinks:
            sink.grid(path, step)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
