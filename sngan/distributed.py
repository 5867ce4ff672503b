"""Devices and processes: the device to run on, torchrun rank discovery, and the few collectives sngan needs.

Launch with `torchrun --nproc_per_node=N -m sngan train --config FILE` (one node) or with torchrun's rendezvous
options across nodes. Semantics:
- the config's batch sizes are global (the paper's) and are split evenly across ranks;
- every rank draws its own latents (seeded by rank) and a disjoint share of each epoch's data order; BatchNorm
  normalises with per-rank batch statistics as in the authors' ChainerMN code (no SyncBatchNorm), and rank 0's
  running statistics are broadcast before sampling, evaluating and saving; DistributedDataParallel averages
  gradients, so the weights, Adam states and spectral-norm vectors are identical on every rank;
- only rank 0 writes logs, samples and checkpoints; checkpoints hold every rank's RNG state.
Backend: `cpu:gloo,cuda:nccl` where CUDA is available (nccl for the training's CUDA tensors, gloo for the start-up
agreement, which runs before the config says which device to use), gloo alone elsewhere.

Cluster rules (docs/cluster.md):
- every process joins the group first (`init_process_group`), before anything that can fail; each start-up step
  then ends in `together`, so a failure on one rank (no checkpoint on its node, a config error, a missing data
  folder) ends every rank within seconds, each with one line, rank 0's naming the rank and the cause;
- each torchrun attempt builds its group through a store of its own (`_attempt_store`), so restarted workers never
  read the dead attempt's addresses.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
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
STARTUP_TIMEOUT = datetime.timedelta(minutes=10)  # joining the group: every rank must reach the store by then


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


def restart_count() -> int:
    """Which torchrun attempt this is (0 for the first, and outside torchrun)."""
    try:
        return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
    except ValueError:
        return 0


def _reachable_address(host: str, port: int) -> str:
    """This machine's address on the interface that reaches `host` (the rendezvous host): what the other nodes can
    reach too. No packet is sent (a UDP socket is only connected)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((host, port))
            return probe.getsockname()[0]
        except OSError:
            return socket.gethostname()


def _attempt_store(info: DistInfo) -> dist.Store:
    """The process group's store, new for every torchrun attempt.

    torchrun's agent keeps one store across restart attempts, and the default start reads the group's keys from
    it: a restarted worker can read the dead attempt's addresses ("Gloo connectFullMesh failed ... Connection
    refused"). The restart count cannot name the attempt either: on several nodes an agent whose workers were
    restarted by a membership change keeps its count. So rank 0 of each attempt serves a fresh store of its own
    and publishes its address in the agent's store; the other ranks connect to the address they find there,
    reading it again until the store it names answers (an address left by a dead attempt refuses connections).
    """
    try:
        host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    except (KeyError, ValueError):
        raise SnganError("MASTER_ADDR and MASTER_PORT must be set (launch with torchrun)") from None
    agent_serves = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    shared = dist.TCPStore(host, port, info.world_size, is_master=info.is_main and not agent_serves,
                           timeout=STARTUP_TIMEOUT, wait_for_workers=False)
    if not agent_serves:  # rank 0 serves the store itself, new with this process
        return shared
    key = f"sngan/{os.environ.get('TORCHELASTIC_RUN_ID', 'run')}/group-store"
    if info.is_main:
        address = _reachable_address(host, port)
        own = dist.TCPStore(address, 0, info.world_size, is_master=True, timeout=STARTUP_TIMEOUT,
                            wait_for_workers=False)
        shared.set(key, f"{address} {own.port}")
        return own
    deadline = time.monotonic() + STARTUP_TIMEOUT.total_seconds()
    while True:
        address, found = shared.get(key).decode().split()
        try:  # a plain probe first: a dead attempt's address refuses at once, without TCPStore's retry messages
            socket.create_connection((address, int(found)), timeout=5).close()
        except OSError:
            if time.monotonic() > deadline:
                raise SnganError(f"rank 0's store at {address}:{found} did not answer within "
                                 f"{STARTUP_TIMEOUT.total_seconds():.0f} s") from None
            time.sleep(0.5)
            continue
        return dist.TCPStore(address, int(found), info.world_size, is_master=False, timeout=STARTUP_TIMEOUT,
                             wait_for_workers=False)


_store: dist.Store | None = None  # this attempt's store: also where the ranks post what waits need no collective


