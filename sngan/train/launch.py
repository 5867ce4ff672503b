"""`sngan train` as a plain function: options -> (config, run directory, checkpoint to resume) -> `train`.

One command starts and continues a run, as a scheduler repeats it: `sngan train --config C --out DIR --resume auto`
starts a new run when DIR has no checkpoint and continues its newest checkpoint otherwise (the newest periodic one,
else best.pt: `rundir.newest_checkpoint`, the same rule by which a new run refuses the folder), saying which. A torchrun
restart (TORCHELASTIC_RESTART_COUNT > 0) reads the same command line as `--resume auto`: the restarted workers
continue the run the first attempt started.

A 1-process run goes straight through: choose the run, open the config and checkpoint, train. Under torchrun
(`launch_ranks`) every process joins the process group before anything that can fail, and each step of the start
ends in `distributed.together`: rank 0 chooses the run folder and the checkpoint, the ranks compare what each node
holds of the run (`agree_on_checkpoint`), rank 0 sends that checkpoint's bytes to the others (so a node needs no
copy of the run folder), every rank opens them, and the resolved configs of all ranks must be equal.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sngan import distributed
from sngan.checkpoint import checkpoint_step, list_checkpoints, open_checkpoint, read_step
from sngan.config import Config, apply_overrides, from_dict, load_config, to_yaml
from sngan.data.cache import check_data_root
from sngan.errors import SnganError
from sngan.io import open_input, sha256_file
from sngan.models import (
    BYTES_PER_TRAINED_PARAMETER,
    build_discriminator,
    build_generator,
    check_model_size,
    count_parameters,
)
from sngan.train.loop import train
from sngan.train.rundir import latest_run_dir, newest_checkpoint, next_run_dir, run_folder_of
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
    if resume is not None and not resume.strip():
        raise SnganError("--resume needs a checkpoint file or 'auto', got an empty value")
    name = config.stem if config is not None else None
    if resume is None and restarted:
        resume = "auto"  # a torchrun restart continues what the first attempt started
    if resume == "auto":
        run_dir = out or (latest_run_dir(name) if name else None)
        if run_dir is None:
            if name is None:
                raise SnganError("--resume auto needs --out RUN_DIR (or --config with an earlier run under runs/)")
            return Choice(next_run_dir(name), None, "--resume auto: no earlier run of this config, starting one")
        newest = newest_checkpoint(run_dir / "checkpoints")  # the same answer a new run's check gets
        if newest is not None:
            return Choice(run_dir, newest, f"--resume auto: continuing {newest}, the newest checkpoint of {run_dir}")
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


@dataclass(frozen=True)
class Held:
    """What one rank sees of the run: its host, which checkpoints folder it sees (host, device, inode: ranks that
    see one folder read the same files) and the newest checkpoint's step there."""

    rank: int
    host: str
    view: tuple[str, int, int] | None
    step: int | None



