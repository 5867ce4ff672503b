"""What a training run prints while it runs: a tqdm bar on a terminal, plain lines everywhere else.

A bar redraws itself with carriage returns; in a file (a cluster job, `2>log`, `nohup`) every redraw stays, one
per iteration on one endless line. So the bar is shown only when stderr is a terminal and progress is on; otherwise
each `train.log_every` record becomes one line (step, losses, lr, it/s, ETA), printed through the run's `log`
(`--no-progress` keeps these lines). Every line, and every message logged once the run folder is open, is also
appended to the run folder's `log.txt` (as StyleGAN2-ADA's runs keep one).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from sngan.io import open_append


def eta(seconds: float) -> str:
    """3725 -> '1h02m05s', 65 -> '1m05s', 7 -> '7s'."""
    s = int(round(seconds))
    h, m, s = s // 3600, s // 60 % 60, s % 60
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def log_line(record: dict[str, Any], total: int) -> str:
    """'step 100/900 | d_loss 1.2345 | g_loss 0.6789 | lr 2.00e-04 | 31.2 it/s | ETA 25s' from a loss record."""
    rate = record["it_per_s"]
    left = eta((total - record["step"]) / rate) if rate > 0 else "?"
    return (f"step {record['step']}/{total} | d_loss {record['d_loss']:.4f} | g_loss {record['g_loss']:.4f} | "
            f"lr {record['lr']:.2e} | {rate:.1f} it/s | ETA {left}")


def bar_wanted(progress: bool, stream: TextIO | None = None) -> bool:
    """A bar only when asked for and stderr (tqdm's stream) is a terminal."""
    stream = sys.stderr if stream is None else stream
    return progress and hasattr(stream, "isatty") and stream.isatty()


class Progress:
    """The bar or the plain lines of one run, and its log.txt.

    Args:
        total: the run's last step.
        initial: the step it starts from.
        bar: draw a tqdm bar (see `bar_wanted`); else print one line per record.
        log: where plain lines go (rank 0's message function).
    """

    def __init__(self, total: int, initial: int, bar: bool, log: Callable[[str], None]):
        self.total, self._log, self._file = total, log, None
        self.bar = tqdm(total=total, initial=initial, disable=not bar, dynamic_ncols=True, desc="train")
        self.show_bar = bar

    def open_file(self, path: Path) -> None:
        """Append every later line and message to `path` (the run folder's log.txt)."""
        self._file = open_append(path)  # closed in close(); never through a link

    def message(self, text: str) -> None:
        """A one-line message: printed through `log` and kept in log.txt."""
        self._log(text)
        if self._file is not None:
            self._file.write(text + "\n")

    def update(self) -> None:
        self.bar.update(1)

    def report(self, record: dict[str, Any]) -> None:
        """One loss record: the bar's postfix on a terminal, else one printed line; always a line in log.txt."""
        line = log_line(record, self.total)
        if self.show_bar:
            self.bar.set_postfix(d=f"{record['d_loss']:.3f}", g=f"{record['g_loss']:.3f}", lr=f"{record['lr']:.2e}")
            if self._file is not None:
                self._file.write(line + "\n")
        else:
            self.message(line)

    def close(self) -> None:
        self.bar.close()
        if self._file is not None:
            self._file.close()
            self._file = None
