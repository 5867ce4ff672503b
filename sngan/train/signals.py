"""Graceful stops: the first SIGINT/SIGTERM asks the loop to checkpoint and stop; the second stops at once."""

from __future__ import annotations

import signal
from typing import Any

from tqdm import tqdm


class SignalGuard:
    """First SIGINT/SIGTERM: finish the step, checkpoint, stop. Second: stop at once."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SignalGuard:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:
            raise KeyboardInterrupt(f"second signal {signal.Signals(signum).name}: stopping without a checkpoint")
        self.received = signum
        tqdm.write(f"{signal.Signals(signum).name} received: finishing this step and writing a checkpoint "
                   f"(send it again to stop at once)")

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
