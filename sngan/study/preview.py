"""`sngan study --plan P --dry-run`: every run of a plan with what it changes from the base config, and its cost in
optimiser steps; nothing is trained or written.

Seconds per step depend on the machine: `scripts/bench_study.py --plan P` measures them and totals the plan.
"""

from __future__ import annotations

import textwrap
from typing import Any

from sngan.config import Config, load_config
from sngan.study.plan import Plan, run_name


def differences(base: dict[str, dict[str, Any]], cfg: dict[str, dict[str, Any]]) -> list[str]:
    """`section.key=value` for every key whose value in `cfg` differs from `base`, in schema order."""
    return [f"{section}.{key}={value}" for section, values in cfg.items() for key, value in values.items()
            if base.get(section, {}).get(key) != value]


def _evaluation(cfg: Config) -> str:
    t = cfg.train
    if not t.eval_every:
        return "no IS/FID"
    count = f", {t.eval_num_samples} generated (modified)" if t.eval_num_samples else ""
    return f"IS/FID every {t.eval_every} with protocol {t.eval_protocol}{count}"


def describe(plan: Plan) -> str:
    """The dry-run text: one block per run (name, differences, steps, evaluation) and the plan's totals."""
    base = load_config(plan.base).to_dict()
    lines = [f"plan {plan.path}: {len(plan.runs())} runs from {plan.base}, study folder {plan.out}"]
    g_steps = d_steps = 0
    for variant, seed in plan.runs():
        cfg = plan.config(variant, seed)
        t = cfg.train
        g_steps, d_steps = g_steps + t.iterations, d_steps + t.iterations * t.n_dis
        changed = differences(base, cfg.to_dict())
        lines += [f"{run_name(variant, seed)}:",
                  textwrap.fill(f"changes: {', '.join(changed) if changed else 'none (the base config)'}", 118,
                                initial_indent="    ", subsequent_indent="        ", break_on_hyphens=False),
                  f"    cost: {t.iterations} G steps + {t.iterations * t.n_dis} D steps (n_dis {t.n_dis}); "
                  f"{_evaluation(cfg)}"]
    lines.append(f"total: {g_steps} G steps and {d_steps} D steps; seconds per step on this machine: "
                 f"scripts/bench_study.py --plan {plan.path}")
    return "\n".join(lines)