def init_process_group(info: DistInfo) -> None:
    """Join the process group when running under torchrun (first thing: see the module docstring)."""
    global _store
    if info.enabled and not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(info.local_rank % torch.cuda.device_count())
        _store = _attempt_store(info)
        dist.init_process_group(backend="cpu:gloo,cuda:nccl" if cuda else "gloo", store=_store,
                                rank=info.rank, world_size=info.world_size, timeout=COLLECTIVE_TIMEOUT)


def node_rank() -> int:
    """Which node (torchrun agent) this process runs on: torchrun's GROUP_RANK (0 outside torchrun)."""
    try:
        return int(os.environ.get("GROUP_RANK", "0") or 0)
    except ValueError:
        return 0


# A long start-up step that only some ranks do (packing a dataset, per node) is waited for through the store, not
# in a collective (whose timeout is an hour): up to LONG_WAIT_S, with a line every WAIT_REPORT_S.
LONG_WAIT_S = 12 * 3600
WAIT_REPORT_S = 60.0


def post(key: str, value: str) -> None:
    """Set `key` in this attempt's store (under torchrun; nothing outside it)."""
    if _store is not None:
        _store.set(f"sngan/{key}", value)


def wait_posted(keys: list[str], what: str, say: Callable[[str], None] | None, hint: str) -> dict[str, str]:
    """The values of `keys` once every one is posted, polling the store (no collective, so no collective timeout);
    a value starting with 'error' ends the wait at once with that rank's message. Every WAIT_REPORT_S a line says
    what is awaited; after LONG_WAIT_S the wait fails with `hint` (what to do instead)."""
    if _store is None:
        return {}
    names = {key: f"sngan/{key}" for key in keys}
    start = last = time.monotonic()
    while True:
        posted = {key: _store.get(name).decode() for key, name in names.items() if _store.check([name])}
        failed = [value for value in posted.values() if value.startswith("error")]
        if failed:
            raise SnganError(f"stopping: {what} failed ({failed[0].removeprefix('error').strip()})")
        if len(posted) == len(keys):
            return posted
        now = time.monotonic()
        if now - start > LONG_WAIT_S:
            raise SnganError(f"{what} did not end within {LONG_WAIT_S / 3600:.0f} h: {hint}")
        if say is not None and now - last >= WAIT_REPORT_S:
            say(f"waiting for {what} ({(now - start) / 60:.0f} min so far)")
            last = now
        time.sleep(0.5)


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, SnganError):
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[:limit] + "..."


def agree(info: DistInfo, failure: BaseException | None, what: str) -> None:
    """Every rank learns whether any rank failed `what`; then every rank raises when one did.

    The failing ranks re-raise their own error (its one line, or its traceback for a bug); rank 0, when it did not
    fail itself, names the rank and the cause; every other rank says that it stops because of that rank.
    """
    causes = gather_objects(None if failure is None else _one_line(failure), info)
    failed = [(rank, cause) for rank, cause in enumerate(causes) if cause is not None]
    if not failed:
        return
    if failure is not None:
        raise failure
    named = "; ".join(f"rank {rank}: {cause}" for rank, cause in failed)
    if info.is_main:
        raise SnganError(f"{what} failed on {named}")
    raise SnganError(f"stopping: {what} failed on rank {failed[0][0]} (rank 0 names the cause)")


def together(info: DistInfo, what: str) -> AbstractContextManager[None]:
    """Run a start-up step on every rank, then `agree` on its outcome (a failure anywhere stops every rank); in a
    1-process run the step simply runs (its failure is its own)."""
    return _agreeing(info, what) if info.enabled else nullcontext()


