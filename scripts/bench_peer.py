"""Time one G-iteration of a peer SN-GAN against ours, alternating in one process: the peer's own training step
(pytorch-gan-collections' CIFAR-10 ResNet) against `sngan.train.steps.iteration` on `configs/cifar10_resnet.yaml`.

Usage:
    python scripts/bench_peer.py --peer PATH [--variants default,eager-fp32] [--iters 10] [--rounds 5]
        [--warmup 5] [--set KEY=VALUE ...]

PATH is a checkout of github.com/w86763777/pytorch-gan-collections (not part of this project, not copied into it):
its `source/models/sngan.py` (`ResGenerator32`, `ResDiscriminator32`: torch's `spectral_norm`, widths 256/128) and
`source/losses.py` (`Hinge`) are loaded from there by file path. Its step is rebuilt from its `sngan.py` as written:
n_dis 5 D steps, each on fresh fakes from a no-grad G forward of 64 latents and a real batch of 64, two D passes,
hinge loss; then a G step on 128 latents; Adam(2e-4, betas (0, 0.9)) for both, and its linear LambdaLR stepped once
per iteration; fp32 eager, no autocast, PyTorch's default matmul precision. Both sides read real batches from
images resident on the device (the peer's CPU DataLoader is left out: the point is the step).

Each round times `--iters` G-iterations of the peer, then of every variant of ours, so a machine that slows down
slows all of them alike; G-it/s is the median over rounds. Before the rounds, each side alone: ms per D step and per
G step (medians), peak CUDA memory while that side ran (the other sides' weights and data stay resident: tens
of MiB), and, for eager sides, FLOPs per G-iteration against a matmul
peak measured in the same precision.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from bench_train import VARIANTS
from timing import (
    bench_state,
    device_name,
    flops_of,
    matmul_peak,
    peak_memory_mb,
    reset_peak_memory,
    sync,
    timed,
)

from sngan.metrics.precision import restore_tf32, saved_tf32
from sngan.train.perf import set_matmul_precision
from sngan.train.steps import d_step, g_step, iteration

REPO = Path(__file__).resolve().parents[1]


def load_file(name: str, path: Path):
    """Import one source file of the peer by its path (its folder is not put on sys.path)."""
    if not path.is_file():
        sys.exit(f"--peer: {path} not found: give a checkout of w86763777/pytorch-gan-collections")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class PeerStep:
    """The peer's training step (its sngan.py main loop, one G-iteration per call), on device-resident images."""

    def __init__(self, peer: Path, device: torch.device, images: torch.Tensor, total_steps: int = 100_000):
        models = load_file("peer_sngan_models", peer / "source" / "models" / "sngan.py")
        losses = load_file("peer_losses", peer / "source" / "losses.py")
        torch.manual_seed(0)
        self.device, self.images = device, images
        self.net_g = models.ResGenerator32(128).to(device)
        self.net_d = models.ResDiscriminator32().to(device)
        self.loss_fn = losses.Hinge()
        self.optim_g = torch.optim.Adam(self.net_g.parameters(), lr=2e-4, betas=(0.0, 0.9))
        self.optim_d = torch.optim.Adam(self.net_d.parameters(), lr=2e-4, betas=(0.0, 0.9))
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.optim_g, lambda step: 1 - step / total_steps)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.optim_d, lambda step: 1 - step / total_steps)
        self.batch_size, self.n_dis, self.z_dim = 64, 5, 128

    def d_step(self) -> None:
        with torch.no_grad():
            z = torch.randn(self.batch_size, self.z_dim, device=self.device)
            fake = self.net_g(z).detach()
        real = self.images[torch.randint(0, len(self.images), (self.batch_size,), device=self.device)]
        loss = self.loss_fn(self.net_d(real), self.net_d(fake))
        self.optim_d.zero_grad()
        loss.backward()
        self.optim_d.step()

    def g_step(self) -> None:
        z = torch.randn(self.batch_size * 2, self.z_dim, device=self.device)
        loss = self.loss_fn(self.net_d(self.net_g(z)))
        self.optim_g.zero_grad()
        loss.backward()
        self.optim_g.step()

    def __call__(self) -> None:
        for _ in range(self.n_dis):
            self.d_step()
        self.g_step()
        self.sched_g.step()
        self.sched_d.step()


