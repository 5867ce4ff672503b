"""One generator iteration, piece by piece: learning rate, G step, D steps, EMA, and the running loss window.

One generator iteration, as the authors' `updater.py`: a G step on `g_batch_size` fresh latents, then `n_dis`
D steps, each on a fresh real batch and fresh fakes; real and fake go through D in two forward passes, so spectral
norm's power iteration runs once per pass exactly as in the Chainer code (`perf.d_single_pass` trades this for one
pass on the concatenated batch). The learning rate decays linearly (in G
iterations) from `optim.lr_decay_start` to 0 at `train.iterations`.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from sngan.distributed import SINGLE, DistInfo, mean_over_ranks
from sngan.errors import TrainingDiverged
from sngan.records import loss_record
from sngan.train.ema import ema_update, recalibrate_batchnorm
from sngan.train.perf import autocast, begin_step, own_memory
from sngan.train.regularizers import clip_weights, gradient_penalty, orthonormal_penalty
from sngan.train.state import TrainState


def regularized_d_loss(state: TrainState, loss: torch.Tensor, x_real: torch.Tensor, x_fake: torch.Tensor,
                       y: torch.Tensor | None) -> torch.Tensor:
    """The D loss plus the gradient penalty and the orthonormal term the config asks for."""
    cfg = state.cfg.loss
    if cfg.gp_weight > 0:
        def critic(x: torch.Tensor) -> torch.Tensor:
            with autocast(state.perf, state.device):
                return state.d.trained(x, y)

        loss = loss + cfg.gp_weight * gradient_penalty(critic, x_real, x_fake)
    if cfg.orthonormal_weight > 0:
        loss = loss + cfg.orthonormal_weight * orthonormal_penalty(state.d.module)
    return loss


def after_d_update(state: TrainState) -> None:
    """Weight clipping after the optimiser step, when `optim.d_weight_clip` > 0."""
    if state.cfg.optim.d_weight_clip > 0:
        clip_weights(state.d.module, state.cfg.optim.d_weight_clip)


def set_lr(state: TrainState) -> float:
    """Set both optimisers' learning rate for the coming G iteration `state.step` (0-based); returns it: `optim.lr`,
    then with `optim.lr_decay: linear` from `optim.lr_decay_start` linearly down to 0 at `train.iterations`."""
    o, step = state.cfg.optim, state.step
    lr = o.lr
    if o.lr_decay != "none" and step > o.lr_decay_start:
        lr *= max(0.0, 1.0 - (step - o.lr_decay_start) / (state.cfg.train.iterations - o.lr_decay_start))
    for opt in (state.opt_g, state.opt_d):
        for group in opt.param_groups:
            group["lr"] = lr
    return lr


def _fake_labels(state: TrainState, n: int) -> torch.Tensor | None:
    k = state.cfg.model.num_classes
    return torch.randint(0, k, (n,), device=state.device) if k else None


def g_step(state: TrainState, g_loss_fn: Callable) -> torch.Tensor:
    """One generator update on fresh latents; D's weights get no gradient. Returns the loss (0-d tensor)."""
    begin_step(state.perf)
    z = torch.randn(state.g_batch, state.cfg.model.z_dim, device=state.device)
    y = _fake_labels(state, state.g_batch)
    state.d.module.requires_grad_(False)
    with autocast(state.perf, state.device):
        logits = state.d.frozen(own_memory(state.g.trained(z, y), state.perf), y)
    loss = g_loss_fn(logits.float())
    state.opt_g.zero_grad(set_to_none=True)
    loss.backward()
    state.opt_g.step()
    state.d.module.requires_grad_(True)
    return loss.detach()


