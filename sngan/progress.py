"""Progress of a long pass that is not training (packing, Inception passes, sampling): the training rule; and
warnings as they happen (`warning_lines`).

On a terminal (stderr is a tty) a tqdm bar; anywhere else (a cluster job, `2>log`) a plain line every
`PLAIN_EVERY_S` seconds with the count, the rate and the ETA, since a bar's carriage returns would pile up in a
file. Once the measured rate says the whole pass takes more than `LONG_PASS_S`, one line says so before the user
waits (with `hint`, e.g. that a GPU does it in seconds). `enabled=False` silences all of it.

Warnings (torch's, matplotlib's, ours) are said when they happen, one line each (`warning: Category: message`),
once per distinct message; a message that came again gets one more line with its count when the command (or the
training run) ends. Every command of the CLI runs inside `warning_lines`; a training run adds its own, which also
keeps each line in the run's log.txt with its time.
"""

from __future__ import annotations

import contextlib
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from typing import TextIO

from tqdm import tqdm

PLAIN_EVERY_S = 10.0  # seconds between plain lines off a terminal
LONG_PASS_S = 600.0  # a pass estimated longer than this is announced
MEASURE_AFTER_S = 2.0  # the estimate waits for this much measured time (the first batch carries warm-up)


def eta(seconds: float) -> str:
    """3725 -> '1h02m05s', 65 -> '1m05s', 7 -> '7s'."""
    s = int(round(seconds))
    h, m, s = s // 3600, s // 60 % 60, s % 60
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether `stream` (default stderr, tqdm's stream) is a terminal: the one rule for drawing a bar, for every
    command (off a terminal, plain lines instead)."""
    stream = sys.stderr if stream is None else stream
    return hasattr(stream, "isatty") and stream.isatty()


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


MAX_WARNING_CHARS = 300  # a warning's message on its line (some carry a whole traceback)
QUIET_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)  # Python's defaults


def warning_line(message: Warning | str, category: type[Warning]) -> str:
    """'warning: UserWarning: the message on one line' (cut at MAX_WARNING_CHARS)."""
    return f"warning: {category.__name__}: {' '.join(str(message).split())[:MAX_WARNING_CHARS]}"


@contextlib.contextmanager
def warning_lines(say: Callable[[str], None]) -> Iterator[dict[str, int]]:
    """Within the block, each distinct warning goes to `say` as one line when it is raised; on leaving (after a
    failure too) each line said more than once is said again with its count. Yields {line: times raised}.

    Every warning reaches the counter (filter "always") except the categories Python hides by default
    (`QUIET_WARNINGS`), unless the user chose filters (`python -W`, PYTHONWARNINGS), which are kept as they are.
    """
    counts: dict[str, int] = {}

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: TextIO | None = None,
             line: str | None = None) -> None:
        text = warning_line(message, category)
        counts[text] = counts.get(text, 0) + 1
        if counts[text] == 1:
            say(text)

    with warnings.catch_warnings():
        if not sys.warnoptions:
            warnings.simplefilter("always")
            for quiet in QUIET_WARNINGS:
                warnings.filterwarnings("ignore", category=quiet)
        warnings.showwarning = show
        try:
            yield counts
        finally:
            for text, times in counts.items():
                if times > 1:
                    say(f"{text} (raised {times} times in all)")


class PassProgress:
    """Counts of one pass; `update(n)` after each batch, `close()` at the end.

    Args:
        total: items in the pass.
        desc: what the pass is ('inception pass', 'packing cifar10 train').
        enabled: False prints nothing.
        unit: what is counted.
        log: where plain lines and the estimate go (default stderr).
        hint: appended to the long-pass estimate.
    """

    def __init__(self, total: int, desc: str, enabled: bool = True, unit: str = "img",
                 log: Callable[[str], None] | None = None, hint: str = ""):
        self.total, self.desc, self.enabled, self.unit, self.hint = total, desc, enabled, unit, hint
        self.log = log or _stderr
        self.done = 0
        self.start = self.last = time.monotonic()
        self.first: tuple[float, int] | None = None  # (time, count) after the first update: the rate excludes it
        self.warned = False
        self.bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True) if enabled and on_terminal() else None

    def rate(self, now: float) -> float:
        """Items per second measured after the first batch (0 until there is a measurement)."""
        if self.first is None or now <= self.first[0] or self.done <= self.first[1]:
            return 0.0
        return (self.done - self.first[1]) / (now - self.first[0])

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.first is None:
            self.first = (now, self.done)
            return self._show(now)
        rate = self.rate(now)
        if self.enabled and not self.warned and rate > 0 and now - self.first[0] >= MEASURE_AFTER_S:
            self.warned = True
            whole = (self.total - self.first[1]) / rate + (self.first[0] - self.start)
            if whole > LONG_PASS_S:
                self._write(f"{self.desc}: {self.total} {self.unit} will take about {eta(whole)} at the measured "
                            f"{rate:.1f} {self.unit}/s{self.hint}")
        self._show(now)

    def _show(self, now: float) -> None:
        if self.bar is not None:
            self.bar.update(self.done - self.bar.n)
        elif self.enabled and now - self.last >= PLAIN_EVERY_S and self.done < self.total:
            self.last = now
            rate = self.rate(now)
            left = eta((self.total - self.done) / rate) if rate > 0 else "?"
            self._write(f"{self.desc}: {self.done}/{self.total} {self.unit} ({100 * self.done / self.total:.0f}%), "
                        f"{rate:.1f} {self.unit}/s, ETA {left}")

    def _write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line)
        else:
            self.log(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cpu_hint(device: object) -> str:
    """The advice appended to a long pass's estimate when it runs on the CPU (`device`: a torch device or name)."""
    on_cpu = str(getattr(device, "type", device)) == "cpu"
    return "; on the CPU: a GPU does this in seconds to minutes (--device cuda)" if on_cpu else ""
