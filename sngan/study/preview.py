"""`sngan study --plan P --dry-run`: every run of a plan with what it changes from the base config, its cost in
optimiser steps and, from a short measured step, in time on this machine; nothing is trained or written.

The time comes from `measure_steps`: each distinct model of the plan (what a step's cost depends on: model, loss,
batch sizes, precision) is built on this device with synthetic data, and MEASURE_WARMUP untimed G iterations are
followed by MEASURE_STEPS timed D steps and G steps (their medians). A run's time is then iterations x (n_dis x
D step + G step): training steps only, without evaluation passes, checkpoints or compilation (measured with
perf.compile off). Measuring stops after MEASURE_BUDGET_S; a model not measured by then is estimated from the
measured ones (`estimate_step`: the median step of those of the same size, that is the same architecture,
resolution, widths, batch sizes and device, else of all of them), said so on its line, and the total covers every
run, with how many of its runs are estimates.
`scripts/bench_study.py --plan P` measures the same with more repeats. The estimate is as good as the machine is
quiet: other jobs on the CPU slow the measured steps as they slow the runs.
"""

from __future__ import annotations

import json
import statistics
import textwrap
import time
from collections.abc import Callable
from typing import Any

import torch

from sngan.config import Config, from_dict, load_config
from sngan.progress import eta
from sngan.study.plan import Plan, run_name

MEASURE_WARMUP = 2  # untimed G iterations first (allocation, kernel choices)
MEASURE_STEPS = 3  # timed D steps and G steps per distinct model, their median counts
MEASURE_BUDGET_S = 60.0  # measuring stops after this long (a plan of many large models on a CPU)
MEASURE_CLASSES = 3  # a conditional model is measured with the synthetic source's 3 classes (cost hardly changes)


def differences(base: dict[str, dict[str, Any]], cfg: dict[str, dict[str, Any]]) -> list[str]:
    """`section.key=value` for every key whose value in `cfg` differs from `base`, in schema order."""
    return [f"{section}.{key}={value}" for section, values in cfg.items() for key, value in values.items()
            if base.get(section, {}).get(key) != value]


def _evaluation_line(cfg: Config) -> str:
    t = cfg.train
    if not t.eval_every:
        return "no IS/FID"
    count = f", {t.eval_num_samples} generated (modified)" if t.eval_num_samples else ""
    return f"IS/FID every {t.eval_every} with protocol {t.eval_protocol}{count}"


def cost_key(cfg: Config) -> str:
    """What one step's cost depends on (not the optimiser's numbers, n_dis or the iteration count)."""
    t = cfg.train
    return json.dumps([cfg.to_dict()[name] for name in ("model", "loss", "perf")] +
                      [t.batch_size, t.g_batch_size, t.device], sort_keys=True)


def measure_steps(cfg: Config) -> tuple[float, float]:
    """(seconds per D step, seconds per G step) of `cfg`'s model on its device, on synthetic data with compile off:
    MEASURE_WARMUP untimed G iterations (allocation, kernel choices), then the median of MEASURE_STEPS of each."""
    from sngan.distributed import resolve_device
    from sngan.train.losses import LOSSES
    from sngan.train.state import build_state
    from sngan.train.steps import d_step, g_step, iteration

    raw = cfg.to_dict()
    raw["data"] = {**raw["data"], "name": "synthetic", "num_images": 2 * max(cfg.train.batch_size,
                                                                             cfg.train.g_batch_size)}
    raw["perf"] = {**raw["perf"], "compile": "off"}
    raw["train"] = {**raw["train"], "eval_every": 0}
    if cfg.model.num_classes:
        raw["model"] = {**raw["model"], "num_classes": MEASURE_CLASSES}
    small = from_dict(raw)
    device = resolve_device(small.train.device)
    state = build_state(small, device, log=lambda _: None)
    losses = LOSSES[small.loss.type]
    try:
        for _ in range(MEASURE_WARMUP):
            iteration(state, losses)
        times = []
        for step in (lambda: d_step(state, losses[0]), lambda: g_step(state, losses[1])):
            each = []
            for _ in range(MEASURE_STEPS):
                _sync(device)
                start = time.perf_counter()
                step()
                _sync(device)
                each.append(time.perf_counter() - start)
            times.append(statistics.median(each))  # one slow step (another job, a page fault) does not count
    finally:
        state.batches.close()
    return times[0], times[1]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def size_key(cfg: Config) -> str:
    """What makes two models cost about the same per step even when `cost_key` differs (a normalisation, a loss):
    architecture, resolution, widths, conditioning, batch sizes and device."""
    m, t = cfg.model, cfg.train
    return json.dumps([m.arch, m.resolution, m.z_dim, m.g_ch, m.d_ch, bool(m.num_classes), t.batch_size,
                       t.g_batch_size, t.device])


