"""`sngan study --plan FILE`: every run of a plan as a normal training run, then one table and the figures.

Layout of a study folder:
    <out>/.sngan-study         the marker: sngan writes only into an empty folder or one holding it
    <out>/<variant>-s<seed>/   a run directory as `sngan train` writes it, plus result.json when it has ended
    <out>/study.jsonl          one record per run (`summarize`)
    <out>/study.md             the table
    <out>/.failures/<run>.json a run that failed before its run folder existed (bad data, say): its status and message
    <out>/*.png                the figures (`sngan.study.figures`)
A run with result.json saying finished or diverged is done and is skipped; one with checkpoints but no result
was interrupted and resumes from its newest checkpoint (`sngan train --resume` semantics); a run folder without a
checkpoint is moved aside and started afresh. result.json keeps the run's resolved config: a plan changed under an
existing study is refused rather than mixed.

Many processes may work on one study at once, on one host or several (a Slurm job array, `--jobs N` children,
`--only RUN` by hand): each run is trained under its own run lock (a run held by another process is reported as
running and left alone), and the study folder's lock (`FolderLock`, waited for) is taken only to write what is
shared: the table and the figures. Every process that ends a run rewrites the table from the results found, so the
last one leaves the complete table. With --jobs N the runs go to N subprocesses (`sngan study --only`), each on its
own device from the parent's CUDA_VISIBLE_DEVICES, their lines prefixed with the run's name.
Failure policy (the default, no option): a run that fails for a reason other than divergence (bad data, out of
memory, a refused folder) is named, recorded in its result.json, study.jsonl and study.md as `failed` with its
message, and the other runs go on; the study then exits 1 with one line naming the failed runs, and the next start
retries them. A signal stops the whole study.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sngan.checkpoint import checkpoint_step, list_checkpoints
from sngan.config import Config, to_yaml
from sngan.errors import SnganError, StudyError, TrainingDiverged, TrainingStopped
from sngan.io import Folder, write_text, writing
from sngan.records import metric_keys, read_records
from sngan.study.figures import STUDY_MARKER, write_figures
from sngan.study.plan import Plan, Variant, checked_slurm_options, load_plan, run_name
from sngan.train.rundir import FolderLock, lock_holder, read_run_id

RESULT = "result.json"
FAILURES = ".failures"  # a run that failed before its folder existed is recorded here, as its result.json would
MAX_RESULT_BYTES = 1_048_576  # a result.json holds a status, a message and a config
TABLE_LOCK_WAIT_S = 120.0  # another process writing the table holds the folder lock for seconds
DONE = ("finished", "diverged")


def run_one(cfg: Config, run_dir: Path, progress: bool, log: Callable[[str], None]) -> str:
    """Train one run to its end (or resume it); returns what happened: skipped, finished or diverged."""
    from sngan.train.loop import train

    result = run_dir / RESULT
    if result.exists():
        saved = read_result(run_dir)
        if saved["config"] != to_yaml(cfg):
            raise StudyError(f"{run_dir} was trained with another config than the plan now gives: restore the plan "
                             f"or use a new --out")
        if saved["status"] in DONE:
            return "skipped"
    found = list_checkpoints(run_dir / "checkpoints")
    if not found and read_run_id(run_dir) is not None:  # only a run folder sngan made is moved; train refuses others
        aside = run_dir.with_name(f".{run_dir.name}.unfinished-{time.strftime('%Y%m%d-%H%M%S')}")
        lock = FolderLock(run_dir)  # a process still training there is named, a user's .lock refused, never moved
        try:
            with writing(run_dir):
                run_dir.rename(aside)
        finally:
            lock.release()
        log(f"{run_dir.name}: stopped before its first checkpoint; moved to {aside.name}, starting afresh")
    resume = found[-1] if found else None
    early = run_dir.parent / FAILURES / f"{run_dir.name}.json"
    if early.is_file() and not early.is_symlink():  # tried again now: that failure is history
        early.unlink()
    status, message = "finished", ""
    if resume is None or checkpoint_step(resume) < cfg.train.iterations:
        if resume is not None:
            log(f"{run_dir.name}: resuming from {resume.name}")
        try:
            train(cfg, run_dir, resume=resume, progress=progress, log=log)
        except TrainingDiverged as exc:
            status, message = "diverged", str(exc)
            log(f"{run_dir.name}: diverged: {exc}")
    write_result(run_dir, status, message, cfg)
    return status


def write_result(run_dir: Path, status: str, message: str, cfg: Config) -> None:
    """A run's result.json, written through a handle on its run folder (never through a link that replaced it)."""
    folder = Folder.open(run_dir)
    try:
        folder.write(RESULT, json.dumps({"status": status, "message": message, "config": to_yaml(cfg)},
                                        indent=1).encode())
    finally:
        folder.close()


