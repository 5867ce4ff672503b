"""Generating images from a generator: seeded latents, batched generation, and loading a checkpoint's generator.

Latents are drawn on the CPU from a seeded generator and then moved, so the same seed gives the same z on every
device. The generator runs in eval mode (BatchNorm uses its running statistics), as the authors' sampling code.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from sngan.errors import SamplingError
from sngan.progress import PassProgress, cpu_hint
from sngan.sample.writers import to_uint8


def latent_sizes(generator: nn.Module) -> tuple[int, int]:
    """(z_dim, num_classes) of a generator: its latent width and its class count (0: unconditional)."""
    z_dim, num_classes = getattr(generator, "z_dim", None), getattr(generator, "num_classes", None)
    if not isinstance(z_dim, int) or not isinstance(num_classes, int):
        raise SamplingError(f"{type(generator).__name__} is not a generator: it has no integer z_dim and num_classes")
    return z_dim, num_classes


def latents(num: int, z_dim: int, num_classes: int, seed: int, classes: torch.Tensor | None = None,
            truncation: float | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Seeded z ~ N(0, I) of shape (num, z_dim) and, for conditional models, labels (num,).

    Args:
        num: how many latents.
        z_dim: latent size.
        num_classes: 0 for unconditional models (labels None).
        seed: the same seed gives the same latents and labels.
        classes: fixed labels to use instead of uniformly drawn ones.
        truncation: T > 0 redraws every entry with |z| > T (the truncation trick, Brock et al. 2019 Sec. 3.1;
            not the SN-GAN paper's protocol), from the same seeded stream; None = plain N(0, I).

    Returns:
        (z, y) on the CPU.
    """
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(num, z_dim, generator=g)
    if truncation is not None:
        z = truncate(z, truncation, g)
    if num_classes == 0:
        return z, None
    y = classes if classes is not None else torch.randint(0, num_classes, (num,), generator=g)
    return z, y.long()


MIN_TRUNCATION = 0.05  # P(|z| <= 0.05) is 4 % for N(0, 1): 25 draws an entry on average, a bounded wait
MAX_REDRAWS = 2000  # rounds; an entry is still outside after them with probability 0.96 ** 2000 < 1e-35
MAX_SEED = 2 ** 63 - 1  # torch.Generator.manual_seed takes a 64-bit seed; ours stay signed, as config's train.seed
MAX_SEEDS = 1_000_000  # images one --seeds list may ask for


def check_truncation(threshold: float | None) -> None:
    """Refuse a truncation threshold the redraw loop cannot meet in bounded time (and NaN), before any work."""
    if threshold is not None and not threshold >= MIN_TRUNCATION:
        raise SamplingError(f"--truncation must be >= {MIN_TRUNCATION} (below it almost every draw is redrawn; "
                            f"1.0 to 2.0 is the usual range), got {threshold}")


def truncate(z: torch.Tensor, threshold: float, g: torch.Generator) -> torch.Tensor:
    """z with every entry of magnitude above `threshold` redrawn from N(0, 1) (by `g`) until none is."""
    check_truncation(threshold)
    z = z.clone()
    for _ in range(MAX_REDRAWS):
        outside = z.abs() > threshold
        if not outside.any():
            return z
        z[outside] = torch.randn(int(outside.sum()), generator=g)
    raise SamplingError(f"--truncation {threshold}: entries still above it after {MAX_REDRAWS} redraws")


def parse_seeds(text: str) -> list[int]:
    """StyleGAN-style seeds: '0-35' -> 0..35, '1,5,10-12' -> [1, 5, 10, 11, 12]."""
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        low, _, high = part.partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise SamplingError(f"--seeds takes numbers and ranges like 0-35 or 1,5,10-12, got {text[:60]!r}") from None
        if not 0 <= first <= last <= MAX_SEED:
            raise SamplingError(f"--seeds range {part[:60]!r} must run from a smaller to a larger seed in "
                                f"[0, {MAX_SEED}]")
        if len(seeds) + last - first + 1 > MAX_SEEDS:
            raise SamplingError(f"--seeds asks for more than {MAX_SEEDS:,} images; ask for fewer")
        seeds += range(first, last + 1)
    if not seeds:
        raise SamplingError("--seeds needs at least one seed")
    return seeds


