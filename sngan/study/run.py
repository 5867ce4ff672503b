"""`sngan study --plan FILE`: every run of a plan as a normal training run, then one table and the figures.

Layout of a study folder:
    <out>/<variant>-s<seed>/   a run directory as `sngan train` writes it, plus result.json when it has ended
    <out>/study.jsonl          one record per run (`summarize`)
    <out>/study.md             the table
    <out>/*.png                the figures (`sngan.study.figures`)
A run with result.json is done (finished or diverged) and is skipped; one with checkpoints but no result.json was
interrupted and resumes from its newest checkpoint (`sngan train --resume` semantics); a run folder without a
checkpoint is moved aside and started afresh. result.json keeps the run's resolved config: a plan changed under an
existing study is refused rather than mixed. With --jobs N the runs go to N subprocesses (`sngan study --only`),
one GPU each when there are GPUs; the parent then writes the table and figures.

One study per folder: a study holds `<out>/.lock` (`FolderLock`) for its whole life, so a second study on the same
folder is one line naming the first's PID; --jobs children run under their parent's lock (an `--only` run started
by hand takes the lock itself). A run folder is moved aside only under its own run lock.
Failure policy (the default, no option): a run that fails for a reason other than divergence (bad data, out of
memory, a refused folder) is named, recorded in study.jsonl and study.md as `failed` with its message, and the other
runs go on; the study then exits 1 with one line naming the failed runs, and the next start retries them (they have
no result.json). A signal stops the whole study.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sngan.checkpoint import checkpoint_step, list_checkpoints
from sngan.config import Config, to_yaml
from sngan.errors import SnganError, StudyError, TrainingDiverged, TrainingStopped
from sngan.io import write_text, writing
from sngan.records import metric_keys, read_records
from sngan.study.figures import write_figures
from sngan.study.plan import Plan, Variant, run_name
from sngan.train.ownership import FolderLock, RunLock

RESULT = "result.json"
MAX_RESULT_BYTES = 1_048_576  # a result.json holds a status, a message and a config


def run_one(cfg: Config, run_dir: Path, progress: bool, log: Callable[[str], None]) -> str:
    """Train one run to its end (or resume it); returns what happened: skipped, finished or diverged."""
    from sngan.train.loop import train

    result = run_dir / RESULT
    if result.exists():
        saved = read_result(run_dir)
        if saved["config"] != to_yaml(cfg):
            raise StudyError(f"{run_dir} was trained with another config than the plan now gives: restore the plan "
                             f"or use a new --out")
        return "skipped"
    found = list_checkpoints(run_dir / "checkpoints")
    if not found and run_dir.exists():
        aside = run_dir.with_name(f".{run_dir.name}.unfinished-{time.strftime('%Y%m%d-%H%M%S')}")
        lock = RunLock(run_dir)  # a process still training there is named, its folder never moved
        try:
            with writing(run_dir):
                run_dir.rename(aside)
        finally:
            lock.release()
        log(f"{run_dir.name}: stopped before its first checkpoint; moved to {aside.name}, starting afresh")
    resume = found[-1] if found else None
    status, message = "finished", ""
    if resume is None or checkpoint_step(resume) < cfg.train.iterations:
        if resume is not None:
            log(f"{run_dir.name}: resuming from {resume.name}")
        try:
            train(cfg, run_dir, resume=resume, progress=progress, log=log)
        except TrainingDiverged as exc:
            status, message = "diverged", str(exc)
            log(f"{run_dir.name}: diverged: {exc}")
    write_text(result, json.dumps({"status": status, "message": message, "config": to_yaml(cfg)}, indent=1))
    return status


def read_result(run_dir: Path) -> dict[str, Any]:
    """A run's result.json, checked (a hostile or torn file is one StudyError line naming it)."""
    path = run_dir / RESULT
    try:
        if path.stat().st_size > MAX_RESULT_BYTES:
            raise ValueError(f"{path.stat().st_size} bytes")
        saved = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise StudyError(f"{path}: cannot read the run's result ({type(exc).__name__}); move the run folder aside "
                         f"to train it again") from None
    if not isinstance(saved, dict) or saved.get("status") not in ("finished", "diverged") or \
            not all(isinstance(saved.get(key), str) for key in ("message", "config")):
        raise StudyError(f"{path}: not a result sngan wrote (needs status finished|diverged, message and config); "
                         f"move the run folder aside to train it again")
    return saved


def summarize(run_dir: Path, variant: Variant, seed: int, failure: str | None = None) -> dict[str, Any]:
    """One study.jsonl record: status, final and best metrics (named by their protocol), seconds per G step; a run
    that `failure` stopped is recorded as failed, with that message."""
    result = read_result(run_dir) if failure is None else {"status": "failed", "message": failure}
    records = read_records(run_dir / "metrics.jsonl")
    final: dict[str, float] = {}
    for record in records:
        final.update({k: record[k] for k in ("d_loss", "g_loss") if k in record})
    best: dict[str, dict[str, float]] = {}
    for key in metric_keys(records):
        points = [(r["step"], r[key]) for r in records if key in r]
        final[key] = points[-1][1]
        if not key.endswith("_std") and key.startswith(("is", "fid")):
            pick = min if key.startswith("fid") else max
            step, value = pick(points, key=lambda p: p[1])
            best[key] = {"value": value, "step": step}
    speeds = [r["it_per_s"] for r in records if isinstance(r.get("it_per_s"), (int, float)) and r["it_per_s"] > 0]
    return {"variant": variant.name, "method": variant.method, "setting": variant.setting, "seed": seed,
            "run_dir": run_dir.name, "status": result["status"], "diverged": result["status"] == "diverged",
            "message": result["message"], "step": records[-1]["step"] if records else 0, "final": final,
            "best": best, "sec_per_g_iter": 1.0 / statistics.median(speeds) if speeds else None}


