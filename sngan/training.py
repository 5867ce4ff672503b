"""The training loop: g_step, d_step, checkpoints and evaluation hooks, and `train`, which reads top to bottom.

One generator iteration, as the authors' `updater.py`: a G step on `g_batch_size` fresh latents, then `n_dis`
D steps, each on a fresh real batch and fresh fakes; real and fake go through D in two forward passes, so spectral
norm's power iteration runs once per pass exactly as in the Chainer code. The learning rate decays linearly (in G
iterations) from `optim.lr_decay_start` to 0 at `train.iterations`.

A run lives in one directory: config.yaml, metrics.jsonl, samples/, checkpoints/. `train(..., resume=...)` continues
bitwise-exactly on CPU: every RNG in use, both optimizers, the EMA generator and the data order are checkpointed
(`sngan.state.TrainState`).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from sngan import checkpoint as ckpt
from sngan.config import Config, SnganError, to_yaml
from sngan.distributed import (
    SINGLE,
    DistInfo,
    any_rank,
    broadcast_buffers,
    max_divergence,
    mean_over_ranks,
)
from sngan.ema import ema_update, recalibrate_batchnorm
from sngan.evaluation import TrainingEvaluator
from sngan.losses import get_losses
from sngan.models import build_discriminator, build_generator, count_parameters
from sngan.perf import autocast
from sngan.rundir import RunLog, check_fresh, set_aside_later_checkpoints
from sngan.sampling import generate, latents, save_grid
from sngan.signals import SignalGuard
from sngan.state import TrainState, build_state, resolve_device

SIGNAL_POLL_EVERY = 10  # under torchrun, ranks agree on a received signal every this many G iterations


class TrainingStopped(SnganError):
    """Training ended early on purpose (a signal) after saving a checkpoint."""


class TrainingDiverged(SnganError):
    """A loss or weight became NaN/inf; no checkpoint was written after that point."""


def lr_at(base_lr: float, decay: str, decay_start: int, iterations: int, step: int) -> float:
    """Learning rate for the G iteration `step` (0-based): constant, then linear to 0 at `iterations`."""
    if decay == "none" or step <= decay_start:
        return base_lr
    return base_lr * max(0.0, 1.0 - (step - decay_start) / (iterations - decay_start))


def models_differ(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Keys of the `model` config section whose values differ between two configs."""
    return sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))


def _fake_labels(state: TrainState, n: int) -> torch.Tensor | None:
    k = state.cfg.model.num_classes
    return torch.randint(0, k, (n,), device=state.device) if k else None


def g_step(state: TrainState, g_loss_fn: Callable) -> torch.Tensor:
    """One generator update on fresh latents; D's weights get no gradient. Returns the loss (0-d tensor)."""
    z = torch.randn(state.g_batch, state.cfg.model.z_dim, device=state.device)
    y = _fake_labels(state, state.g_batch)
    state.discriminator.requires_grad_(False)
    with autocast(state.perf, state.device):
        logits = state.discriminator(state.g_train(z, y), y)
    loss = g_loss_fn(logits.float())
    state.opt_g.zero_grad(set_to_none=True)
    loss.backward()
    state.opt_g.step()
    state.discriminator.requires_grad_(True)
    return loss.detach()


def d_step(state: TrainState, d_loss_fn: Callable) -> torch.Tensor:
    """One discriminator update on a fresh real batch and fresh fakes. Returns the loss (0-d tensor)."""
    x_real, y_real = state.batches.next(state.d_batch)
    z = torch.randn(state.d_batch, state.cfg.model.z_dim, device=state.device)
    y_fake = _fake_labels(state, state.d_batch)
    with torch.no_grad(), autocast(state.perf, state.device):
        x_fake = state.generator(z, y_fake)
    y_real = y_real if state.cfg.model.num_classes else None
    if state.perf.channels_last:
        x_real = x_real.contiguous(memory_format=torch.channels_last)
    return d_update(state.d_train, state.opt_d, d_loss_fn, x_real, y_real, x_fake, y_fake,
                    autocast(state.perf, state.device))


