"""Graceful stops: a stop signal asks the loop to checkpoint and stop; a second Ctrl-C stops at once.

Stop signals: SIGINT (Ctrl-C), SIGTERM (`kill`, Slurm's time limit and preemption), SIGHUP (the terminal closed) and
SIGUSR2 (what Slurm sends ahead of a time limit through submitit). On a cluster one request arrives several times:
Slurm signals every process of the job, torchrun's agent forwards what it receives to its workers, and a Ctrl-C in
a terminal reaches the agent and the workers. So repeats are one request: any signal within `SAME_REQUEST_S` of the
first, and SIGTERM/SIGHUP/SIGUSR2 within `SAME_TERM_S` of it. After that a SIGINT (a second Ctrl-C) or a late
SIGTERM stops at once, without a checkpoint.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR2)
SAME_REQUEST_S = 1.0  # a Ctrl-C reaches torchrun's agent and workers, and the agent forwards it within this
SAME_TERM_S = 30.0  # Slurm's SIGTERM to every process plus torchrun's forwarded one (its agent kills after 30 s)


class SignalGuard:
    """Catches the stop signals while training (module docstring); `received` is the first one, or None.

    Args:
        say: where the one 'received' line goes (rank 0's message function; None on the other ranks).
    """

    def __init__(self, say: Callable[[str], None] | None = None) -> None:
        self.received: int | None = None
        self._first_at = 0.0
        self._say = say
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SignalGuard:
        for sig in STOP_SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.received is None:
            self.received, self._first_at = signum, time.monotonic()
            if self._say is not None:
                self._say(f"{name} received: finishing this step and writing a checkpoint (press Ctrl-C again to "
                          f"stop at once)")
            return
        if self._repeat(signum):
            return  # the same request, delivered again
        raise KeyboardInterrupt(f"second signal {name}: stopping without a checkpoint")

    def _repeat(self, signum: int) -> bool:
        """Whether `signum` repeats the request taken first (module docstring's windows)."""
        waited = time.monotonic() - self._first_at
        return waited < SAME_REQUEST_S or (signum != signal.SIGINT and waited < SAME_TERM_S)

    def _repeat_or_previous(self, signum: int, frame: Any) -> None:
        """After the guard: a repeat of the request it took is still that request (the stop line must not become
        'interrupted'); any other signal goes to the handler that was there before the guard."""
        if self._repeat(signum):
            return
        previous = self._previous.get(signum, signal.SIG_DFL)
        signal.signal(signum, previous)  # the request's window is over for this signal
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.raise_signal(signum)

    def __exit__(self, *exc: Any) -> None:
        # A stop request reaches a process several times, and not always before the checkpoint is written: a
        # killed `sngan study --jobs` parent sends PR_SET_PDEATHSIG once per thread of the parent that exits, and
        # torchrun's agent forwards Slurm's SIGTERM whenever it gets to it. Those repeats stay one request.
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if self.received is None else self._repeat_or_previous)


def pass_on(signum: int) -> None:
    """Deliver `signum` now to the handler that was in place before training (submitit's requeue on SIGUSR2, say),
    skipping the finished guards that would take it for a repeat of the stop request they served."""
    handler = signal.getsignal(signum)
    while isinstance(getattr(handler, "__self__", None), SignalGuard):
        handler = handler.__self__._previous.get(signum, signal.SIG_DFL)
    signal.signal(signum, handler)
    signal.raise_signal(signum)
