"""`sngan train` as a plain function: options -> (config, run directory, checkpoint to resume) -> `train`.

One command starts and continues a run, as a scheduler repeats it: `sngan train --config C --out DIR --resume auto`
starts a new run when DIR has no checkpoint and continues its newest checkpoint otherwise, saying which. A torchrun
restart (TORCHELASTIC_RESTART_COUNT > 0) reads the same command line as `--resume auto`: the restarted workers
continue the run the first attempt started.

Under torchrun every process joins the process group before anything that can fail, and each step of the start
ends in `distributed.together`: rank 0 chooses the run folder and the checkpoint, every rank opens that checkpoint
(a node without it says so), and the resolved configs of all ranks must be equal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sngan import distributed
from sngan.checkpoint import list_checkpoints, open_checkpoint
from sngan.config import Config, apply_overrides, from_dict, load_config, to_yaml
from sngan.data.cache import check_data_root
from sngan.errors import SnganError
from sngan.models import (
    BYTES_PER_TRAINED_PARAMETER,
    build_discriminator,
    build_generator,
    check_model_size,
    count_parameters,
)
from sngan.train.loop import train
from sngan.train.rundir import latest_run_dir, next_run_dir, run_folder_of
from sngan.train.state import Resume, open_resume


@dataclass(frozen=True)
class Choice:
    """Where a run goes and what it continues (decided by rank 0 under torchrun)."""

    run_dir: Path
    checkpoint: Path | None
    notice: str | None = None  # what --resume auto decided, for the log


def choose_run(config: Path | None, out: Path | None, resume: str | None, restarted: bool = False) -> Choice:
    """The run folder and the checkpoint to continue, from the train options (`restarted`: a torchrun restart)."""
    if config is None and resume is None:
        raise SnganError("--config FILE is required (or --resume to continue a run)")
    name = config.stem if config is not None else None
    if resume is None and restarted:
        resume = "auto"  # a torchrun restart continues what the first attempt started
    if resume == "auto":
        run_dir = out or (latest_run_dir(name) if name else None)
        if run_dir is None:
            if name is None:
                raise SnganError("--resume auto needs --out RUN_DIR (or --config with an earlier run under runs/)")
            return Choice(next_run_dir(name), None, "--resume auto: no earlier run of this config, starting one")
        found = list_checkpoints(run_dir / "checkpoints")
        if found:
            return Choice(run_dir, found[-1], f"--resume auto: continuing {found[-1]}, the newest checkpoint of "
                                              f"{run_dir}")
        if config is None:
            raise SnganError(f"--resume auto: no checkpoint in '{run_dir / 'checkpoints'}' (give --config as well "
                             f"to start a new run there)")
        return Choice(run_dir, None, f"--resume auto: no checkpoint in {run_dir}, starting a new run there")
    if resume is not None:
        path = Path(resume)
        return Choice(out or run_folder_of(path) or path.parent, path)  # check_owner refuses a foreign folder
    if name is None:  # unreachable: without --config, --resume was given (checked first)
        raise SnganError("--config FILE is required (or --resume to continue a run)")
    return Choice(out or next_run_dir(name), None)


def check_same_folder(choice: Choice) -> None:
    """Refuse to start afresh on rank 0's word when this node holds checkpoints of the run (no shared folder)."""
    mine = list_checkpoints(choice.run_dir / "checkpoints")
    if choice.checkpoint is None and mine:
        raise SnganError(f"this node has checkpoints in '{choice.run_dir / 'checkpoints'}' ({mine[-1].name}) but rank "
                         f"0 finds none there: the nodes do not share the run folder (put it on a shared filesystem, "
                         f"or copy it to every node)")


def resolve_run(config: Path | None, overrides: list[str], choice: Choice) -> tuple[Config, Resume | None]:
    """The config (from --config, else the checkpoint's) and the checkpoint of `choice`, opened and checked."""
    if choice.checkpoint is None:
        if config is None:  # choose_run gives no checkpoint only with --config
            raise SnganError("--config FILE is required (or --resume to continue a run)")
        return load_config(config, overrides), None
    if not choice.checkpoint.exists() and distributed.from_env().enabled:  # rank 0 chose it on its node
        raise SnganError(f"checkpoint '{choice.checkpoint}' is not on this node: under torchrun every node needs the "
                         f"run's checkpoints (a shared filesystem, or copy the run folder to each node)")
    opened = open_checkpoint(choice.checkpoint)
    cfg = load_config(config, overrides) if config is not None else \
        from_dict(apply_overrides(opened.state["config"], overrides))
    return cfg, open_resume(opened, cfg)


def dry_run_summary(cfg: Config) -> str:
    """The resolved config, the parameter counts and the memory the weights need in training (what `sngan train
    --dry-run` prints before its data check)."""
    g, d = count_parameters(build_generator(cfg.model)), count_parameters(build_discriminator(cfg.model))
    ema = g if cfg.train.ema_decay > 0 else 0  # the EMA generator: a float32 copy of G's weights, no gradient
    gb = ((g + d) * BYTES_PER_TRAINED_PARAMETER + ema * 4) / 1e9
    return (f"{to_yaml(cfg)}generator parameters: {g}\ndiscriminator parameters: {d}\n"
            f"memory for weights, gradients and Adam moments (float32{', and the EMA generator' if ema else ''}): "
            f"{gb:.2f} GB, before activations, which grow with the batch size")


def dry_run(config: Path | None, overrides: list[str], out: Path | None, resume: str | None,
            say: Callable[[str], None]) -> None:
    """`sngan train --dry-run`: say everything that does not need the data (config, parameter counts, memory),
    then check the data root: a notice line, or the data's problem raised as the last line. Writes nothing."""
    cfg, _ = resolve_run(config, overrides, choose_run(config, out, resume))
    check_model_size(cfg.model)
    say(dry_run_summary(cfg))
    for notice in check_data_root(cfg.data, cfg.model.resolution):  # raises when training could not get images
        say(notice)


def launch(config: Path | None, overrides: list[str], out: Path | None, resume: str | None, progress: bool) -> None:
    """Run `sngan train` (start or continue; under torchrun, every rank)."""
    info = distributed.from_env()
    distributed.init_process_group(info)  # first: every later failure is agreed on by all ranks
    try:
        choice = None
        # an agent whose workers were restarted for another node's failure keeps its count: any rank's will do
        restarted = max(distributed.gather_objects(distributed.restart_count(), info)) > 0
        with distributed.together(info, "choosing the run folder"):
            if info.is_main:
                choice = choose_run(config, out, resume, restarted)
        choice = distributed.broadcast_object(choice, info)  # every rank uses rank 0's choice
        with distributed.together(info, "reading the config and checkpoint"):
            if (resume == "auto" or restarted) and not info.is_main:
                check_same_folder(choice)
            cfg, resume_from = resolve_run(config, overrides, choice)
            check_model_size(cfg.model)  # before any network is allocated
        distributed.check_same_config(cfg.to_dict(), info)
        train(cfg, choice.run_dir, resume=resume_from, progress=progress, info=info, notice=choice.notice)
    except RuntimeError as exc:
        if not distributed.is_peer_failure(exc, info):
            raise
        raise SnganError("lost contact with another process of this job: it failed or was stopped (its own "
                         "message above names the cause)") from None
    finally:
        distributed.shutdown()
