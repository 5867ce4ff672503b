"""Exponential moving average of the generator, with BatchNorm statistics that belong to the averaged weights.

The EMA generator averages parameters only. Its BatchNorm running statistics are not averaged or copied from the
live generator (those describe the live weights, not the averaged ones): before the EMA generator is used or saved,
`recalibrate_batchnorm` recomputes them with the EMA weights in training mode, as the average of the batch
statistics over a fixed set of seeded latents ("standing statistics"). The latents come from their own seeded
generator, so this never touches the training RNG streams (resume stays bitwise exact).

The update is torch's public `swa_utils.get_ema_multi_avg_fn` (one multi-tensor lerp); on CPU for the demo generator
it costs what the private `torch._foreach_lerp_` did, and half of a per-tensor `lerp_` loop (benchmarks/ema.md).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn

BN_RECALIBRATION_SEED = 2**31 - 1
# torch's public BatchNorm classes (the lazy variants are not used by sngan's models)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


@torch.no_grad()
def ema_update(ema: nn.Module, live: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * live, parameter by parameter (decay 0 copies).

    Args:
        ema: the averaged generator.
        live: the generator being trained.
        decay: weight of the old average.
    """
    ema_params, live_params = list(ema.parameters()), list(live.parameters())
    if len(ema_params) != len(live_params):
        raise ValueError("EMA and live generator differ in their parameters")
    get_ema_multi_avg_fn(decay)(ema_params, live_params, None)  # the third argument (a step count) is unused


@torch.no_grad()
def recalibrate_batchnorm(generator: nn.Module, z_dim: int, num_classes: int, batch_size: int, num_samples: int,
                          seed: int = BN_RECALIBRATION_SEED) -> None:
    """Recompute every BatchNorm's running mean/var of `generator` from `num_samples` seeded latents.

    Args:
        generator: a generator (its mode and momentum settings are restored afterwards).
        z_dim: latent size.
        num_classes: 0 for unconditional generators; else labels are drawn uniformly.
        batch_size: latents per forward pass (as in training, so batch statistics match).
        num_samples: total latents.
        seed: seed of the latents (independent of every training RNG).
    """
    norms = [m for m in generator.modules() if isinstance(m, BATCH_NORMS)]
    if not norms:
        return
    device = next(generator.parameters()).device
    momenta = [m.momentum for m in norms]
    was_training = generator.training
    g = torch.Generator().manual_seed(seed)
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches below
    generator.train()
    try:
        for start in range(0, num_samples, batch_size):
            n = min(batch_size, num_samples - start)
            z = torch.randn(n, z_dim, generator=g).to(device)
            y = torch.randint(0, num_classes, (n,), generator=g).to(device) if num_classes else None
            generator(z, y)
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        generator.train(was_training)