def read_result(run_dir: Path, name: str = RESULT) -> dict[str, Any]:
    """A run's result.json (or its early-failure record, `name` in the study's FAILURES folder), checked (a hostile
    or torn file is one StudyError line naming it)."""
    path = run_dir / name
    try:
        if path.stat().st_size > MAX_RESULT_BYTES:
            raise ValueError(f"{path.stat().st_size} bytes")
        saved = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise StudyError(f"{path}: cannot read the run's result ({type(exc).__name__}); move the run folder aside "
                         f"to train it again") from None
    if not isinstance(saved, dict) or saved.get("status") not in (*DONE, "failed") or \
            not all(isinstance(saved.get(key), str) for key in ("message", "config")):
        raise StudyError(f"{path}: not a result sngan wrote (needs status finished|diverged|failed, message and "
                         f"config); move the run folder aside to train it again")
    return saved


def run_status(run_dir: Path) -> tuple[str, str]:
    """(status, message) of one run: finished, diverged or failed (its result.json, or the study's record of a
    failure before the run folder existed), running (another process holds its lock; the message names it) or
    pending."""
    if (run_dir / RESULT).exists():
        saved = read_result(run_dir)
        return saved["status"], saved["message"]
    holder = lock_holder(run_dir) if run_dir.is_dir() else None
    if holder is not None:
        return "running", holder
    early = run_dir.parent / FAILURES / f"{run_dir.name}.json"
    if early.exists():
        return "failed", read_result(early.parent, early.name)["message"]
    return "pending", ""


def summarize(run_dir: Path, variant: Variant, seed: int, known: tuple[str, str] | None = None) -> dict[str, Any]:
    """One study.jsonl record: status (`known`, else `run_status`), final and best metrics (named by their
    protocol), seconds per G step."""
    status, message = known or run_status(run_dir)
    result = {"status": status, "message": message}
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


def run_one_safely(cfg: Config, run_dir: Path, progress: bool, log: Callable[[str], None]) -> tuple[str, str]:
    """`run_one` as (status, message): a failure other than divergence is 'failed', recorded in the run's
    result.json when the folder is sngan's (the next start retries it); a run another process is training is left
    to it ('running')."""
    holder = lock_holder(run_dir) if run_dir.is_dir() else None
    if holder is not None:
        log(f"{run_dir.name}: running in another process ({holder}); left to it")
        return "running", holder
    try:
        return run_one(cfg, run_dir, progress, log), ""
    except (SnganError, MemoryError, RuntimeError) as exc:
        if isinstance(exc, (TrainingStopped, StudyError)) or \
                (isinstance(exc, RuntimeError) and type(exc).__name__ != "OutOfMemoryError"):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        if "in use by another sngan process" in message:
            return "running", message  # another process took the run between our look and train's lock
        record = json.dumps({"status": "failed", "message": message, "config": to_yaml(cfg)}, indent=1)
        if read_run_id(run_dir) is not None and not (run_dir / RESULT).is_symlink():
            write_result(run_dir, "failed", message, cfg)
        elif not run_dir.exists():  # failed before its folder existed: the study folder keeps the record
            failures = run_dir.parent / FAILURES
            with writing(failures):
                failures.mkdir(exist_ok=True)
            write_text(failures / f"{run_dir.name}.json", record)
        return "failed", message


class _Orphanable:
    """A --jobs child's stdout/stderr (a pipe to its parent) that goes quiet once the parent is gone, instead of
    raising BrokenPipeError into the training loop before it could write its checkpoint (its log.txt keeps every
    line)."""

    def __init__(self, stream: Any):
        self._stream, self._gone = stream, False

    def write(self, text: str) -> int:
        if not self._gone:
            try:
                self._stream.write(text)
                self._stream.flush()
            except (BrokenPipeError, ValueError):
                self._gone = True
        return len(text)

    def flush(self) -> None:
        if not self._gone:
            try:
                self._stream.flush()
            except (BrokenPipeError, ValueError):
                self._gone = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


