"""`sngan study --executor slurm|local|debug`: the runs still to do as one job array through submitit.

submitit (the optional extra `sngan[slurm]`) writes the sbatch script, submits one array task per run, and, when
Slurm warns a task of its time limit or preemption (SIGUSR2, `--signal=USR2@90` in the script it writes), calls the
task's `checkpoint` and requeues it. sngan adds the part submitit cannot know: the training loop catches the signal
first (`sngan.train.loop.SignalGuard`), writes a checkpoint at the current step, and only then hands the signal to
submitit, so the requeued task continues its run from that step. `local` runs the same tasks as processes on this
machine (submitit's LocalExecutor, which also sends SIGUSR2 at its time limit and requeues), `debug` in this
process; the tests drive the Slurm path through them.

Options (every one also a key of the plan's `slurm:` section; the command line wins):
    partition, time_min, gpus_per_run, cpus_per_run, mem_gb, array_parallelism, sbatch (extra `--key=value` lines),
    setup (shell lines run before the task: `module load`, `source venv/bin/activate`).
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from sngan.config import check_value, option
from sngan.errors import ConfigError, StudyError, TrainingStopped
from sngan.train.loop import pass_on

EXECUTORS = ("slurm", "local", "debug")


@dataclass(frozen=True)
class SlurmOptions:
    """What each array task asks the scheduler for (the plan's `slurm:` section, read with the config's schema
    machinery, `sngan.config.build_section`)."""

    partition: str | None = option(None, "Slurm partition (none: the cluster's default)")
    time_min: int = option(24 * 60, "minutes per task; a run longer than this continues in its requeued task", ge=1,
                           le=60 * 24 * 365)
    gpus_per_run: int = option(1, "GPUs per task", ge=0, le=64)
    cpus_per_run: int = option(8, "CPUs per task", ge=1, le=1024)
    mem_gb: float | None = option(None, "memory per task in GB (none: the cluster's default)", gt=0, le=1e5)
    array_parallelism: int = option(64, "tasks running at once", ge=1, le=100_000)
    sbatch: tuple[str, ...] = option((), "extra sbatch options, '--key=value' or '--flag'")
    setup: tuple[str, ...] = option((), "shell lines before the task starts")


def checked(options: SlurmOptions, where: str) -> SlurmOptions:
    """Every option's bounds (its field's, as the plan's section is checked) and what a bound cannot say, before
    anything is submitted; the command line's values come through here too."""
    for f in fields(SlurmOptions):
        try:
            check_value(getattr(options, f.name), dict(f.metadata), f"slurm.{f.name}")
        except ConfigError as exc:
            raise StudyError(f"{where}: {exc}") from None
    if options.partition is not None and not options.partition:
        raise StudyError(f"{where}: slurm.partition must be a partition name")
    for name in ("sbatch", "setup"):
        if not all(isinstance(line, str) and "\n" not in line for line in getattr(options, name)):
            raise StudyError(f"{where}: slurm.{name} must be a list of one-line strings")
    for line in options.sbatch:
        if not line.startswith("--") or len(line) < 3:
            raise StudyError(f"{where}: slurm.sbatch lines are sbatch options like '--account=abc', got {line[:60]!r}")
    return options


def check_executor(kind: str) -> None:
    """Refuse, in one line, an executor this host cannot submit to, before anything is written: submitit's Slurm
    executor submits with `sbatch` and starts each task with `srun`."""
    if kind != "slurm":
        return
    missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
    if missing:
        raise StudyError(f"--executor slurm needs Slurm's sbatch and srun on this host's PATH ({' and '.join(missing)} "
                         f"not found): run it on a Slurm login node, or use --executor local to run the tasks here")


def _additional(sbatch: tuple[str, ...]) -> dict[str, Any]:
    """'--account=abc' -> {'account': 'abc'}, '--exclusive' -> {'exclusive': True} (submitit's spelling)."""
    out: dict[str, Any] = {}
    for line in sbatch:
        key, eq, value = line[2:].partition("=")
        out[key.replace("-", "_")] = value if eq else True
    return out


class StudyTask:
    """One array task: one run of a study (`sngan study --only RUN`), requeued by submitit on a time limit or a
    preemption after the training loop has written its checkpoint."""

    def __call__(self, plan_path: str, out: str, name: str) -> str:
        from sngan.study.plan import load_plan
        from sngan.study.run import run_study

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


def submit(plan_path: Path, out: Path, names: list[str], kind: str, options: SlurmOptions,
           log: Callable[[str], None]) -> list[Any]:
    """Submit `names` (runs of the plan at `plan_path`, study folder `out`) as one array; returns submitit's jobs."""
    try:
        import submitit
    except ImportError:
        raise StudyError("--executor needs submitit: pip install 'sngan[slurm]' (or drive the study with a plain "
                         "job array: sngan study --plan P --list / --only-index $SLURM_ARRAY_TASK_ID)") from None
    executor = submitit.AutoExecutor(folder=out / "slurm" / "%j", cluster=kind)
    parameters: dict[str, Any] = {"name": f"sngan-{plan_path.stem}", "timeout_min": options.time_min,
                                  "cpus_per_task": options.cpus_per_run, "tasks_per_node": 1, "nodes": 1,
                                  "slurm_array_parallelism": options.array_parallelism}
    if kind != "debug":
        parameters["gpus_per_node"] = options.gpus_per_run
    if options.mem_gb is not None:
        parameters["mem_gb"] = options.mem_gb
    if options.partition:
        parameters["slurm_partition"] = options.partition
    if options.sbatch:
        parameters["slurm_additional_parameters"] = _additional(options.sbatch)
    if options.setup:
        parameters["slurm_setup"] = list(options.setup)
    executor.update_parameters(**parameters)
    task = StudyTask()
    count = len(names)
    jobs = executor.map_array(task, [str(plan_path)] * count, [str(out)] * count, names)
    for name, job in zip(names, jobs, strict=True):
        log(f"{name}: submitted as job {job.job_id} ({kind})")
    return jobs


def wait_for(jobs: list[Any], names: list[str], log: Callable[[str], None]) -> dict[str, str]:
    """Wait for every job; returns the failed runs' messages by name (a task's own message is in its log)."""
    failed = {}
    for name, job in zip(names, jobs, strict=True):
        try:
            job.result()
        except Exception as exc:  # noqa: BLE001 - submitit re-raises the task's failure; it is reported, not lost
            text = " ".join(str(exc).split())
            failed[name] = (text[-300:] if text else type(exc).__name__)
            log(f"{name}: failed (job {job.job_id}; its log: {job.paths.stderr})")
    return failed