def seed_latents(seeds: list[int], z_dim: int, num_classes: int, classes: torch.Tensor | None = None,
                 truncation: float | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One latent (and label) per seed, each `latents(1, ..., seed)`: seed s gives the same image whatever the
    other seeds are."""
    pairs = [latents(1, z_dim, num_classes, s, None if classes is None else classes[i:i + 1], truncation)
             for i, s in enumerate(seeds)]
    z = torch.cat([p[0] for p in pairs])
    labels = [y for _, y in pairs if y is not None]  # one per seed when num_classes > 0, else none
    return z, None if num_classes == 0 else torch.cat(labels)


@torch.no_grad()
def generate_batches(generator: nn.Module, z: torch.Tensor, y: torch.Tensor | None = None,
                     batch_size: int = 256, progress: bool = False) -> Iterator[torch.Tensor]:
    """Images in [-1, 1], one (B, 3, R, R) float32 CPU batch at a time, from latents z (N, z_dim) in eval mode.

    Streaming keeps long exports at one batch of memory; the progress (`sngan.progress.PassProgress`, counted in
    images: a bar on a terminal, a plain line every few seconds elsewhere, an estimate before a long pass) also
    covers whatever the caller does with each batch.

    Args:
        generator: the generator (its mode is restored when the iteration ends).
        z: latents on any device.
        y: labels (N,) or class weights (N, num_classes) for conditional models.
        batch_size: images per forward pass.
        progress: report progress (the rule of every long pass).

    Yields:
        Consecutive batches of generated images on the CPU.
    """
    device = next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    bar = PassProgress(len(z), "sample", progress, hint=cpu_hint(device))
    try:
        for start in range(0, len(z), batch_size):
            zb = z[start:start + batch_size].to(device)
            yb = None if y is None else y[start:start + batch_size].to(device)
            yield generator(zb, yb).float().cpu()
            bar.update(len(zb))
    finally:
        bar.close()
        generator.train(was_training)


def generate(generator: nn.Module, z: torch.Tensor, y: torch.Tensor | None = None,
             batch_size: int = 256, progress: bool = False) -> torch.Tensor:
    """All images of `generate_batches` at once: (N, 3, R, R) float32 in [-1, 1] on the CPU.

    Args:
        generator: the generator (its mode is restored afterwards).
        z: latents on any device.
        y: labels (N,) or class weights (N, num_classes) for conditional models.
        batch_size: images per forward pass.
        progress: report progress (`generate_batches`).

    Returns:
        The generated images.
    """
    return torch.cat(list(generate_batches(generator, z, y, batch_size, progress)))


def generate_uint8(generator: nn.Module, z: torch.Tensor, y: torch.Tensor | None = None,
                   batch_size: int = 256, progress: bool = False) -> torch.Tensor:
    """Like `generate`, converted batch by batch to uint8 (N, R, R, 3): a quarter of the float memory."""
    return torch.cat([to_uint8(b) for b in generate_batches(generator, z, y, batch_size, progress)])


def load_generator(path: str | Path, ema: bool | None = None,
                   device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """(generator in eval mode, checkpoint dict) through the one opener, `sngan.checkpoint.open_checkpoint`.

    `ema`: True = the EMA generator (error if absent), False = the raw generator, None = EMA when present.
    """
    from sngan.checkpoint import open_checkpoint

    opened = open_checkpoint(path, generator=True, ema=ema, device=device)
    assert opened.generator is not None  # asked for with generator=True
    return opened.generator, opened.state
