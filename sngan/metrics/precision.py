"""Float32 matmul precision, decided here only: the TF32 switch training's bf16/tf32 modes turn on, and the exact
float32 context every score runs in.

`set_tf32` is the one place that knows how this torch version spells the switch (`fp32_precision` from torch 2.9,
where mixing it with the older `allow_tf32` flags is an error; `allow_tf32` before). `scoring_precision` wraps a
whole evaluation, generator forward and Inception alike: TF32 off and autocast off, whatever the training step
set, so an IS/FID computed during a bf16 run is the number `sngan eval` computes in plain float32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch


def _cudnn_conv() -> Any:
    """`torch.backends.cudnn.conv` (torch >= 2.9), or None. Read by name: torch swaps that module for an object at
    import and declares its attributes to type checkers by hand, without `conv`."""
    return getattr(torch.backends.cudnn, "conv", None)


def _new_api() -> bool:
    return getattr(_cudnn_conv(), "fp32_precision", None) is not None


def set_tf32(allow: bool) -> None:
    """TF32 on or off for float32 cuDNN convolutions and CUDA matmuls (process-wide)."""
    if _new_api():
        _cudnn_conv().fp32_precision = torch.backends.cuda.matmul.fp32_precision = "tf32" if allow else "ieee"
    else:
        torch.backends.cuda.matmul.allow_tf32 = allow
        torch.backends.cudnn.allow_tf32 = allow


def saved_tf32() -> tuple:
    """The current float32 matmul/conv settings, for `restore_tf32`."""
    if _new_api():
        return (_cudnn_conv().fp32_precision, torch.backends.cuda.matmul.fp32_precision)
    return (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)


def restore_tf32(saved: tuple) -> None:
    """Put back what `saved_tf32` returned."""
    if _new_api():
        _cudnn_conv().fp32_precision, torch.backends.cuda.matmul.fp32_precision = saved
    else:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@contextlib.contextmanager
def scoring_precision() -> Iterator[None]:
    """Exact float32 inside the block: TF32 off and autocast off on CUDA and CPU; the previous TF32 state is
    restored after it."""
    previous = saved_tf32()
    set_tf32(False)
    try:
        with torch.autocast("cuda", enabled=False), torch.autocast("cpu", enabled=False):
            yield
    finally:
        restore_tf32(previous)
