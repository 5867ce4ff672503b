"""Speed options for the training step: precision, memory format, torch.compile, fused Adam.

What stays in float32 whatever `perf.precision` says:
- spectral norm's power iteration and sigma (`sngan.models.spectral.FP32SpectralNorm` runs with autocast off, compiled
  or not);
- the losses (computed on float32 logits) and every parameter, gradient and Adam moment (autocast changes only the
  dtype of activations and of the matmul/conv inputs, never the stored weights).
BatchNorm under autocast runs in float32 as well (PyTorch keeps batch_norm out of the bf16 list).
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from sngan.config import PerfConfig
from sngan.metrics.precision import set_tf32


@dataclass(frozen=True)
class Perf:
    """Resolved speed options for one device (no 'auto' left)."""

    precision: str = "fp32"  # fp32 | tf32 | bf16
    channels_last: bool = False
    compile: str = "off"  # off | default | reduce-overhead | max-autotune
    fused_adam: bool = False
    d_single_pass: bool = False
    chosen_by: str = ""  # why `perf.compile: auto` chose `compile` ("" when the config named a mode)

    def eager(self, why: str) -> Perf:
        """The same options with the eager step, `why` saying who chose it."""
        return dataclasses.replace(self, compile="off", chosen_by=why)

    def describe(self) -> str:
        return (f"precision {self.precision}, channels_last {'on' if self.channels_last else 'off'}, "
                f"compile {self.compile}, fused Adam {'on' if self.fused_adam else 'off'}, "
                f"D passes per step {1 if self.d_single_pass else 2}")


# `perf.compile: auto` compiles (CUDA graphs) only for a run with at least this many G-iterations left. On the H100
# compiling cost about 56 s and saved about 155 ms per iteration (5.5 -> 36.4 G-it/s, docs/speed.md), so it pays
# after about 360 iterations; 1,000 leaves room for slower compilers and larger models.
COMPILE_PAYS_FROM = 1_000


def resolve_perf(perf_cfg: PerfConfig, device: torch.device, iterations_left: int) -> Perf:
    """Turn the `perf` config section into concrete options for a run with `iterations_left` G-iterations to go.

    'auto' = bf16 autocast, channels_last and fused Adam on CUDA; fp32 with channels_last on CPU (channels_last is
    faster on the development CPU too: scripts/bench_train.py's `default` vs `eager-fp32` rows in
    benchmarks/RESULTS.md). `compile: auto` = CUDA graphs (`reduce-overhead`) on CUDA for a run of at least
    COMPILE_PAYS_FROM iterations, else eager; `compile_or_eager` then checks that compiling works on this machine.
    `d_single_pass` is taken as given.
    """
    cuda = device.type == "cuda"
    precision = ("bf16" if cuda else "fp32") if perf_cfg.precision == "auto" else perf_cfg.precision
    if precision == "tf32" and not cuda:
        precision = "fp32"  # TF32 is a CUDA matmul mode; on CPU it is plain fp32
    channels_last = perf_cfg.channels_last in ("auto", "on")  # measured faster on CPU too (docs/speed.md)
    fused = cuda if perf_cfg.fused_adam == "auto" else perf_cfg.fused_adam == "on"
    mode, chosen_by = perf_cfg.compile, ""
    if mode == "auto":
        if not cuda:
            mode, chosen_by = "off", f"auto: eager on {device.type}, compiling pays on CUDA only"
        elif iterations_left < COMPILE_PAYS_FROM:
            mode, chosen_by = "off", (f"auto: eager for {iterations_left:,} iteration(s) left, compiling pays from "
                                      f"{COMPILE_PAYS_FROM:,}")
        else:
            mode, chosen_by = "reduce-overhead", f"auto: CUDA graphs for {iterations_left:,} iterations left"
    return Perf(precision, channels_last, mode, fused, perf_cfg.d_single_pass, chosen_by)


def compile_or_eager(perf: Perf, device: torch.device) -> tuple[Perf, str]:
    """`perf` itself when `auto` did not choose to compile or compiling works here; else the same options eager,
    with the one line that says why.

    Compiling happens at the first call of a compiled module, so a torch, compiler or driver that cannot compile
    would fail the run's first step. Under `auto` a small network of the model's kinds of layers (convolution,
    BatchNorm, linear) is compiled in the chosen mode and run forward and backward first; if that raises, the run
    goes on eager and nothing else changes. A mode the config names is not tried: it fails the run if it fails.
    """
    if perf.compile == "off" or not perf.chosen_by:
        return perf, ""
    failure = compile_failure(device, perf.compile)
    if failure is None:
        return perf, ""
    line = f"compiling failed on this machine ({failure}); the run goes on eager"
    return perf.eager("auto: eager, compiling failed on this machine"), line


def compile_failure(device: torch.device, mode: str) -> str | None:
    """None when `torch.compile(mode=mode)` compiles and runs a small conv/BN/linear network forward and backward
    on `device`; else the first line of what it raised."""
    probe = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 1)).to(device)
    try:
        compiled_probe = torch.compile(probe, mode=None if mode == "default" else mode)
        compiled_probe(torch.randn(2, 3, 4, 4, device=device)).sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    except Exception as exc:  # noqa: BLE001 - any failure to compile means: run eager
        lines = str(exc).strip().splitlines()
        return (lines[0] if lines else type(exc).__name__)[:300]
    finally:
        torch.compiler.reset()  # the probe's graphs are not the run's
    return None


def path_line(perf: Perf, device: torch.device) -> str:
    """The first log line of a training run: which step runs (eager or compiled, precision, device) and the
    override that switches it, naming only what this device can use (CUDA graphs need CUDA)."""
    chosen = f"perf.compile {perf.chosen_by}" if perf.chosen_by else f"perf.compile {perf.compile}"
    if perf.compile == "off":
        mode = f"eager ({chosen})"
        switch = ("compile with --set perf.compile=reduce-overhead (CUDA graphs) or --set perf.compile=default"
                  if device.type == "cuda" else "compile with --set perf.compile=default")
    else:
        mode = f"compiled, mode {perf.compile} ({chosen})" if perf.chosen_by else f"compiled ({chosen})"
        switch = "eager with --set perf.compile=off"
    return f"training step: {mode}, precision {perf.precision}, on {device}; {switch}"


def set_matmul_precision(perf: Perf, device: torch.device) -> None:
    """On CUDA, TF32 for the float32 matmuls/convs that remain (tf32 and bf16 modes), exact fp32 otherwise; the
    switch acts on CUDA only, so a run on another device leaves it as it is. Scoring turns it off for its own
    duration (`sngan.metrics.precision.scoring_precision`)."""
    if device.type == "cuda":
        set_tf32(perf.precision in ("tf32", "bf16"))


def autocast(perf: Perf, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast around forward passes in bf16 mode, else nothing."""
    if perf.precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def compiled(module: nn.Module, perf: Perf) -> nn.Module:
    """`torch.compile(module, mode=...)` when asked for, else the module itself.

    Applied to both networks, after the DistributedDataParallel wrapper (as PyTorch recommends: DDP's graph
    splitting then keeps gradient buckets overlapping backward). Both forwards compile with no graph break; the
    discriminator can be compiled because `FP32SpectralNorm` never mutates a tensor that backward needs. The
    returned wrapper shares the module's parameters and buffers: checkpoints keep saving the plain modules, so
    their keys carry no `_orig_mod.` prefix and a run resumes compiled or eager from either.
    """
    if perf.compile == "off":
        return module
    compiled_module = torch.compile(module, mode=None if perf.compile == "default" else perf.compile)
    return cast(nn.Module, compiled_module)  # an OptimizedModule: torch types torch.compile's result as a callable


def begin_step(perf: Perf) -> None:
    """Tell CUDA-graph trees (`compile: reduce-overhead`) that a new training step starts, so the graphs of this
    step may reuse the memory of the previous step's outputs (nothing of it is read again)."""
    if perf.compile == "reduce-overhead":
        torch.compiler.cudagraph_mark_step_begin()


def own_memory(x: torch.Tensor, perf: Perf) -> torch.Tensor:
    """A generator output that other graphs will read, moved out of the CUDA-graph memory pool.

    Under `reduce-overhead` a graph's output lives in memory that the next replay of a graph in the same tree may
    overwrite; the H100 run showed it for the fakes a D step feeds to two D passes ("accessing tensor output of
    CUDAGraphs that has been overwritten by a subsequent run"). One copy of a batch of images costs nothing next
    to the step. Other modes return `x` itself.
    """
    return x.clone() if perf.compile == "reduce-overhead" else x
