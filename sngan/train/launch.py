"""`sngan train` as a plain function: options -> (config, run directory, checkpoint to resume) -> `train`.

Under torchrun each process calls `launch`; rank 0's choice of run directory is broadcast so every rank writes (or
rather, rank 0 writes and the others follow) the same run.
"""

from __future__ import annotations

from pathlib import Path

from sngan import distributed
from sngan.checkpoint import Opened, list_checkpoints, open_checkpoint
from sngan.config import Config, apply_overrides, from_dict, load_config
from sngan.errors import SnganError
from sngan.limits import check_model_size
from sngan.train.loop import dry_run_summary, train
from sngan.train.ownership import run_folder_of
from sngan.train.rundir import latest_run_dir, next_run_dir


def resolve_run(config: Path | None, overrides: list[str], out: Path | None,
                resume: str | None) -> tuple[Config, Path, Path | Opened | None]:
    """(config, run directory, checkpoint to resume or None) from the train options; without --config the
    checkpoint is opened here, once, and handed on opened."""
    if config is None and resume is None:
        raise SnganError("--config FILE is required (or --resume to continue a run)")
    name = config.stem if config is not None else None
    ckpt_path: Path | None = None
    if resume == "auto":
        run_dir = out or (latest_run_dir(name) if name else None)
        if run_dir is None:
            raise SnganError("--resume auto needs --out RUN_DIR (or --config with an earlier run under runs/)")
        found = list_checkpoints(run_dir / "checkpoints")
        if not found:
            raise SnganError(f"--resume auto: no checkpoint in '{run_dir / 'checkpoints'}'")
        ckpt_path = found[-1]
    elif resume is not None:
        ckpt_path = Path(resume)
        run_dir = out or run_folder_of(ckpt_path) or ckpt_path.parent  # check_owner refuses a foreign folder
    else:
        run_dir = out or next_run_dir(name)
    if config is not None:
        cfg = load_config(config, overrides)
    else:
        opened = open_checkpoint(ckpt_path)
        cfg = from_dict(apply_overrides(opened.state["config"], overrides))
        return cfg, run_dir, opened
    return cfg, run_dir, ckpt_path


def launch(config: Path | None, overrides: list[str], out: Path | None, resume: str | None, dry_run: bool,
           progress: bool) -> str | None:
    """Run `sngan train`; returns the dry-run summary text instead of training when `dry_run`."""
    cfg, run_dir, ckpt_path = resolve_run(config, overrides, out, resume)
    check_model_size(cfg.model)  # before any network is allocated, for --dry-run too
    if dry_run:
        return dry_run_summary(cfg)
    info = distributed.from_env()
    distributed.init_process_group(info, distributed.resolve_device(cfg.train.device).type)
    try:
        run_dir = distributed.broadcast_object(run_dir, info)  # every rank uses rank 0's choice
        train(cfg, run_dir, resume=ckpt_path, progress=progress, info=info)
    except RuntimeError as exc:
        if not distributed.is_peer_failure(exc, info):
            raise
        raise SnganError("lost contact with another process of this job: it failed or was stopped (its own "
                         "message above names the cause)") from None
    finally:
        distributed.shutdown()
    return None
