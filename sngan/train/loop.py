"""The training loop, top to bottom: resume or start -> per iteration: lr, G step, n_dis D steps, EMA -> what is due.

A run lives in one directory: config.yaml, metrics.jsonl, samples/, checkpoints/. `train(..., resume=...)` continues
bitwise-exactly on CPU: every RNG in use, both optimizers, the EMA generator and the data order are checkpointed
(`sngan.train.state.TrainState`). The pieces of one iteration are in `sngan.train.steps`.

Checkpoints, periodic `ckpt-<step>.pt` and `best.pt` alike, are written only through `write_checkpoint`: before any
file is written the weights must be finite (else `TrainingDiverged`, and the last good checkpoint is kept) and,
under torchrun, identical on every rank. Every rank calls it (the checks and the RNG gathering are collectives);
rank 0 alone writes.

Graceful stops (`SignalGuard`): a stop signal asks the loop to checkpoint and stop; a second Ctrl-C stops at once.
Stop signals: SIGINT (Ctrl-C), SIGTERM (`kill`, Slurm's time limit and preemption), SIGHUP (the terminal closed) and
SIGUSR2 (what Slurm sends ahead of a time limit through submitit). On a cluster one request arrives several times:
Slurm signals every process of the job, torchrun's agent forwards what it receives to its workers, and a Ctrl-C in
a terminal reaches the agent and the workers. So repeats are one request: any signal within `SAME_REQUEST_S` of the
first, and SIGTERM/SIGHUP/SIGUSR2 within `SAME_TERM_S` of it. After that a SIGINT (a second Ctrl-C) or a late
SIGTERM stops at once, without a checkpoint, as long as the stop checkpoint is not written yet. Once it is written
(`SignalGuard.saved`), every later stop signal, during the teardown or after it, is one more request already served:
it is said in one line and the run still ends as stopped with a checkpoint (exit 143), never as interrupted (130,
"nothing saved").
"""

from __future__ import annotations

import functools
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from sngan import checkpoint as ckpt
from sngan.config import Config, TrainConfig, to_yaml
from sngan.distributed import SINGLE, DistInfo, any_rank, broadcast_buffers, max_divergence, resolve_device, together
from sngan.errors import CheckpointError, FolderChanged, SnganError, TrainingDiverged, TrainingStopped
from sngan.evaluation.scoring import TrainingEvaluator
from sngan.inspect.summary import spectral_record
from sngan.models import count_parameters
from sngan.progress import on_terminal, warning_lines
from sngan.sample.generate import generate, latents
from sngan.sample.writers import grid_writer
from sngan.train.losses import LOSSES
from sngan.train.perf import compile_or_eager, path_line, resolve_perf
from sngan.train.rundir import RunFolder, check_owner
from sngan.train.runlog import Progress, RunLog, check_wandb, open_wandb
from sngan.train.state import Resume, TrainState, build_state, open_resume
from sngan.train.steps import LossWindow, iteration, refresh_ema_batchnorm

SIGNAL_POLL_EVERY = 10  # under torchrun, ranks agree on a received signal every this many G iterations
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR2)
SAME_REQUEST_S = 1.0  # a Ctrl-C reaches torchrun's agent and workers, and the agent forwards it within this
SAME_TERM_S = 30.0  # Slurm's SIGTERM to every process plus torchrun's forwarded one (its agent kills after 30 s)


@dataclass(frozen=True)
class Due:
    """What happens after one G iteration besides the update itself."""

    log: bool
    sample: bool
    save: bool
    evaluate: bool
    inspect: bool
    stop: bool

    @property
    def refresh(self) -> bool:
        """Whether the generators are about to be used (sampled, scored or saved)."""
        return self.sample or self.save or self.evaluate