def d_step(state: TrainState, d_loss_fn: Callable) -> torch.Tensor:
    """One discriminator update on a fresh real batch and fresh fakes. Returns the loss (0-d tensor).

    Real and fake go through D in two forward passes (one power iteration each, as the authors), or in one pass
    on the concatenated batch with `perf.d_single_pass` (one power iteration); the loss is computed in float32 on
    the logits, plus the gradient penalty / orthonormal term and followed by weight clipping when the config asks
    (`sngan.train.regularizers`).
    """
    begin_step(state.perf)
    x_real, y_real = state.batches.next(state.d_batch)
    z = torch.randn(state.d_batch, state.cfg.model.z_dim, device=state.device)
    y_fake = _fake_labels(state, state.d_batch)
    with torch.no_grad(), autocast(state.perf, state.device):
        x_fake = own_memory(state.g.frozen(z, y_fake), state.perf)
    y_cond = y_real if state.cfg.model.num_classes else None  # the labels D sees: none for an unconditional D
    if state.perf.channels_last:
        x_real = x_real.contiguous(memory_format=torch.channels_last)
    with autocast(state.perf, state.device):
        if state.perf.d_single_pass:
            y_both = None if y_cond is None or y_fake is None else torch.cat([y_cond, y_fake])
            real_logits, fake_logits = state.d.trained(torch.cat([x_real, x_fake]), y_both).split(len(x_real))
        else:
            real_logits, fake_logits = state.d.trained(x_real, y_cond), state.d.trained(x_fake, y_fake)
    loss = regularized_d_loss(state, d_loss_fn(real_logits.float(), fake_logits.float()), x_real, x_fake, y_cond)
    state.opt_d.zero_grad(set_to_none=True)
    loss.backward()
    state.opt_d.step()
    after_d_update(state)
    return loss.detach()


def update_ema(state: TrainState) -> None:
    """Average G into the EMA generator (a plain copy before `train.ema_start`)."""
    if state.generator_ema is not None:
        decay = state.cfg.train.ema_decay if state.step >= state.cfg.train.ema_start else 0.0
        ema_update(state.generator_ema, state.g.module, decay)


def refresh_ema_batchnorm(state: TrainState) -> None:
    """Give the EMA generator BatchNorm statistics of its own weights before it is sampled or saved."""
    if state.generator_ema is not None:
        m, t = state.cfg.model, state.cfg.train
        recalibrate_batchnorm(state.generator_ema, m.z_dim, m.num_classes, state.g_batch, t.ema_bn_samples)


class Stepped(NamedTuple):
    """What one G iteration leaves for the log: its learning rate and losses (0-d tensors, not yet synced)."""

    lr: float
    d_loss: torch.Tensor  # mean over the n_dis D steps
    g_loss: torch.Tensor


def iteration(state: TrainState, losses: tuple[Callable, Callable]) -> Stepped:
    """One G iteration exactly as training runs it: learning rate, G step, `n_dis` D steps, step count, EMA.

    The loop and every benchmark in scripts/ call this, so a benchmark times what training runs. `losses` is
    `(d_loss_fn, g_loss_fn)` as `sngan.train.losses.LOSSES` holds it.
    """
    d_loss_fn, g_loss_fn = losses
    lr = set_lr(state)
    g_loss = g_step(state, g_loss_fn)
    d_loss = torch.stack([d_step(state, d_loss_fn) for _ in range(state.cfg.train.n_dis)]).mean()
    state.step += 1
    update_ema(state)
    return Stepped(lr, d_loss, g_loss)


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
        return loss_record(step, d_loss, g_loss, lr, self.n / max(time.perf_counter() - self.start, 1e-9),
                               peak_memory(self.device))


def peak_memory(device: torch.device) -> dict[str, float]:
    """This process's peak memory in GiB: `cpu_mem_gb`, the peak resident set of its life (`resource.getrusage`),
    and on CUDA `cuda_mem_gb`, the most the caching allocator handed out since the previous call (the peak is reset
    after reading, as StyleGAN2-ADA's training loop does)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux, bytes on macOS
    memory = {"cpu_mem_gb": rss / 2 ** (30 if sys.platform == "darwin" else 20)}
    if device.type == "cuda":
        memory["cuda_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
        torch.cuda.reset_peak_memory_stats(device)
    return memory
