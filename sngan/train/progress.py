"""What a training run prints while it runs: a tqdm bar on a terminal, plain lines everywhere else.

A bar redraws itself with carriage returns; in a file (a cluster job, `2>log`, `nohup`) every redraw stays, one
per iteration on one endless line. So the bar is shown only when stderr is a terminal and progress is on; otherwise
each `train.log_every` record becomes one line (step, losses, lr, it/s, ETA), printed through the run's `log`
(`--no-progress` keeps these lines). Every line the run says, from its first notice to its stop, done or error line,
is also kept in the run folder's `log.txt` with its UTC time (as StyleGAN2-ADA's runs keep one); the terminal
keeps the plain lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from sngan import progress as passes  # the one terminal rule is passes.on_terminal, for every command
from sngan.io import open_append
from sngan.progress import eta


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


def bar_wanted(progress: bool, stream: TextIO | None = None) -> bool:
    """A bar only when asked for and stderr (tqdm's stream) is a terminal (`sngan.progress.on_terminal`)."""
    return progress and passes.on_terminal(stream)


def utc_stamp(seconds: float | None = None) -> str:
    """'2026-12-04T05:40:00Z': the time every log.txt line starts with (UTC, whole seconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class Progress:
    """What a run prints: its one-line messages, the bar or the plain lines, and its log.txt.

    Every message is printed through `log` (rank 0's message function; None on the other ranks) and kept, with
    the UTC time it was said, for the run folder's log.txt: messages said before the folder is open (the start
    notices) are written there when it opens, so log.txt holds every line of the run with a time on each.

    Args:
        log: where plain lines go (None: this rank prints nothing).
        bar: draw a tqdm bar (see `bar_wanted`) once `begin` is called; else print one line per record.
    """

    def __init__(self, log: Callable[[str], None] | None, bar: bool):
        self._log, self.show_bar = log, bar
        self._file: TextIO | None = None
        self._early: list[str] = []  # lines said before log.txt opened, with their times
        self.total = 0
        self.bar: tqdm | None = None

    def begin(self, total: int, initial: int) -> None:
        """Start the bar (on a terminal) for a run that goes from step `initial` to `total`."""
        self.total = total
        self.bar = tqdm(total=total, initial=initial, disable=not self.show_bar, dynamic_ncols=True, desc="train")

    def open_file(self, path: Path) -> None:
        """Append every line said so far and every later line to `path` (the run folder's log.txt)."""
        if self._log is None:
            return
        self._file = open_append(path)  # closed in close(); never through a link
        self._file.write("".join(self._early))
        self._early = []

    def keep(self, text: str) -> None:
        """Keep a line in log.txt only (what the command line prints itself: the stop line, the final error)."""
        if self._log is None:
            return
        line = f"{utc_stamp()} {text}\n"
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
