"""Generating images from a generator: seeded latents, batched generation, grids.

Latents are drawn on the CPU from a seeded generator and then moved, so the same seed gives the same z on every
device. The generator runs in eval mode (BatchNorm uses its running statistics), as the authors' sampling code.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.utils import make_grid, save_image


def latents(num: int, z_dim: int, num_classes: int, seed: int,
            classes: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Seeded z ~ N(0, I) of shape (num, z_dim) and, for conditional models, labels (num,).

    Args:
        num: how many latents.
        z_dim: latent size.
        num_classes: 0 for unconditional models (labels None).
        seed: the same seed gives the same latents and labels.
        classes: fixed labels to use instead of uniformly drawn ones.

    Returns:
        (z, y) on the CPU.
    """
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(num, z_dim, generator=g)
    if num_classes == 0:
        return z, None
    y = classes if classes is not None else torch.randint(0, num_classes, (num,), generator=g)
    return z, y.long()


@torch.no_grad()
def generate(generator: nn.Module, z: torch.Tensor, y: torch.Tensor | None = None,
             batch_size: int = 256) -> torch.Tensor:
    """Images in [-1, 1], (N, 3, R, R) float32 on the CPU, from latents z (N, z_dim) in eval mode.

    Args:
        generator: the generator (its mode is restored afterwards).
        z: latents on any device.
        y: labels for conditional models.
        batch_size: images per forward pass.

    Returns:
        The generated images on the CPU.
    """
    device = next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    try:
        out = []
        for start in range(0, len(z), batch_size):
            zb = z[start:start + batch_size].to(device)
            yb = None if y is None else y[start:start + batch_size].to(device)
            out.append(generator(zb, yb).float().cpu())
        return torch.cat(out)
    finally:
        generator.train(was_training)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float (N, 3, H, W) -> uint8 (N, H, W, 3), rounded as torchvision's save_image does."""
    return ((images.clamp(-1, 1) + 1) * 127.5 + 0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Save images in [-1, 1] (N, 3, H, W) as one PNG grid with 2-pixel padding.

    Args:
        images: generated images.
        path: PNG destination (folder created if needed).
        nrow: images per row; default the ceiling of sqrt(N).

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nrow = nrow or max(1, int(len(images) ** 0.5 + 0.999))
    save_image(images, path, nrow=nrow, normalize=True, value_range=(-1, 1))
    return path


def grid_tensor(images: torch.Tensor, nrow: int) -> torch.Tensor:
    """The grid as a (3, H, W) tensor in [0, 1] (for TensorBoard and reports)."""
    return make_grid(images, nrow=nrow, normalize=True, value_range=(-1, 1))


def load_generator(path: str | Path, ema: bool | None = None,
                   device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the generator stored in a checkpoint (needs nothing but the file).

    Args:
        path: checkpoint written by `sngan train`.
        ema: True = the EMA generator (error if absent), False = the raw generator, None = EMA when present.
        device: where the generator goes.

    Returns:
        (generator in eval mode, checkpoint dict).
    """
    from sngan.checkpoint import CheckpointError, load_checkpoint
    from sngan.config import ConfigError, from_dict
    from sngan.models import build_generator

    state = load_checkpoint(path)
    try:
        model_cfg = from_dict({"model": state["config"].get("model", {})}).model
    except (ConfigError, AttributeError) as exc:
        raise CheckpointError(f"{path}: its model config is invalid: {exc}") from None
    has_ema = state.get("generator_ema") is not None
    if ema and not has_ema:
        raise CheckpointError(f"{path}: has no EMA generator (trained with train.ema_decay 0); use --no-ema")
    weights = state["generator_ema"] if (has_ema and ema is not False) else state["generator"]
    generator = build_generator(model_cfg)
    try:
        generator.load_state_dict(weights)
    except RuntimeError:
        raise CheckpointError(f"{path}: generator weights do not match its model config") from None
    return generator.to(device).eval(), state