def d_update(d_net: nn.Module, opt_d: torch.optim.Optimizer, d_loss_fn: Callable, x_real: torch.Tensor,
             y_real: torch.Tensor | None, x_fake: torch.Tensor, y_fake: torch.Tensor | None,
             precision: contextlib.AbstractContextManager | None = None) -> torch.Tensor:
    """D forward on real and on fake (two passes, as the authors), fp32 loss, backward, Adam step.

    Args:
        d_net: the discriminator as trained (DDP-wrapped/compiled or plain).
        opt_d: its optimizer.
        d_loss_fn: loss of (real_logits, fake_logits).
        x_real, y_real, x_fake, y_fake: the batch (labels None for unconditional models).
        precision: autocast context for the forward passes (None = fp32).

    Returns:
        The loss (0-d tensor, detached).
    """
    with precision or contextlib.nullcontext():
        real_logits, fake_logits = d_net(x_real, y_real), d_net(x_fake, y_fake)
    loss = d_loss_fn(real_logits.float(), fake_logits.float())
    opt_d.zero_grad(set_to_none=True)
    loss.backward()
    opt_d.step()
    return loss.detach()


def update_ema(state: TrainState) -> None:
    """Average G into the EMA generator (a plain copy before `train.ema_start`)."""
    if state.generator_ema is not None:
        decay = state.cfg.train.ema_decay if state.step >= state.cfg.train.ema_start else 0.0
        ema_update(state.generator_ema, state.generator, decay)


def refresh_ema_batchnorm(state: TrainState) -> None:
    """Give the EMA generator BatchNorm statistics of its own weights before it is sampled or saved."""
    if state.generator_ema is not None:
        m = state.cfg.model
        t = state.cfg.train
        recalibrate_batchnorm(state.generator_ema, m.z_dim, m.num_classes, state.g_batch, t.ema_bn_samples)


def save_checkpoint(state: TrainState, ckpt_dir: Path) -> Path:
    """Write `ckpt-<step>.pt` atomically after checking the weights, then prune old periodic checkpoints.

    Under torchrun every rank calls this (RNG states are gathered, ranks are checked to agree); rank 0 writes.
    """
    check_finite_weights(state)
    check_ranks_agree(state)
    snapshot = state.snapshot()
    path = ckpt.checkpoint_path(ckpt_dir, state.step)
    if state.dist.is_main:
        ckpt.save_checkpoint(snapshot, path)
        ckpt.prune_checkpoints(ckpt_dir, state.cfg.train.keep_checkpoints)
    return path


def check_ranks_agree(state: TrainState) -> None:
    """Under torchrun, the trained weights (and D's spectral-norm vectors) must be identical on every rank."""
    for name, tensors in (("generator", [*state.generator.parameters(), *state.generator.buffers()]),
                          ("discriminator", [*state.discriminator.parameters(), *state.discriminator.buffers()])):
        diff = max_divergence(tensors, state.dist)
        if diff > 0:
            raise SnganError(f"{name} differs between ranks by {diff:.3g} at step {state.step}: the processes "
                             f"are out of sync (report this as a bug)")


def check_finite_weights(state: TrainState) -> None:
    for name, net in (("generator", state.generator), ("discriminator", state.discriminator)):
        if not torch.stack([torch.isfinite(p).all() for p in net.parameters()]).all():  # one host sync
            raise TrainingDiverged(f"non-finite {name} weights at step {state.step}; no checkpoint written "
                                   f"(the last good one is kept): lower optim.lr or check the data")


def sample_grid(state: TrainState, fixed: tuple[torch.Tensor, torch.Tensor | None], path: Path) -> Path:
    net = state.generator_ema if state.generator_ema is not None else state.generator
    return save_grid(generate(net, *fixed), path)