def _run_children(plan: Plan, out: Path, names: list[str], jobs: int, log: Callable[[str], None]) -> dict[str, str]:
    """Run each named run in its own `sngan study --only` process, `jobs` at a time (one GPU per slot); returns the
    failed runs' messages by name. The children run under this process's study lock."""
    import torch

    gpus = torch.cuda.device_count()
    pending, running, failed = list(names), {}, {}
    while pending or running:
        free = [slot for slot in range(jobs) if slot not in running]
        while pending and free:
            slot, name = free.pop(0), pending.pop(0)
            env = {**os.environ, **({"CUDA_VISIBLE_DEVICES": str(slot % gpus)} if gpus else {})}
            cmd = [sys.executable, "-m", "sngan", "study", "--plan", str(plan.path), "--out", str(out),
                   "--only", name, "--no-progress"]
            running[slot] = (name, subprocess.Popen(cmd, env=env))
            log(f"{name}: started in slot {slot}" + (f" (GPU {slot % gpus})" if gpus else ""))
        time.sleep(0.5)
        for slot, (name, proc) in list(running.items()):
            if proc.poll() is not None:
                del running[slot]
                if proc.returncode != 0:
                    failed[name] = f"exit {proc.returncode} (its message is above)"
    return failed


def run_study(plan: Plan, out: Path | None = None, jobs: int = 1, only: str | None = None, progress: bool = True,
              log: Callable[[str], None] = print) -> Path:
    """Run (or continue) every run of `plan`, then write study.jsonl, study.md and the figures.

    Args:
        plan: a loaded plan (`sngan.study.plan.load_plan`).
        out: the study folder (default: the plan's).
        jobs: runs at a time, each in its own process (1 = in this process, one after another).
        only: run just this one run (`<variant>-s<seed>`) and write no table (what --jobs children do).
        progress: progress bars.

    Returns:
        The study folder.
    """
    out = Path(out) if out is not None else plan.out
    runs = {run_name(v, s): (v, s, plan.config(v, s)) for v, s in plan.runs()}
    if only is not None and only not in runs:
        raise StudyError(f"--only {only}: not a run of {plan.path} (runs: {', '.join(runs)})")
    lock = None if only is not None and _held_by_parent(out) else FolderLock(out, "study folder")
    try:
        if only is not None:
            run_one(runs[only][2], out / only, progress, log)
            return out
        _run_all(plan, out, runs, jobs, progress, log)
    finally:
        if lock is not None:
            lock.release()
    return out


def _held_by_parent(out: Path) -> bool:
    """Whether `out`'s study lock is held by this process's parent (a `--jobs` child runs under it)."""
    path = out / ".lock"
    if path.is_symlink() or not path.is_file():
        return False
    with open(path, "rb") as fh:
        return fh.read(32).strip() == str(os.getppid()).encode()


def _run_all(plan: Plan, out: Path, runs: dict[str, tuple[Variant, int, Config]], jobs: int, progress: bool,
             log: Callable[[str], None]) -> None:
    """Every run (children first with --jobs), then the table and figures. A run that fails for a reason other
    than divergence is named, recorded as failed, and the others go on; the study then ends with one error line."""
    todo = [name for name in runs if not (out / name / RESULT).exists()]
    log(f"study {out}: {len(runs)} runs, {len(runs) - len(todo)} already done")
    failures = _run_children(plan, out, todo, jobs, log) if jobs > 1 and todo else {}
    for name, (_, _, cfg) in runs.items():
        if name in failures:
            continue
        try:
            status = run_one(cfg, out / name, progress, log)  # also checks finished runs still match the plan
        except (SnganError, MemoryError, RuntimeError) as exc:
            if isinstance(exc, (TrainingStopped, StudyError)) or \
                    (isinstance(exc, RuntimeError) and type(exc).__name__ != "OutOfMemoryError"):
                raise
            failures[name], status = " ".join(str(exc).split()) or type(exc).__name__, "failed"
        log(f"{name}: {status}" + (f": {failures[name]}" if name in failures else ""))
    records = [summarize(out / name, v, s, failures.get(name)) for name, (v, s, _) in runs.items()]
    write_text(out / "study.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    figures = write_figures([r for r in records if r["status"] != "failed"], out, plan.evaluation)
    write_text(out / "study.md", markdown(plan, records, figures))
    log(f"wrote {out / 'study.md'}, {out / 'study.jsonl'} and {len(figures)} figures")
    if failures:
        named = "; ".join(f"{name}: {message}" for name, message in failures.items())
        raise StudyError(f"{len(failures)} of {len(runs)} runs failed ({named}); the others are in "
                         f"{out / 'study.md'}; run the study again to retry the failed ones")


def markdown(plan: Plan, records: list[dict[str, Any]], figures: list[Path]) -> str:
    """The study table: one row per run."""
    metrics = list(dict.fromkeys(k for r in records for k in r["final"] if k not in ("d_loss", "g_loss")))
    head = ["variant", "seed", "status", "steps", "final d_loss", "final g_loss", *metrics, "s / G iteration"]
    lines = [f"# Study: {plan.path.name}", "", f"Base config `{plan.base}`; evaluation "
             f"{'on' if plan.evaluation else 'off'}; {len(records)} runs.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        cells = [r["variant"], str(r["seed"]), r["status"], str(r["step"]),
                 *(_num(r["final"].get(k)) for k in ("d_loss", "g_loss", *metrics)), _num(r["sec_per_g_iter"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *(f"![{p.stem}]({p.name})" for p in figures), ""]
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