PARENT_ENV = "SNGAN_STUDY_PARENT"  # set by --jobs for its children: the parent's PID


def follow_parent() -> None:
    """A --jobs child gets SIGTERM when its parent dies (Linux's PR_SET_PDEATHSIG), so a killed `sngan study`
    leaves no run training on its own: each child checkpoints and stops, and a re-run resumes it."""
    parent = os.environ.get(PARENT_ENV)
    if parent is None or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    sys.stdout, sys.stderr = _Orphanable(sys.stdout), _Orphanable(sys.stderr)  # the pipes die with the parent
    if str(os.getppid()) != parent:  # the parent died before the request took effect
        raise StudyError("the sngan study --jobs process that started this run has ended; run the study again")


def child_devices(slots: int) -> list[str | None]:
    """The CUDA device each --jobs slot gets: the parent's CUDA_VISIBLE_DEVICES list in turn (so
    CUDA_VISIBLE_DEVICES=4,5,6,7 --jobs 4 uses 4..7), else 0..N-1 when there are GPUs, else none."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        devices = [d.strip() for d in visible.split(",") if d.strip()]
    else:
        import torch

        devices = [str(i) for i in range(torch.cuda.device_count())]
    return [devices[slot % len(devices)] if devices else None for slot in range(slots)]


def _relay(name: str, stream: Any, log: Callable[[str], None]) -> None:
    """Every line a child prints, prefixed with its run's name."""
    for line in stream:
        log(f"[{name}] {line.rstrip()}")


def _run_children(plan: Plan, out: Path, names: list[str], jobs: int, total: int, log: Callable[[str], None]
                  ) -> dict[str, int]:
    """Run each named run in its own `sngan study --only` process, `jobs` at a time (one device per slot); returns
    each child's exit code by run name."""
    devices = child_devices(jobs)
    pending = list(names)
    running: dict[int, tuple[str, subprocess.Popen, threading.Thread]] = {}
    codes: dict[str, int] = {}
    started = 0
    while pending or running:
        free = [slot for slot in range(jobs) if slot not in running]
        while pending and free:
            slot, name = free.pop(0), pending.pop(0)
            device = devices[slot]
            env = {**os.environ, PARENT_ENV: str(os.getpid()),
                   **({"CUDA_VISIBLE_DEVICES": device} if device is not None else {})}
            cmd = [sys.executable, "-m", "sngan", "study", "--plan", str(plan.path), "--out", str(out),
                   "--only", name, "--no-progress", "--no-table"]
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    errors="replace")
            relay = threading.Thread(target=_relay, args=(name, proc.stdout, log), daemon=True)
            relay.start()
            running[slot] = (name, proc, relay)
            started += 1
            log(f"run {started}/{total}: {name} started in slot {slot}"
                + (f" (CUDA_VISIBLE_DEVICES={device})" if device is not None else ""))
        time.sleep(0.2)
        for slot, (name, proc, relay) in list(running.items()):
            if proc.poll() is not None:
                relay.join()
                codes[name] = proc.returncode
                del running[slot]
    return codes