@contextmanager
def _agreeing(info: DistInfo, what: str) -> Iterator[None]:
    failure: BaseException | None = None
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - handed to agree, which re-raises it on this rank
        failure = exc
    agree(info, failure, what)


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def check_same_config(config: dict[str, Any], info: DistInfo) -> None:
    """Refuse ranks started with different resolved configs, naming the keys that differ (rank 0's as reference).

    A hash is compared first; the configs themselves travel only when the hashes differ.
    """
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()
    if len(set(gather_objects(digest, info))) == 1:
        return
    configs = [_flat(c) for c in gather_objects(config, info)]
    reference = configs[0]
    differing = sorted({key for other in configs[1:] for key in set(reference) | set(other)
                        if reference.get(key) != other.get(key)})
    ranks = [rank for rank, other in enumerate(configs) if other != reference]
    shown = ", ".join(f"{key} (rank 0: {str(reference.get(key))[:40]}, rank {ranks[0]}: "
                      f"{str(configs[ranks[0]].get(key))[:40]})" for key in differing[:5])
    raise SnganError(f"the processes were started with different configs: {shown}"
                     f"{f' and {len(differing) - 5} more' if len(differing) > 5 else ''}; give every rank the "
                     f"same --config and --set")


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


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around `module` (under torchrun: a 1-process run trains the module itself)."""
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


BROADCAST_CHUNK = 64 << 20  # bytes per broadcast of a checkpoint: bounds the extra memory of each step


def broadcast_bytes(data: bytes | None, info: DistInfo) -> bytes:
    """Rank 0's `data` (a checkpoint file's bytes) on every rank, as CPU uint8 tensors over the group's CPU backend
    (gloo) in chunks of BROADCAST_CHUNK: a node without the file gets it from rank 0, no shared filesystem needed.
    The receivers unpickle nothing: they hold bytes, which `torch.load(weights_only=True)` reads as any file."""
    if not info.enabled or info.world_size == 1:
        assert data is not None
        return data
    sent = data if info.is_main and data is not None else b""  # what rank 0 sends; the others send nothing
    size = torch.tensor([len(sent)], dtype=torch.int64)
    dist.broadcast(size, src=0)
    total = int(size.item())
    received = bytearray(total) if not info.is_main else None
    for start in range(0, total, BROADCAST_CHUNK):
        n = min(BROADCAST_CHUNK, total - start)
        if info.is_main:
            chunk = torch.frombuffer(bytearray(sent[start:start + n]), dtype=torch.uint8)
        else:
            chunk = torch.empty(n, dtype=torch.uint8)
        dist.broadcast(chunk, src=0)
        if received is not None:
            received[start:start + n] = chunk.numpy().tobytes()
    return sent if received is None else bytes(received)


def gather_rows(rows: torch.Tensor, info: DistInfo) -> list[torch.Tensor] | None:
    """Every rank's (n_r, ...) tensor, in rank order, on rank 0 (None on the others): plain tensors over the group's
    CPU backend (gloo), no pickling. Ranks may hold different row counts (padded for the transfer, cut after);
    the trailing shape and dtype must agree. Rank 0 holds all rows at once, the others only their own."""
    rows = rows.detach().cpu().contiguous()
    if not info.enabled:
        return [rows]
    count = torch.tensor([rows.shape[0]], dtype=torch.int64)
    counts = [torch.zeros(1, dtype=torch.int64) for _ in range(info.world_size)]
    dist.all_gather(counts, count)
    most = max(int(c.item()) for c in counts)
    padded = torch.zeros((most, *rows.shape[1:]), dtype=rows.dtype)
    padded[:rows.shape[0]] = rows
    received = [torch.empty_like(padded) for _ in range(info.world_size)] if info.is_main else None
    dist.gather(padded, received, dst=0)
    return [t[:int(c.item())] for t, c in zip(received, counts, strict=True)] if received is not None else None


def check_same_data(fingerprint: dict[str, Any], info: DistInfo) -> None:
    """Refuse ranks that read different data (a node whose copy lacks a class, has other files, or another size),
    naming the ranks and what differs, before the first step. `fingerprint`: count, class names and a content hash
    (the packed cache's, or the labels' for a drawn set)."""
    seen = gather_objects({**fingerprint, "host": socket.gethostname()}, info)
    ref = seen[0]
    for rank, fp in enumerate(seen[1:], 1):
        if (fp["count"], fp["classes"], fp["content"]) == (ref["count"], ref["classes"], ref["content"]):
            continue
        what = [f"{fp['count']} images against {ref['count']}"] if fp["count"] != ref["count"] else []
        missing = [c for c in ref["classes"] if c not in fp["classes"]]
        extra = [c for c in fp["classes"] if c not in ref["classes"]]
        if missing:
            what.append(f"lacks class(es) {', '.join(map(repr, missing[:3]))}")
        if extra:
            what.append(f"has class(es) {', '.join(map(repr, extra[:3]))} that rank 0 has not")
        if not missing and not extra and fp["classes"] != ref["classes"]:
            what.append("its classes are in another order")
        if not what:
            what.append("other image contents")
        raise SnganError(f"the processes read different data: rank {rank} ({fp['host']}) {'; '.join(what)} than "
                         f"rank 0 ({ref['host']}); give every node the same data.root (or one packed cache)")


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