def agree_on_checkpoint(choice: Choice, continuing: bool, info: distributed.DistInfo) -> tuple[bytes | None, str]:
    """Every rank resumes from rank 0's checkpoint, whatever its own node holds: returns that file's bytes (sent by
    rank 0 over the process group, so a node without a copy of the run folder needs none; None for a fresh start)
    and a line for the log when another node's copy is behind.

    Before anything is sent the nodes' copies are compared, and every rank stops with the same line when
    - rank 0 starts afresh while another node holds checkpoints of the run (two unrelated runs would follow);
    - `continuing` (--resume auto, a restart) and another node holds a newer checkpoint than rank 0's newest (rank
      0's copy is stale: resuming from it would lose the steps since), or another file of the same step (its
      sha256, computed by the first process of each node, differs from that of rank 0's bytes).
    """
    folder = choice.run_dir / "checkpoints"
    found = list_checkpoints(folder) if not info.is_main else []
    mine = found[-1] if found else None
    host = socket.gethostname()
    try:
        seen = os.stat(folder)
        view = (host, seen.st_dev, seen.st_ino)
    except OSError:
        view = None
    held = distributed.gather_objects(Held(info.rank, host, view, None if mine is None else checkpoint_step(mine)),
                                      info)
    if choice.checkpoint is None:
        holding = [h for h in held[1:] if h.step is not None]
        if holding:
            h = holding[0]
            raise SnganError(f"rank {h.rank} ({h.host}) holds checkpoints of the run in '{folder}' (newest step "
                             f"{h.step}) but rank 0 ({held[0].host}) starts afresh there: the nodes do not share the "
                             f"run folder (put it on a shared filesystem, or copy the newest checkpoint to rank 0's "
                             f"node)")
        return None, ""
    data, ref = None, None
    with distributed.together(info, "reading the checkpoint to send"):
        if info.is_main:
            with open_input(choice.checkpoint) as fh:
                data = fh.read()
            ref = (read_step(choice.checkpoint), hashlib.sha256(data).hexdigest())
    ref_step, ref_sha = distributed.broadcast_object(ref, info)
    notice = ""
    if continuing:
        own_sha = None
        with distributed.together(info, "comparing the nodes' checkpoints"):
            # one hash per folder seen (not rank 0's): the first rank that sees it
            me = held[info.rank]
            first = next(h.rank for h in held if h.view == me.view)
            if mine is not None and me.step == ref_step and me.view != held[0].view and first == info.rank:
                own_sha = sha256_file(mine)
        shas = distributed.gather_objects(own_sha, info)
        host0 = held[0].host
        for h, sha in zip(held[1:], shas[1:], strict=True):
            if h.step is not None and h.step > ref_step:
                raise SnganError(f"rank {h.rank} ({h.host}) holds step {h.step} of the run but rank 0 ({host0}) "
                                 f"continues from step {ref_step}: rank 0's copy of '{folder}' is stale; copy the "
                                 f"newest checkpoint to rank 0's node (or share the folder) and start again")
            if sha is not None and sha != ref_sha:
                raise SnganError(f"rank {h.rank} ({h.host}) holds another file of step {ref_step} than rank 0 "
                                 f"({host0}) in '{folder}' (sha256 {sha[:12]} against {ref_sha[:12]}): the copies "
                                 f"are of different runs; keep one and start again")
        behind = [h for h in held[1:] if h.step is None or h.step < ref_step]
        if behind:
            h = behind[0]
            notice = (f"every rank resumes from rank 0's step {ref_step}, sent over the process group (rank {h.rank} "
                      f"on {h.host} holds {'no checkpoint' if h.step is None else f'step {h.step}'} of the run)")
    return distributed.broadcast_bytes(data, info), notice


def resolve_run(config: Path | None, overrides: list[str], choice: Choice, data: bytes | None = None
                ) -> tuple[Config, Resume | None]:
    """The config (from --config, else the checkpoint's) and the checkpoint of `choice`, opened and checked
    (`data`: its bytes as rank 0 sent them; else it is read here)."""
    if choice.checkpoint is None:
        if config is None:  # choose_run gives no checkpoint only with --config
            raise SnganError("--config FILE is required (or --resume to continue a run)")
        return load_config(config, overrides), None
    opened = open_checkpoint(choice.checkpoint, data=data)
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
    """Run `sngan train` (start or continue): in this process, or under torchrun on every rank (`launch_ranks`)."""
    info = distributed.from_env()
    if info.enabled:
        launch_ranks(config, overrides, out, resume, progress, info)
        return
    choice = choose_run(config, out, resume)
    cfg, resume_from = resolve_run(config, overrides, choice)
    check_model_size(cfg.model)  # before any network is allocated
    train(cfg, choice.run_dir, resume=resume_from, progress=progress, notice=choice.notice)


def launch_ranks(config: Path | None, overrides: list[str], out: Path | None, resume: str | None, progress: bool,
                 info: distributed.DistInfo) -> None:
    """`launch` under torchrun: the same steps, each agreed on by every rank (module docstring)."""
    distributed.init_process_group(info)  # first: every later failure is agreed on by all ranks
    try:
        choice = None
        # an agent whose workers were restarted for another node's failure keeps its count: any rank's will do
        restarted = max(distributed.gather_objects(distributed.restart_count(), info)) > 0
        with distributed.together(info, "choosing the run folder"):
            if info.is_main:
                choice = choose_run(config, out, resume, restarted)
        choice = distributed.broadcast_object(choice, info)  # every rank uses rank 0's choice
        data, behind = agree_on_checkpoint(choice, resume == "auto" or restarted, info)
        with distributed.together(info, "reading the config and checkpoint"):
            cfg, resume_from = resolve_run(config, overrides, choice, data)
            check_model_size(cfg.model)  # before any network is allocated
        distributed.check_same_config(cfg.to_dict(), info)
        notice = "; ".join(line for line in (choice.notice, behind) if line) or None
        train(cfg, choice.run_dir, resume=resume_from, progress=progress, info=info, notice=notice)
    except RuntimeError as exc:
        if not distributed.is_peer_failure(exc, info):
            raise
        raise SnganError("lost contact with another process of this job: it failed or was stopped (its own "
                         "message above names the cause)") from None
    finally:
        distributed.shutdown()