class Side:
    """One contestant: a name, its G-iteration, its D and G steps, and how to set its precision before it runs."""

    def __init__(self, name: str, step: Callable[[], None], d: Callable[[], None], g: Callable[[], None],
                 enter: Callable[[], None], precision: str, eager: bool, device: torch.device):
        self.name, self.step, self.d, self.g, self.enter = name, step, d, g, enter
        self.precision, self.eager, self.device, self.rates = precision, eager, device, []


def ours(config: Path, overrides: list[str], variant: str) -> Side:
    _, state, losses = bench_state(config, [*overrides, *VARIANTS[variant]])
    return Side(f"sngan {variant}", lambda: iteration(state, losses), lambda: d_step(state, losses[0]),
                lambda: g_step(state, losses[1]), lambda: set_matmul_precision(state.perf, state.device),
                state.perf.precision, state.perf.compile == "off", state.device)


def profile_alone(side: Side, device: torch.device, iters: int, warmup: int) -> dict:
    side.enter()
    reset_peak_memory(device)
    start = time.perf_counter()
    run_steps(side.step, warmup, device)
    first = time.perf_counter() - start
    d_ms = timed(side.d, iters, device) * 1e3
    g_ms = timed(side.g, iters, device) * 1e3
    flops = flops_of(side.step) if side.eager else None
    return {"first": first, "d_ms": d_ms, "g_ms": g_ms, "mem": peak_memory_mb(device), "flops": flops}


def run_steps(step: Callable[[], None], n: int, device: torch.device) -> None:
    for _ in range(n):
        step()
    sync(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer", type=Path, required=True, help="checkout of w86763777/pytorch-gan-collections")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "cifar10_resnet.yaml")
    parser.add_argument("--variants", default="default,eager-fp32", help="ours, names of scripts/bench_train.py")
    parser.add_argument("--iters", type=int, default=10, help="G-iterations per side per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=5, help="G-iterations per side before timing (compiling)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override (ours)")
    args = parser.parse_args()
    saved = saved_tf32()
    sides = [ours(args.config, args.overrides, v) for v in args.variants.split(",")]
    device = sides[0].device
    images = torch.rand(4096, 3, 32, 32, device=device) * 2 - 1
    peer = PeerStep(args.peer, device, images)
    sides.insert(0, Side("peer (pytorch-gan-collections, fp32 eager)", peer, peer.d_step, peer.g_step,
                         lambda: restore_tf32(saved), "fp32", True, device))
    alone = {s.name: profile_alone(s, device, args.iters, args.warmup) for s in sides}
    for _ in range(args.rounds):
        for s in sides:
            s.enter()
            s.rates.append(args.iters / timed(lambda s=s: run_steps(s.step, args.iters, device), 1, device))
    peaks = {p: matmul_peak(device, p) for p in {s.precision for s in sides}}
    print(f"torch {torch.__version__} on {device_name(device)}; {args.rounds} rounds x {args.iters} G-iterations "
          f"per side, alternating; config {args.config.name} {' '.join(args.overrides)}")
    print("| step | G-it/s | ms/D step | ms/G step | peak MiB | TFLOP/s | % of matmul peak | first "
          f"{args.warmup} it (s) |")
    print("|---|---|---|---|---|---|---|---|")
    flops = next((a["flops"] for n, a in alone.items() if n.startswith("sngan") and a["flops"]), None)
    for s in sides:
        a, rate = alone[s.name], statistics.median(s.rates)
        f = a["flops"] or (flops if s.name.startswith("sngan") else None)
        achieved = f"{f * rate / 1e12:.2f}" if f else "n/a"
        share = f"{100 * f * rate / 1e12 / peaks[s.precision]:.0f}% of {peaks[s.precision]:.1f}" if f else "n/a"
        mem = f"{a['mem']:.0f}" if device.type == "cuda" else "n/a"  # the CPU has one peak for the whole process
        print(f"| {s.name} | {rate:.3g} | {a['d_ms']:.1f} | {a['g_ms']:.1f} | {mem} | {achieved} | {share} | "
              f"{a['first']:.1f} |")
    base = statistics.median(sides[0].rates)
    for s in sides[1:]:
        print(f"{s.name}: {statistics.median(s.rates) / base:.2f}x the peer's G-it/s")
    print("FLOP per G-iteration: " + ", ".join(f"{n} {a['flops'] / 1e9:.0f} G" for n, a in alone.items()
                                                if a["flops"]))


if __name__ == "__main__":
    main()
