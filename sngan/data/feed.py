"""Feeding the training step: batches of real images in [-1, 1] on the training device.

- `Batches`: when the packed array fits `data.device_budget_mb`, the whole uint8 array (N, 3, H, W) lives on the
  device and a batch is one index gather there: no worker processes, no host-to-device copy per step.
- `StreamBatches`: otherwise the array stays memory-mapped; one background thread gathers the next few batches
  (uint8, into pinned memory when the device is CUDA) while the step runs, and the step copies them without
  blocking.

Both draw indices from `IndexOrder`: one seeded permutation per epoch (the authors' SerialIterator with shuffle).
`rank`/`world` give each of `world` processes every `world`-th index of the same permutation (equal shares, the
remainder dropped), which is the per-rank sharding DDP needs. Dequantization noise comes from the device's global
RNG in the calling thread, so a run resumed from a checkpoint sees exactly the same batches.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from sngan.data.sources import ImageSet
from sngan.errors import DataError

PREFETCH_DEPTH = 3  # batches gathered ahead by StreamBatches


def to_float(x_uint8: torch.Tensor, dequantize: bool) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float32 in [-1, 1]; with `dequantize`, x/128 - 1 + U(0, 1/128) as the authors.

    The noise comes from the global RNG of the tensor's device, so a checkpointed run resumes exactly.
    """
    if dequantize:
        x = x_uint8.float().div_(128.0).sub_(1.0)
        return x.add_(torch.rand_like(x).div_(128.0))
    return x_uint8.float().div_(127.5).sub_(1.0)