def run_study(plan: Plan, out: Path | None = None, jobs: int = 1, only: str | list[str] | None = None,
              progress: bool = True, log: Callable[[str], None] = print, table: bool = True) -> Path:
    """Run (or continue) the runs of `plan` not yet done, then write study.jsonl, study.md and the figures.

    Args:
        plan: a loaded plan (`sngan.study.plan.load_plan`).
        out: the study folder (default: the plan's).
        jobs: runs at a time, each in its own process (1 = in this process, one after another).
        only: run just this run (`<variant>-s<seed>`), or just these runs (in plan order, `jobs` at a time).
        progress: progress bars.
        table: write the table and figures afterwards (under the folder lock).

    Returns:
        The study folder.
    """
    out = Path(out) if out is not None else plan.out
    runs = {run_name(v, s): (v, s, plan.config(v, s)) for v, s in plan.runs()}
    chosen = [only] if isinstance(only, str) else list(dict.fromkeys(only or ()))
    for name in chosen:
        if name not in runs:
            raise StudyError(f"--only {name}: not a run of {plan.path} (runs: {', '.join(runs)})")
    claim_study_folder(out, list(runs))
    if len(chosen) == 1:
        name = chosen[0]
        follow_parent()
        if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
            log(f"{name}: CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']}")
        statuses = {name: run_one_safely(runs[name][2], out / name, progress, log)}
    else:
        statuses = _run_all(plan, out, {n: r for n, r in runs.items() if not chosen or n in chosen}, jobs, progress,
                            log)
    failed = {name: message for name, (status, message) in statuses.items() if status == "failed"}
    if table:
        write_table(plan, out, log, {name: ("failed", message) for name, message in failed.items()})
    if failed:
        named = "; ".join(f"{name}: {message}" for name, message in failed.items())
        raise StudyError(f"{len(failed)} of {len(statuses)} runs failed ({named}); the others are in "
                         f"{out / 'study.md'}; run the study again to retry the failed ones")
    return out


def claim_study_folder(out: Path, names: list[str]) -> None:
    """Make `out` a study folder, or refuse a folder that is neither empty nor one (the marker `.sngan-study`, the
    one study folder format; a folder holding only folders named like the plan's runs is a study being assembled:
    each run folder is then checked by its own ownership rule)."""
    marker = out / STUDY_MARKER
    if out.is_symlink() and not out.exists():
        raise StudyError(f"study folder '{out}' is a dangling symbolic link; choose another --out")
    if out.exists() and not out.is_dir():
        raise StudyError(f"study folder '{out}' is a file; choose another --out")
    if marker.is_symlink() or (marker.exists() and not marker.is_file()):
        raise StudyError(f"'{marker}' is not a regular file; sngan never writes through links")
    if marker.is_file():
        return
    entries = list(out.iterdir()) if out.is_dir() else []
    assembled = all(entry.name in names and entry.is_dir() and not entry.is_symlink() for entry in entries)
    if entries and not assembled:
        raise StudyError(f"study folder '{out}' is not empty and is not a study folder sngan made (no "
                         f"{STUDY_MARKER}); choose another --out")
    with writing(marker):
        out.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666))
        except FileExistsError:  # another process of the same study made it first
            pass


def _run_all(plan: Plan, out: Path, runs: dict[str, tuple[Variant, int, Config]], jobs: int, progress: bool,
             log: Callable[[str], None]) -> dict[str, tuple[str, str]]:
    """Every run not yet done (children with --jobs); returns each run's (status, message)."""
    todo = [name for name in runs if run_status(out / name)[0] not in DONE]
    log(f"study {out}: {len(runs)} runs, {len(runs) - len(todo)} already done")
    if todo and plan.evaluation:  # every run would fail at its start without them: say it once, before any run
        from sngan.metrics.inception import resolve_weights

        resolve_weights(runs[todo[0]][2].train.eval_inception_weights or None)
    statuses = {}
    for name in runs:
        if name not in todo:  # a finished run must still match the plan (run_one refuses a changed config)
            statuses[name] = (run_one(runs[name][2], out / name, progress, log), "")
    if jobs > 1 and todo:
        codes = _run_children(plan, out, todo, jobs, len(todo), log)
        for name in todo:  # a child that failed without a result.json (a refused folder) still counts as failed
            status, message = run_status(out / name)
            failed = codes[name] != 0 and status == "pending"
            statuses[name] = ("failed", f"exit {codes[name]} (its message is above)") if failed else (status, message)
    else:
        for k, name in enumerate(todo, 1):
            log(f"run {k}/{len(todo)}: {name}")
            statuses[name] = run_one_safely(runs[name][2], out / name, progress, log)
    for name in todo:
        status, message = statuses[name]
        log(f"{name}: {status}" + (f": {message}" if status in ("failed", "running") and message else ""))
    return statuses


