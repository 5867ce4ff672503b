"""`sngan study --executor slurm|local|debug`: the runs still to do as one job array through submitit.

submitit (the optional extra `sngan[slurm]`) writes the sbatch script, submits one array task per run, and, when
Slurm warns a task of its time limit or preemption (SIGUSR2, `--signal=USR2@90` in the script it writes), calls the
task's `checkpoint` and requeues it. sngan adds the part submitit cannot know: the training loop catches the signal
first (`sngan.train.loop.SignalGuard`), writes a checkpoint at the current step, and only then hands the signal to
submitit (`sngan.study.run.StudyTask`), so the requeued task continues its run from that step. `local` runs the same
tasks as processes on this machine (submitit's LocalExecutor, which also sends SIGUSR2 at its time limit and
requeues), `debug` in this process; the tests drive the Slurm path through them.

Options (`sngan.study.plan.SlurmOptions`, every one also a key of the plan's `slurm:` section; the command line
wins):
    partition, time_min, gpus_per_run, cpus_per_run, mem_gb, array_parallelism, sbatch (extra `--key=value` lines),
    setup (shell lines run before the task: `module load`, `source venv/bin/activate`).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sngan.errors import StudyError
from sngan.study.plan import SlurmOptions

EXECUTORS = ("slurm", "local", "debug")


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


def submit(task: Callable[[str, str, str], str], plan_path: Path, out: Path, names: list[str], kind: str,
           options: SlurmOptions, log: Callable[[str], None]) -> list[Any]:
    """Submit `names` (runs of the plan at `plan_path`, study folder `out`) as one array of `task(plan_path, out,
    name)` (`sngan.study.run.StudyTask`); returns submitit's jobs."""
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