def estimate_step(cfg: Config, measured: dict[str, tuple[float, float]],
                  sizes: dict[str, str]) -> tuple[float, float] | None:
    """(D step, G step) seconds of a model that was not measured: the median of the measured models of the same
    `size_key`, else of all measured models; None when nothing was measured. `sizes` maps each measured
    `cost_key` to its `size_key`."""
    same = [step for key, step in measured.items() if sizes[key] == size_key(cfg)] or list(measured.values())
    if not same:
        return None
    return statistics.median(d for d, _ in same), statistics.median(g for _, g in same)


def measure_plan(configs: list[Config], measure: Callable[[Config], tuple[float, float]] = measure_steps,
                 budget_s: float = MEASURE_BUDGET_S) -> dict[str, tuple[float, float]]:
    """`measure` of each distinct model (`cost_key`) among `configs`, until `budget_s` seconds have passed."""
    start, measured = time.monotonic(), {}
    for cfg in configs:
        key = cost_key(cfg)
        if key not in measured and time.monotonic() - start < budget_s:
            measured[key] = measure(cfg)
    return measured


def inception_warning(configs: list[Config]) -> str | None:
    """One line when runs of the plan evaluate IS/FID and the Inception weights they need are not on this machine."""
    from sngan.metrics.inception import missing_weights

    evaluating = [cfg for cfg in configs if cfg.train.eval_every]
    for path in dict.fromkeys(cfg.train.eval_inception_weights for cfg in evaluating):
        problem = missing_weights(path or None)
        if problem:
            return (f"warning: {sum(c.train.eval_inception_weights == path for c in evaluating)} run(s) evaluate "
                    f"IS/FID and would stop at start: {problem}")
    return None


def describe(plan: Plan, measure: Callable[[Config], tuple[float, float]] | None = measure_steps) -> str:
    """The dry-run text: one block per run (name, differences, steps, estimated time, evaluation), the plan's totals
    and a warning when the evaluation's Inception weights are missing. `measure=None` skips the timing."""
    base = load_config(plan.base).to_dict()
    runs = [(variant, seed, plan.config(variant, seed)) for variant, seed in plan.runs()]
    measured = measure_plan([cfg for _, _, cfg in runs], measure) if measure is not None else {}
    lines = [f"plan {plan.path}: {len(runs)} runs from {plan.base}, study folder {plan.out}"]
    g_steps = d_steps = 0
    seconds, estimated = 0.0, 0
    sizes = {cost_key(cfg): size_key(cfg) for _, _, cfg in runs}
    for variant, seed, cfg in runs:
        t = cfg.train
        g_steps, d_steps = g_steps + t.iterations, d_steps + t.iterations * t.n_dis
        changed = differences(base, cfg.to_dict())
        step = measured.get(cost_key(cfg))
        how = "measured"
        if step is None and measured:
            step, how = estimate_step(cfg, measured, sizes), "estimated from the measured models"
            estimated += 1
        timing = ""
        if step is not None:
            run_s = t.iterations * (t.n_dis * step[0] + step[1])
            seconds += run_s
            timing = (f"; about {eta(run_s)} here ({step[0] * 1e3:.0f} ms/D step, {step[1] * 1e3:.0f} ms/G step, "
                      f"{how})")
        lines += [f"{run_name(variant, seed)}:",
                  textwrap.fill(f"changes: {', '.join(changed) if changed else 'none (the base config)'}", 118,
                                initial_indent="    ", subsequent_indent="        ", break_on_hyphens=False),
                  f"    cost: {t.iterations} G steps + {t.iterations * t.n_dis} D steps (n_dis {t.n_dis}){timing}; "
                  f"{_evaluation_line(cfg)}"]
    total = f"total: {g_steps} G steps and {d_steps} D steps"
    if measure is None:
        lines.append(f"{total}; seconds per step on this machine: scripts/bench_study.py --plan {plan.path}")
    else:
        from sngan.distributed import resolve_device

        device = resolve_device(runs[0][2].train.device) if runs else "cpu"
        left = (f"; {estimated} of the {len(runs)} runs estimated from the {len(measured)} measured model(s) "
                f"(budget {MEASURE_BUDGET_S:.0f} s)") if estimated else ""
        lines.append(f"{total}; about {eta(seconds)} of training steps for all {len(runs)} runs on this machine "
                     f"(device {device}; median of {MEASURE_STEPS} steps per model; evaluation and checkpoints not "
                     f"included){left}")
    warning = inception_warning([cfg for _, _, cfg in runs])
    if warning:
        lines.append(warning)
    return "\n".join(lines)
