"""Model registry: `build_generator(model_cfg)` / `build_discriminator(model_cfg)` pick the family by `arch`."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from sngan.config import ModelConfig, check_model
from sngan.errors import ConfigError
from sngan.models.cnn import CNNDiscriminator, CNNGenerator
from sngan.models.norms import add_learnt_scale
from sngan.models.resnet import ResNetConcatDiscriminator, ResNetDiscriminator, ResNetGenerator
from sngan.models.spectral import use_sn_step

GENERATORS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "resnet": lambda m: ResNetGenerator(m.z_dim, m.resolution, m.g_ch, m.num_classes),
    "cnn": lambda m: CNNGenerator(m.z_dim, m.resolution, m.g_ch, m.num_classes),
}
DISCRIMINATORS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "resnet": lambda m: (ResNetConcatDiscriminator if m.d_conditioning == "concat" else ResNetDiscriminator)(
        m.resolution, m.d_ch, m.num_classes, m.d_linear_bias, m.sn_power_iterations, m.d_norm),
    "cnn": lambda m: CNNDiscriminator(m.resolution, m.d_ch, m.num_classes, m.d_linear_bias, m.sn_power_iterations,
                                      m.d_norm),
}
def _check(model_cfg: ModelConfig) -> None:
    if model_cfg.arch not in GENERATORS:
        raise ConfigError(f"key 'model.arch' must be one of {'|'.join(GENERATORS)}, got {model_cfg.arch!r}")
    check_model(model_cfg)


def build_generator(model_cfg: ModelConfig) -> nn.Module:
    """The generator described by the `model` config section (freshly initialised, on CPU)."""
    _check(model_cfg)
    return GENERATORS[model_cfg.arch](model_cfg)


def build_discriminator(model_cfg: ModelConfig) -> nn.Module:
    """The discriminator described by the `model` config section, normalised by `d_norm` (and scaled by a learnt
    gamma per layer with `d_norm_gamma`, paper App. E), on CPU. Its spectral norms take the power-iteration step
    `model.sn_init` names (the authors' for random and svd, torch's for torch; `sngan.models.spectral`)."""
    _check(model_cfg)
    d = DISCRIMINATORS[model_cfg.arch](model_cfg)
    use_sn_step(d, model_cfg.sn_init)
    if model_cfg.d_norm_gamma:
        add_learnt_scale(d)
    return d


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters (spectral-norm u/v vectors are buffers and do not count)."""
    return sum(p.numel() for p in module.parameters())