def evaluate_and_keep_best(state: TrainState, evaluator: TrainingEvaluator, run_log: RunLog | None, ckpt_dir: Path,
                           log: Callable[[str], None]) -> None:
    """Score the EMA (else raw) generator, log the metrics, and write checkpoints/best.pt when FID improves.

    best.pt is a full checkpoint (resumable), written atomically and never pruned. A best FID recorded under
    another metric name (e.g. eval_num_samples changed on resume) is not comparable and is replaced. Under
    torchrun, generation and Inception features are sharded over the ranks; every rank takes the same decision.
    """
    net = state.generator_ema if state.generator_ema is not None else state.generator
    metrics = evaluator(net, state.dist)
    if run_log is not None:
        run_log.log({"step": state.step, **metrics, "eval_network": evaluator.net.network,
                     "eval_generator": "ema" if state.generator_ema is not None else "raw"})
    fid_name = next(k for k in metrics if k.startswith("fid"))
    fid = metrics[fid_name]
    log(f"step {state.step}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    best = state.best
    if best is None or best.get("metric") != fid_name or fid < best["value"]:
        state.best = {"metric": fid_name, "value": fid, "step": state.step}
        check_finite_weights(state)
        snapshot = state.snapshot()
        if state.dist.is_main:
            ckpt.save_checkpoint(snapshot, ckpt_dir / "best.pt")
        log(f"new best {fid_name} {fid:.3f}: {ckpt_dir / 'best.pt'}")


class LossWindow:
    """Running sums of the losses between two log lines, kept on the device (no sync per step)."""

    def __init__(self, device: torch.device, step: int):
        self.device, self.first_step = device, step + 1
        self.d_sum = torch.zeros((), device=device)
        self.g_sum = torch.zeros((), device=device)
        self.n, self.start = 0, time.perf_counter()

    def add(self, d_loss: torch.Tensor, g_loss: torch.Tensor) -> None:
        self.d_sum += d_loss
        self.g_sum += g_loss
        self.n += 1

    def record(self, step: int, lr: float, info: DistInfo = SINGLE) -> dict[str, Any]:
        """The log record for the window ending at `step` (averaged over ranks); raises TrainingDiverged on a
        non-finite loss (on every rank at once)."""
        sums = mean_over_ranks(torch.stack([self.d_sum, self.g_sum]), info)
        d_loss, g_loss = (sums / self.n).tolist()
        if not (math.isfinite(d_loss) and math.isfinite(g_loss)):
            raise TrainingDiverged(f"non-finite loss between steps {self.first_step} and {step} (d_loss {d_loss}, "
                                   f"g_loss {g_loss}); no checkpoint written after step {self.first_step - 1}: "
                                   f"lower optim.lr or check the data")
        return {"step": step, "d_loss": d_loss, "g_loss": g_loss, "lr": lr,
                "it_per_s": self.n / max(time.perf_counter() - self.start, 1e-9), "time": time.time()}


def set_lr(state: TrainState) -> float:
    o = state.cfg.optim
    lr = lr_at(o.lr, o.lr_decay, o.lr_decay_start, state.cfg.train.iterations, state.step)
    for opt in (state.opt_g, state.opt_d):
        for group in opt.param_groups:
            group["lr"] = lr
    return lr


def load_resume(resume: str | Path, cfg: Config) -> dict[str, Any]:
    """The checkpoint to resume from, refused when `cfg` describes a different model."""
    saved = ckpt.load_checkpoint(resume)
    changed = models_differ(saved["config"].get("model", {}), cfg.to_dict()["model"])
    if changed:
        raise SnganError(f"cannot resume {resume}: the config changes the model ({', '.join(changed)}); resume "
                         f"with the checkpoint's model settings")
    return saved


def train(cfg: Config, run_dir: str | Path, resume: str | Path | None = None, progress: bool = True,
          stop_after: int | None = None, log: Callable[[str], None] = tqdm.write, info: DistInfo = SINGLE) -> Path:
    """Train (or continue) a run and return the path of its last checkpoint.

    Args:
        cfg: validated config.
        run_dir: the run directory (created; must not hold checkpoints unless resuming).
        resume: a checkpoint to continue from (same model config), or None for a fresh run.
        progress: show a tqdm progress bar.
        stop_after: stop (with a checkpoint) after this many completed G iterations (tests, schedulers).
        log: where one-line messages go (rank 0 only under torchrun).
        info: this process's rank (from `sngan.distributed.from_env`, process group already initialised).

    Returns:
        The newest checkpoint. Raises TrainingStopped after a signal (with a checkpoint) and TrainingDiverged on
        non-finite losses or weights (without one).
    """
    run_dir = Path(run_dir)
    log = log if info.is_main else (lambda message: None)
    saved = load_resume(resume, cfg) if resume is not None else None
    if saved is None:
        check_fresh(run_dir)
    device = resolve_device(cfg.train.device, info)
    evaluator = TrainingEvaluator(cfg, device, log) if cfg.train.eval_every else None  # fails fast without weights
    state = build_state(cfg, device, log, info)
    if saved is not None:
        state.restore(saved, log)
        log(f"resumed from {resume} at step {state.step}")
        aside = set_aside_later_checkpoints(run_dir / "checkpoints", state.step) if info.is_main else None
        if aside is not None:
            log(f"checkpoints after step {state.step} (from the run being replaced) moved to {aside}")
    run_log = RunLog(run_dir, to_yaml(cfg), start_step=state.step) if info.is_main else None
    ckpt_dir, samples_dir = run_dir / "checkpoints", run_dir / "samples"
    log(f"run directory: {run_dir} | device {device} x {info.world_size} | G {count_parameters(state.generator):,} "
        f"params, D {count_parameters(state.discriminator):,} params")
    d_loss_fn, g_loss_fn = get_losses(cfg.loss.type)
    fixed = latents(cfg.train.num_samples, cfg.model.z_dim, cfg.model.num_classes, seed=cfg.train.seed)
    t = cfg.train
    last_path = Path(resume) if resume is not None else None
    window = LossWindow(device, state.step)
    bar = tqdm(total=t.iterations, initial=state.step, disable=not (progress and info.is_main), dynamic_ncols=True,
               desc="train")
    try:
        with SignalGuard() as signals:
            while state.step < t.iterations and state.step != stop_after:
                lr = set_lr(state)
                g_loss = g_step(state, g_loss_fn)
                d_loss = torch.stack([d_step(state, d_loss_fn) for _ in range(t.n_dis)]).mean()
                state.step += 1
                update_ema(state)
                window.add(d_loss, g_loss)
                bar.update(1)
                poll = not info.enabled or state.step % SIGNAL_POLL_EVERY == 0  # a collective: not every step
                stopping = poll and any_rank(signals.received is not None, info, device)
                end = state.step in (t.iterations, stop_after) or stopping
                if state.step % t.log_every == 0 or end:
                    record = window.record(state.step, lr, info)
                    if run_log is not None:
                        run_log.log(record)
                    bar.set_postfix(d=f"{record['d_loss']:.3f}", g=f"{record['g_loss']:.3f}", lr=f"{lr:.2e}")
                    window = LossWindow(device, state.step)
                sample_now = (t.sample_every and state.step % t.sample_every == 0) or end
                save_now = (t.ckpt_every and state.step % t.ckpt_every == 0) or end
                eval_now = evaluator is not None and not stopping and (state.step % t.eval_every == 0 or end)
                if sample_now or save_now or eval_now:
                    broadcast_buffers(state.generator, info)  # rank 0's BatchNorm statistics everywhere
                    refresh_ema_batchnorm(state)  # on every rank: deterministic, keeps the EMA copies equal
                if sample_now and info.is_main:
                    sample_grid(state, fixed, samples_dir / f"step-{state.step:07d}.png")
                if eval_now:
                    evaluate_and_keep_best(state, evaluator, run_log, ckpt_dir, log)
                if save_now:
                    last_path = save_checkpoint(state, ckpt_dir)
                if stopping:
                    raise TrainingStopped(f"stopped by a signal at step {state.step}; checkpoint {last_path}; "
                                          f"continue with: sngan train --out {run_dir} --resume auto")
    finally:
        bar.close()
        if run_log is not None:
            run_log.close()
        state.batches.close()
    log(f"done: step {state.step}, checkpoint {last_path}")
    return last_path


def dry_run_summary(cfg: Config) -> str:
    """The resolved config and the parameter counts, as printed by `sngan train --dry-run`."""
    g, d = build_generator(cfg.model), build_discriminator(cfg.model)
    return (f"{to_yaml(cfg)}generator parameters: {count_parameters(g)}\n"
            f"discriminator parameters: {count_parameters(d)}")