def write_table(plan: Plan, out: Path, log: Callable[[str], None],
                known: dict[str, tuple[str, str]] | None = None) -> None:
    """study.jsonl, study.md and the figures from the results found (and the `known` statuses of runs that failed
    in this process), under the study folder's lock."""
    known = known or {}
    lock = FolderLock(out, "study folder", wait_s=TABLE_LOCK_WAIT_S)
    try:
        records = [summarize(out / run_name(v, s), v, s, known.get(run_name(v, s))) for v, s in plan.runs()]
        lock.folder.write("study.jsonl", "".join(json.dumps(r) + "\n" for r in records).encode())
        done = [r for r in records if r["status"] in DONE]
        figures = write_figures(done, out, plan.evaluation) if done else []
        lock.folder.write("study.md", markdown(plan, records, figures).encode())
    finally:
        lock.release()
    waiting = sum(r["status"] in ("running", "pending") for r in records)
    log(f"wrote {out / 'study.md'}, {out / 'study.jsonl'} and {len(figures)} figures"
        + (f" ({waiting} runs not done yet: the table is complete once they are)" if waiting else ""))


def status_lines(plan: Plan, out: Path) -> list[str]:
    """`sngan study --status`: one line per run (name, status, step of its newest checkpoint), then the counts."""
    lines: list[str] = []
    counts: dict[str, int] = {}
    for variant, seed in plan.runs():
        name = run_name(variant, seed)
        try:
            status, message = run_status(out / name)
        except StudyError as exc:  # one unreadable result is this run's line; the others are still listed
            status, message = "unreadable", str(exc)
        found = list_checkpoints(out / name / "checkpoints")
        step = checkpoint_step(found[-1]) if found else 0
        counts[status] = counts.get(status, 0) + 1
        detail = f" ({message})" if status in ("running", "failed", "unreadable") and message else ""
        lines.append(f"{name}  {status}  step {step}{detail}")
    lines.append(", ".join(f"{count} {status}" for status, count in counts.items()))
    return lines


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


def submit_study(plan: Plan, out: Path, kind: str, wait: bool, log: Callable[[str], None],
                 **overrides: Any) -> None:
    """`sngan study --executor KIND`: the runs not yet done (nor running) as one submitit job array; with `wait`,
    wait for them and write the table."""
    import dataclasses

    from sngan.study.slurm import EXECUTORS, check_executor, submit, wait_for

    if kind not in EXECUTORS:
        raise StudyError(f"--executor must be one of {', '.join(EXECUTORS)}, got {kind[:40]!r}")
    check_executor(kind)  # before anything is written
    if kind == "debug" and not wait:
        log("--executor debug runs each task in this process when it is waited for: waiting (as --wait)")
        wait = True
    options = checked_slurm_options(dataclasses.replace(plan.slurm, **{k: v for k, v in overrides.items()
                                                         if v is not None and v != ()}), "--executor")
    names = [run_name(v, s) for v, s in plan.runs()]
    claim_study_folder(out, names)
    todo = [name for name in names if run_status(out / name)[0] not in (*DONE, "running")]
    log(f"study {out}: {len(names)} runs, {len(names) - len(todo)} done or running, submitting {len(todo)}")
    if not todo:
        write_table(plan, out, log)
        return
    jobs = submit(StudyTask(), plan.path.resolve(), out.resolve(), todo, kind, options, log)
    if not wait:
        log(f"follow them with: sngan study --plan {plan.path} --out {out} --status; each task writes the table "
            f"when its run ends, and sngan study --plan {plan.path} --out {out} writes it again")
        return
    failed = wait_for(jobs, todo, log)
    write_table(plan, out, log, {name: ("failed", message) for name, message in failed.items()
                                 if run_status(out / name)[0] not in DONE})
    if failed:
        raise StudyError(f"{len(failed)} of {len(todo)} runs failed ({', '.join(failed)}); their logs are under "
                         f"{out / 'slurm'}; submit again to retry them")


class StudyTask:
    """One array task: one run of a study (`sngan study --only RUN`), requeued by submitit on a time limit or a
    preemption after the training loop has written its checkpoint."""

    def __call__(self, plan_path: str, out: str, name: str) -> str:
        from sngan.train.loop import pass_on

        try:
            run_study(load_plan(plan_path), Path(out), only=name, progress=False, log=print)
        except TrainingStopped:
            # the checkpoint is written: now submitit's own handler requeues
            pass_on(signal.SIGUSR2)
            raise
        return name

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """What submitit resubmits: the same run, which continues from its newest checkpoint."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)
