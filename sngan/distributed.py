"""Devices and processes: the device to run on, torchrun rank discovery, and the few collectives sngan needs.

Launch with `torchrun --nproc_per_node=N -m sngan train --config FILE` (one node) or with torchrun's rendezvous
options across nodes. Semantics:
- the config's batch sizes are global (the paper's) and are split evenly across ranks;
- every rank draws its own latents (seeded by rank) and a disjoint share of each epoch's data order; BatchNorm
  normalises with per-rank batch statistics as in the authors' ChainerMN code (no SyncBatchNorm), and rank 0's
  running statistics are broadcast before sampling, evaluating and saving; DistributedDataParallel averages
  gradients, so the weights, Adam states and spectral-norm vectors are identical on every rank;
- only rank 0 writes logs, samples and checkpoints; checkpoints hold every rank's RNG state.
Backend: nccl on CUDA, gloo on CPU.
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from sngan.errors import SnganError


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (world_size 1 when not launched by torchrun).

    `enabled` (a process group, DDP and collectives) holds for every torchrun job, one process included: a
    1-process torchrun runs the same code path as N processes (nccl on a GPU), which is how it is checked on a
    single-GPU machine.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launched: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 or self.launched

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistInfo()
# Rank 0 alone computes missing FID reference statistics while the others wait in a collective; allow an hour
# (a dead peer is noticed sooner: torchrun stops the job when any process exits).
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=60)


def from_env() -> DistInfo:
    """Read RANK / WORLD_SIZE / LOCAL_RANK as set by torchrun."""
    try:
        return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                        int(os.environ.get("LOCAL_RANK", 0)), launched="TORCHELASTIC_RUN_ID" in os.environ)
    except ValueError:
        raise SnganError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (launch with torchrun)") from None


def resolve_device(name: str, info: DistInfo = SINGLE) -> torch.device:
    """`auto` = cuda when available, else cpu; under torchrun each rank takes the GPU of its LOCAL_RANK."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name != "cpu" and not re.fullmatch(r"cuda(:\d+)?", name):
        raise SnganError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SnganError(f"device {name} asked for but no CUDA device is available; use auto or cpu")
    return torch.device("cuda", info.local_rank) if name == "cuda" else torch.device(name)


def init_process_group(info: DistInfo, device_type: str) -> None:
    """Join the process group (nccl for CUDA, gloo for CPU) when running under torchrun."""
    if info.enabled and not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo", timeout=COLLECTIVE_TIMEOUT)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def is_peer_failure(exc: BaseException, info: DistInfo) -> bool:
    """Whether `exc` is a collective failing because another rank died (gloo/NCCL report it as RuntimeError)."""
    text = str(exc)
    return info.enabled and (isinstance(exc, dist.DistError) or "Connection closed by peer" in text
                             or "NCCL" in text or "Connection reset" in text)


def local_batch(global_batch: int, info: DistInfo, key: str) -> int:
    """The per-rank share of a global batch size; refuses sizes that do not split evenly."""
    if global_batch % info.world_size:
        raise SnganError(f"key '{key}' ({global_batch}) must be divisible by the number of processes "
                         f"({info.world_size}): batch sizes in the config are global")
    return global_batch // info.world_size


def wrap(module: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """DistributedDataParallel around `module` when distributed, else the module itself."""
    if not info.enabled:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast_buffers(module: nn.Module, info: DistInfo) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics drift apart between DDP forwards)."""
    if info.enabled:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank when `flag` is true on any rank (keeps ranks stopping at the same step)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def mean_over_ranks(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """All-reduce average of a tensor (identity when not distributed)."""
    if not info.enabled:
        return t
    t = t.clone()
    dist.all_reduce(t)
    return t / info.world_size


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """[obj of rank 0, obj of rank 1, ...] on every rank."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's `obj` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@torch.no_grad()
def max_divergence(tensors: list[torch.Tensor], info: DistInfo) -> float:
    """Largest |t_rank - t_rank0| over the tensors (0.0 when ranks agree or when not distributed)."""
    if not info.enabled:
        return 0.0
    flat = torch.cat([t.detach().float().flatten() for t in tensors])
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    diff = (flat - reference).abs().max()
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return diff.item()