def due(step: int, t: TrainConfig, stopping: bool, evaluating: bool) -> Due:
    """What is due after G iteration `step` (1-based count of completed iterations).

    Collective-order rule: under torchrun every rank must run the same collectives (all-reduces, broadcasts,
    gathers) in the same order, or the job hangs. So this decision may depend only on values equal on every rank:
    the step, the config, whether evaluation is on, and `stopping` (itself agreed on by an all-reduce in
    `any_rank`). Nothing rank-local (a signal seen by one rank, rank 0's files) may enter here, and the loop runs
    every due action on every rank, leaving only file writes to rank 0.

    The last iteration and a stop request make everything due except evaluation on a stop (a signal asks for a
    quick checkpoint, not an IS/FID pass).
    """
    end = step == t.iterations or stopping
    return Due(log=step % t.log_every == 0 or end,
               sample=bool(t.sample_every and step % t.sample_every == 0) or end,
               save=bool(t.ckpt_every and step % t.ckpt_every == 0) or end,
               evaluate=evaluating and not stopping and (step % t.eval_every == 0 or end),
               inspect=bool(t.inspect_every and step % t.inspect_every == 0) and not stopping,
               stop=stopping)


def write_checkpoint(state: TrainState, folder: RunFolder | None, name: str, run_dir: Path) -> Path:
    """Check the weights, snapshot the state (all ranks) and write it atomically as `checkpoints/<name>` through
    the run folder's handle (rank 0, the one with a `folder`). Returns the checkpoint's path."""
    check_finite_weights(state)
    check_ranks_agree(state)
    snapshot = state.snapshot()
    if folder is None:
        return run_dir / "checkpoints" / name
    return folder.save(name, ckpt.writer(snapshot))


def save_periodic(state: TrainState, folder: RunFolder | None, run_dir: Path) -> Path:
    """`ckpt-<step>.pt` through `write_checkpoint`, then prune old periodic checkpoints (best.pt is kept apart)."""
    path = write_checkpoint(state, folder, ckpt.checkpoint_path("", state.step).name, run_dir)
    if folder is not None:
        folder.prune(state.cfg.train.keep_checkpoints)
    return path


def rescue(state: TrainState, folder: RunFolder | None, run_dir: Path, changed: FolderChanged) -> FolderChanged:
    """After a part of the run folder was swapped mid-run (`changed`): a checkpoint of this step in the run's own
    folder (`RunFolder.rescue`), and the one line that says where and how to continue. Under torchrun the other
    ranks are not waiting in a save, so no checkpoint is written there (the line says so)."""
    if folder is None or state.dist.enabled:
        return FolderChanged(f"{changed}: stopped at step {state.step} without a checkpoint (restore the folder, "
                             f"then continue with: sngan train --out {run_dir} --resume auto)")
    check_finite_weights(state)
    path = folder.rescue(ckpt.checkpoint_path("", state.step).name, ckpt.writer(state.snapshot()))
    how = "auto" if path.parent.name == "checkpoints" else str(path)
    return FolderChanged(f"{changed}: stopped at step {state.step} with checkpoint {path} (restore the folder, then "
                         f"continue with: sngan train --out {run_dir} --resume {how})")


def check_ranks_agree(state: TrainState) -> None:
    """Under torchrun, the trained weights (and D's spectral-norm vectors) must be identical on every rank."""
    for name, net in (("generator", state.g.module), ("discriminator", state.d.module)):
        diff = max_divergence([*net.parameters(), *net.buffers()], state.dist)
        if diff > 0:
            raise SnganError(f"{name} differs between ranks by {diff:.3g} at step {state.step}: the processes "
                             f"are out of sync (report this as a bug)")


def check_finite_weights(state: TrainState) -> None:
    """Raise TrainingDiverged when a parameter of G or D holds NaN/inf (one host sync per network)."""
    for name, net in (("generator", state.g.module), ("discriminator", state.d.module)):
        if not torch.stack([torch.isfinite(p).all() for p in net.parameters()]).all():
            raise TrainingDiverged(f"non-finite {name} weights at step {state.step}; no checkpoint written "
                                   f"(the last good one is kept): lower optim.lr or check the data")


def sample_grid(state: TrainState, folder: RunFolder) -> Path:
    """The run's grid `samples/step-<step>.png` of `train.num_samples` images from the same seeded latents at every
    step (seed `train.seed`), so grids of one run show the same (z, y) as training goes on."""
    m, t = state.cfg.model, state.cfg.train
    images = generate(state.sampler, *latents(t.num_samples, m.z_dim, m.num_classes, seed=t.seed))
    return folder.write_grid(f"step-{state.step:07d}.png", grid_writer(images))