class IndexOrder:
    """Epoch permutations of range(num) from a seeded generator; a rank keeps every `world`-th index.

    The permutation is drawn on the CPU (the same order on every device) and moved to `device` once per epoch, so
    taking a batch of indices is a slice on the device: no host-to-device copy, no synchronisation per step.
    """

    def __init__(self, num: int, seed: int, rank: int = 0, world: int = 1, device: torch.device | None = None):
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} must be in [0, world {world})")
        if num < world:
            raise ValueError(f"{num} images cannot be shared by {world} ranks")
        self.num, self.rank, self.world = num, rank, world
        self.device = device or torch.device("cpu")
        self.generator = torch.Generator().manual_seed(seed)
        self.order = self._epoch()
        self.position = 0

    def _epoch(self) -> torch.Tensor:
        perm = torch.randperm(self.num, generator=self.generator)
        return perm[self.rank::self.world][:self.num // self.world].to(self.device)

    def __len__(self) -> int:
        return len(self.order)

    def take(self, n: int) -> torch.Tensor:
        """The next `n` indices (int64, on `device`), crossing into new epochs as needed."""
        parts = []
        while n > 0:
            if self.position >= len(self.order):
                self.order, self.position = self._epoch(), 0
            part = self.order[self.position:self.position + n]
            self.position += len(part)
            n -= len(part)
            parts.append(part)
        return torch.cat(parts)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        order = state["order"]
        if len(order) != len(self.order) or (len(order) and int(order.max()) >= self.num):
            raise DataError(f"the checkpoint's data order is for a dataset of another size ({len(order)} indices "
                            f"per epoch, this one has {len(self.order)}): resume with the dataset it was trained on")
        self.generator.set_state(state["generator"])
        self.order = order.to(self.device)
        self.position = int(state["position"])


class Batches:
    """Random batches drawn by index from a device-resident uint8 array, epoch by epoch."""

    def __init__(self, image_set: ImageSet, device: torch.device, seed: int, dequantize: bool = True,
                 rank: int = 0, world: int = 1):
        self.images = torch.from_numpy(np.asarray(image_set.images)).permute(0, 3, 1, 2).contiguous().to(device)
        self.labels = torch.from_numpy(np.asarray(image_set.labels)).to(device)  # (N,) int64
        self.dequantize = dequantize
        self.order = IndexOrder(len(self.images), seed, rank, world, device=self.images.device)

    def __len__(self) -> int:
        return len(self.order)

    def next(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(images (B, 3, H, W) float in [-1, 1], labels (B,) int64), both on the device."""
        index = self.order.take(batch_size)
        return to_float(self.images[index], self.dequantize), self.labels[index]

    def state_dict(self) -> dict:
        return self.order.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.order.load_state_dict(state)

    def close(self) -> None:
        """Nothing to stop (same interface as StreamBatches)."""


class StreamBatches:
    """Random batches gathered from a memory-mapped array by a background thread, a few batches ahead."""

    def __init__(self, image_set: ImageSet, device: torch.device, seed: int, dequantize: bool = True,
                 rank: int = 0, world: int = 1, depth: int = PREFETCH_DEPTH):
        self.images = image_set.images  # (N, H, W, 3) uint8 memory map
        self.labels = torch.from_numpy(np.asarray(image_set.labels))
        self.device, self.dequantize, self.depth = device, dequantize, depth
        self.pin = device.type == "cuda"
        self.order = IndexOrder(len(self.images), seed, rank, world)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="sngan-prefetch")
        self.pending: deque[tuple[dict, int, Future]] = deque()  # (order state before, batch size, gather)

    def __len__(self) -> int:
        return len(self.order)

    def _gather(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.images[np.sort(index.numpy())]  # sorted reads are sequential on disk
        rank = np.argsort(np.argsort(index.numpy()))  # back to the drawn order
        x = torch.from_numpy(np.ascontiguousarray(rows[rank].transpose(0, 3, 1, 2)))  # (B, 3, H, W) uint8
        return (x.pin_memory() if self.pin else x), self.labels[index]

    def _fill(self, batch_size: int) -> None:
        while len(self.pending) < self.depth:
            before = self.order.state_dict()
            index = self.order.take(batch_size)
            self.pending.append((before, batch_size, self.pool.submit(self._gather, index)))

    def next(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(images (B, 3, H, W) float in [-1, 1], labels (B,) int64), both on the device."""
        if self.pending and self.pending[0][1] != batch_size:  # batch size changed: redraw from the same point
            self.load_state_dict(self.pending[0][0])
        self._fill(batch_size)
        x, y = self.pending.popleft()[2].result()
        self._fill(batch_size)
        x = x.to(self.device, non_blocking=self.pin)
        return to_float(x, self.dequantize), y.to(self.device, non_blocking=self.pin)

    def state_dict(self) -> dict:
        """The order as of the batches handed out (batches gathered ahead are drawn again after a resume)."""
        return dict(self.pending[0][0]) if self.pending else self.order.state_dict()

    def load_state_dict(self, state: dict) -> None:
        for _, _, future in self.pending:
            future.cancel()
        self.pending.clear()
        self.order.load_state_dict(state)

    def close(self) -> None:
        """Stop the prefetch thread."""
        self.load_state_dict(self.state_dict())
        self.pool.shutdown(wait=True)


def make_batches(image_set: ImageSet, device: torch.device, seed: int, dequantize: bool, budget_mb: float,
                 rank: int = 0, world: int = 1, log: Callable[[str], None] | None = None) -> Batches | StreamBatches:
    """Device-resident `Batches` when the packed array fits `budget_mb` MiB, else `StreamBatches`.

    Args:
        image_set: the uint8 images and labels.
        device: the training device.
        seed: seed of the data order.
        dequantize: add U(0, 1/128) as the authors (see `to_float`).
        budget_mb: largest array (MiB) kept on the device (`data.device_budget_mb`).
        rank, world: this process's share of every epoch (1 process: 0, 1).
        log: where the one-line feeding summary goes (None = silent).

    Returns:
        An object with `next(batch_size)`, `state_dict()`, `load_state_dict()`, `close()` and `len()`.
    """
    size_mb = image_set.images.nbytes / 2 ** 20
    if size_mb <= budget_mb:
        batches: Batches | StreamBatches = Batches(image_set, device, seed, dequantize, rank, world)
        how = f"resident on {device} ({size_mb:.0f} MiB <= data.device_budget_mb {budget_mb:g})"
    else:
        batches = StreamBatches(image_set, device, seed, dequantize, rank, world)
        how = (f"memory-mapped with a prefetch thread{' and pinned memory' if batches.pin else ''} "
               f"({size_mb:.0f} MiB > data.device_budget_mb {budget_mb:g})")
    if log:
        log(f"feeding: {how}")
    return batches