def evaluate_and_keep_best(state: TrainState, evaluator: TrainingEvaluator, run_log: RunLog | None,
                           folder: RunFolder | None, run_dir: Path, log: Callable[[str], None]) -> None:
    """Score the generator to sample from, log the metrics, and write checkpoints/best.pt when FID improves.

    best.pt is a full checkpoint (resumable), written through the same checks as periodic ones and never pruned.
    A best FID recorded under another metric name (e.g. eval_num_samples changed on resume) is not comparable and
    is replaced. Under torchrun, generation and Inception features are sharded over the ranks; every rank takes
    the same decision.
    """
    metrics = evaluator(state.sampler, state.dist)
    if run_log is not None:
        run_log.log({"step": state.step, **metrics, "eval_network": evaluator.net.network,
                     "eval_generator": state.sampler_name, "eval_protocol": evaluator.protocol.name,
                     "eval_seed": state.cfg.train.seed})
    fid_name = next(k for k in metrics if k.startswith("fid"))
    fid = metrics[fid_name]
    log(f"step {state.step}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    best = state.best
    if best is None or best.get("metric") != fid_name or fid < best["value"]:
        state.best = {"metric": fid_name, "value": fid, "step": state.step}
        path = write_checkpoint(state, folder, "best.pt", run_dir)
        log(f"new best {fid_name} {fid:.3f}: {path}")


def open_run_folder(run_dir: Path, cfg: Config, state: TrainState, resume: Path | None, lines: Progress,
                    info: DistInfo) -> tuple[RunFolder | None, RunLog | None]:
    """Rank 0 checks, locks and prepares the run folder (its first change, after every check) and opens its log;
    all ranks learn if it failed. From then on every line of the run is kept in its log.txt."""
    folder = run_log = None
    with together(info, "opening the run folder"):
        if info.is_main:
            folder = RunFolder.open(run_dir, to_yaml(cfg), start_step=state.step, notice=lines.message,
                                    run_id=state.run_id, resume=resume)
            state.run_id = folder.run_id  # recorded in every checkpoint from now on
            try:
                lines.open_file(folder)
                run_log = RunLog(folder, wandb=functools.partial(open_wandb, t=cfg.train, config=cfg.to_dict())
                                 if cfg.train.wandb_project else None)
            except BaseException:
                folder.close()  # releases the lock
                raise
    return folder, run_log


def train(cfg: Config, run_dir: str | Path, resume: str | Path | Resume | None = None, progress: bool = True,
          log: Callable[[str], None] = tqdm.write, info: DistInfo = SINGLE, notice: str | None = None) -> Path:
    """Train (or continue) a run and return the path of its last checkpoint.

    Args:
        cfg: validated config.
        run_dir: the run directory (created; must not hold checkpoints unless resuming).
        resume: a checkpoint to continue from (same model config): a path, or what `open_resume` made of it; None
            for a fresh run.
        progress: show a tqdm progress bar when stderr is a terminal (else, and without it, one line per record).
        log: where one-line messages go (rank 0 only under torchrun).
        info: this process's rank (from `sngan.distributed.from_env`, process group already initialised).
        notice: a first line to say (what `--resume auto` chose).

    Returns:
        The newest checkpoint. Raises TrainingStopped after a signal (with a checkpoint) and TrainingDiverged on
        non-finite losses or weights (without one). Every line, the final one included, is kept in log.txt.
    """
    run_dir = Path(run_dir)
    lines = Progress(log if info.is_main else None, progress and info.is_main and on_terminal())
    if notice:
        lines.message(notice)
    try:
        with warning_lines(functools.partial(say_warning, lines)):  # on stderr when raised, and in log.txt
            return _train(cfg, run_dir, resume, lines, info)
    except TrainingStopped as exc:
        lines.keep(str(exc))  # the command line prints it
        raise
    except KeyboardInterrupt as exc:
        lines.keep(f"interrupted{f': {exc}' if str(exc) else ''}")
        raise
    except Exception as exc:
        lines.keep(f"error: {' '.join(str(exc).split()) or type(exc).__name__}"[:2000])
        raise
    finally:
        lines.close()


def say_warning(lines: Progress, warning: str) -> None:
    """A warning line on stderr (above the bar, if one is drawn) and in log.txt with its time."""
    tqdm.write(warning, file=sys.stderr)
    lines.keep(warning)


def _train(cfg: Config, run_dir: Path, resume: str | Path | Resume | None, lines: Progress,
           info: DistInfo) -> Path:
    """`train` once its lines have a home: start (every rank agreeing), loop, stop."""
    evaluator = None
    with together(info, "checking the run"):
        if resume is not None and not isinstance(resume, Resume):
            resume = open_resume(resume, cfg)
        if info.is_main:  # every check of the folder it alone writes, before anything is built
            check_owner(run_dir, None if resume is None else resume.run_id, None if resume is None else resume.path)
            if cfg.train.wandb_project:
                check_wandb(cfg.train)  # before anything is written, like the Inception weights
        device = resolve_device(cfg.train.device, info)
        start = 0 if resume is None else int(resume.state["step"])
        perf, fallback = compile_or_eager(resolve_perf(cfg.perf, device, cfg.train.iterations - start), device)
        if info.enabled and any_rank(bool(fallback), info, device):  # the same step everywhere: eager if any fails
            perf = perf.eager("auto: eager, compiling failed on a rank")
        lines.message(path_line(perf, device))  # which step runs, who chose it, how to switch
        if fallback:
            lines.message(fallback)
        if cfg.train.eval_every:  # fails fast without the Inception weights
            evaluator = TrainingEvaluator(cfg, device, lines.message)
    state = build_state(cfg, device, lines.message, info, perf)
    with together(info, "restoring the checkpoint"):
        if resume is not None:
            try:
                state.restore(resume.state, lines.message)  # validates the whole checkpoint before loading any of it
            except CheckpointError as exc:
                raise CheckpointError(f"{resume.path}: {exc}") from None
    t = cfg.train
    last_path = None if resume is None else resume.path
    folder = run_log = None
    try:
        folder, run_log = open_run_folder(run_dir, cfg, state, last_path, lines, info)
        if resume is not None:
            lines.message(f"resumed from {resume.path} at step {state.step}")
        lines.message(f"run directory: {run_dir} | device {device} x {info.world_size} | G "
                      f"{count_parameters(state.g.module):,} params, D {count_parameters(state.d.module):,} params")
        lines.begin(t.iterations, state.step)
        try:
            last_path = run_loop(state, run_dir, folder, run_log, evaluator, lines, last_path) or last_path
        except FolderChanged as changed:  # a part of the run folder swapped mid-run: a checkpoint in its own folder
            raise rescue(state, folder, run_dir, changed) from None
    finally:
        lines.close_bar()
        try:
            if run_log is not None:
                run_log.close()
        finally:
            if folder is not None:
                folder.close()
            state.batches.close()
    assert last_path is not None, "the last iteration always writes a checkpoint (due)"
    lines.message(f"done: step {state.step}, checkpoint {last_path}")
    return last_path


def run_loop(state: TrainState, run_dir: Path, folder: RunFolder | None, run_log: RunLog | None,
             evaluator: TrainingEvaluator | None, lines: Progress, last_path: Path | None) -> Path | None:
    """G iterations until `train.iterations` or a stop signal; returns the newest checkpoint written."""
    cfg, info, device, t = state.cfg, state.dist, state.device, state.cfg.train
    losses = LOSSES[cfg.loss.type]
    window = LossWindow(device, state.step)
    with SignalGuard(lines.message if info.is_main else None) as signals:
        while state.step < t.iterations:
            lr, d_loss, g_loss = iteration(state, losses)
            window.add(d_loss, g_loss)
            lines.update()
            poll = not info.enabled or state.step % SIGNAL_POLL_EVERY == 0  # a collective: not every step
            now = due(state.step, t, poll and any_rank(signals.received is not None, info, device),
                      evaluator is not None)
            if now.log:
                record = window.record(state.step, lr, info)
                if run_log is not None:
                    run_log.log(record)
                lines.report(record)
                window = LossWindow(device, state.step)
            if now.refresh:
                broadcast_buffers(state.g.module, info)  # rank 0's BatchNorm statistics everywhere
                refresh_ema_batchnorm(state)  # on every rank: deterministic, keeps the EMA copies equal
            if now.sample and folder is not None:
                grid = sample_grid(state, folder)
                if run_log is not None:
                    run_log.grid(grid, state.step)
            if now.inspect and run_log is not None:  # local maths, no collectives: rank 0 only
                m = cfg.model
                run_log.log({"step": state.step, **spectral_record(state.d.module, m.resolution, m.num_classes)})
            if now.evaluate and evaluator is not None:  # due only with an evaluator
                evaluate_and_keep_best(state, evaluator, run_log, folder, run_dir, lines.message)
            if now.save:
                last_path = save_periodic(state, folder, run_dir)
            if now.stop:
                signals.saved = True  # a signal from now on repeats a request already served
                raise TrainingStopped(f"stopped by a signal at step {state.step}; checkpoint {last_path}; continue "
                                      f"with: sngan train --out {run_dir} --resume auto" if info.is_main else "")
    return last_path


class SignalGuard:
    """Catches the stop signals while training (module docstring); `received` is the first one, or None.

    Args:
        say: where the one 'received' line goes (rank 0's message function; None on the other ranks).
    """

    def __init__(self, say: Callable[[str], None] | None = None) -> None:
        self.received: int | None = None
        self.saved = False  # the stop checkpoint is written: later signals change nothing
        self._first_at = 0.0
        self._say = say
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SignalGuard:
        for sig in STOP_SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.saved:
            self._served(signum, frame)
            return
        if self.received is None:
            self.received, self._first_at = signum, time.monotonic()
            if self._say is not None:
                self._say(f"{name} received: finishing this step and writing a checkpoint (press Ctrl-C again to "
                          f"stop at once)")
            return
        if self._repeat(signum):
            return  # the same request, delivered again
        raise KeyboardInterrupt(f"second signal {name}: stopping without a checkpoint")

    def _repeat(self, signum: int) -> bool:
        """Whether `signum` repeats the request taken first (module docstring's windows)."""
        waited = time.monotonic() - self._first_at
        return waited < SAME_REQUEST_S or (signum != signal.SIGINT and waited < SAME_TERM_S)

    def _served(self, signum: int, frame: Any) -> None:
        """A stop signal after the stop checkpoint was written: nothing is left to save or lose."""
        if self._say is not None:
            self._say(f"{signal.Signals(signum).name} received: the stop checkpoint is already written; stopping")

    def _repeat_or_previous(self, signum: int, frame: Any) -> None:
        """After the guard: a repeat of the request it took is still that request (the stop line must not become
        'interrupted'), and so is any stop signal once the stop checkpoint is written; any other signal goes to the
        handler that was there before the guard."""
        if self.saved:
            self._served(signum, frame)
            return
        if self._repeat(signum):
            return
        previous = self._previous.get(signum, signal.SIG_DFL)
        signal.signal(signum, previous)  # the request's window is over for this signal
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.raise_signal(signum)

    def __exit__(self, *exc: Any) -> None:
        # A stop request reaches a process several times, and not always before the checkpoint is written: a
        # killed `sngan study --jobs` parent sends PR_SET_PDEATHSIG once per thread of the parent that exits, and
        # torchrun's agent forwards Slurm's SIGTERM whenever it gets to it. Those repeats stay one request.
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if self.received is None else self._repeat_or_previous)


def pass_on(signum: int) -> None:
    """Deliver `signum` now to the handler that was in place before training (submitit's requeue on SIGUSR2, say),
    skipping the finished guards that would take it for a repeat of the stop request they served."""
    handler = signal.getsignal(signum)
    while isinstance(guard := getattr(handler, "__self__", None), SignalGuard):
        handler = guard._previous.get(signum, signal.SIG_DFL)
    signal.signal(signum, handler)
    signal.raise_signal(signum)
