"""Model registry: `build_generator(model_cfg)` / `build_discriminator(model_cfg)` pick the family by `arch`; and
the size of the networks a config describes, checked before anything is allocated (`check_model_size`).

The config schema bounds each typed size (`sngan.config`: widths <= 4096, batches <= 65536, ...), but widths
multiply: a 128-pixel ResNet at g_ch 4096 would need hundreds of billions of weights. `check_model_size` counts the
parameters of both networks without allocating them and refuses more than `MAX_PARAMETERS` per network, about
16 GB of weights, gradients and Adam moments in float32 (the paper's largest, the 128x128 projection model, has
under 100 million). Every layer width of either network is its base width (g_ch, d_ch) times a constant, so a
network's count is quadratic in that width: three tiny builds give the coefficients. PyTorch's `meta` device would
avoid even those, but it cannot run spectral norm (autocast) and costs seconds of imports on first use. The CNN
generator halves its width three times (floor division), so it is fitted on multiples of 8: exact for widths
divisible by 8, an upper bound otherwise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import nn

from sngan.config import ModelConfig, check_model
from sngan.errors import ConfigError
from sngan.models.cnn import CNN_SIDES, CNNDiscriminator, CNNGenerator
from sngan.models.layers import add_learnt_scale
from sngan.models.resnet import LAYOUTS, ResNetConcatDiscriminator, ResNetDiscriminator, ResNetGenerator
from sngan.models.spectral import STEP_OF_ALGORITHM, sn_layers

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

RESOLUTIONS: dict[str, tuple[int, ...]] = {  # model.arch -> the image sides it builds
    "resnet": tuple(sorted(LAYOUTS)),  # the per-resolution layouts of the authors' ResNets
    "cnn": CNN_SIDES,
}

MAX_PARAMETERS = 1_000_000_000  # per network
BYTES_PER_TRAINED_PARAMETER = 16  # float32 weight + gradient + two Adam moments


def build_generator(model_cfg: ModelConfig) -> nn.Module:
    """The generator described by the `model` config section (freshly initialised, on CPU)."""
    check_model(model_cfg)  # a ModelConfig made in Python has not been through the config's checks
    return GENERATORS[model_cfg.arch](model_cfg)


def build_discriminator(model_cfg: ModelConfig) -> nn.Module:
    """The discriminator described by the `model` config section, normalised by `d_norm` (and scaled by a learnt
    gamma per layer with `d_norm_gamma`, paper App. E), on CPU. Its spectral norms take the power-iteration step
    `model.sn_algorithm` names (the authors' for random and svd, torch's for torch; `sngan.models.spectral`)."""
    check_model(model_cfg)  # a ModelConfig made in Python has not been through the config's checks
    if model_cfg.sn_algorithm not in STEP_OF_ALGORITHM:  # a choice the schema checks when it loads, not check_model
        raise ValueError(f"unknown spectral-norm start {model_cfg.sn_algorithm!r}; choose one of "
                         f"{'|'.join(STEP_OF_ALGORITHM)}")
    d = DISCRIMINATORS[model_cfg.arch](model_cfg)
    for _, norm in sn_layers(d):
        norm.keeps = STEP_OF_ALGORITHM[model_cfg.sn_algorithm]
    if model_cfg.d_norm_gamma:
        add_learnt_scale(d)
    return d


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters (spectral-norm u/v vectors are buffers and do not count)."""
    return sum(p.numel() for p in module.parameters())


def check_model_size(model_cfg: ModelConfig) -> tuple[int, int]:
    """The (generator, discriminator) parameter counts of `model_cfg`, from three tiny builds of each network; raises
    ConfigError, naming the limit, when either would exceed `MAX_PARAMETERS`."""
    unit = 8 if model_cfg.arch == "cnn" else 1  # the CNN generator is fitted on multiples of 8 (module docstring)
    tiny = [dataclasses.replace(model_cfg, g_ch=k * unit, d_ch=k) for k in (1, 2, 3)]
    with torch.random.fork_rng(devices=[]):  # the tiny builds must not move the caller's random stream
        counts = [[count_parameters(build(m)) for m in tiny] for build in (build_generator, build_discriminator)]
    # the quadratic through (1, p1), (2, p2), (3, p3) at the config's width x (Lagrange's form)
    g, d = (round(p1 * (x - 2) * (x - 3) / 2 - p2 * (x - 1) * (x - 3) + p3 * (x - 1) * (x - 2) / 2)
            for (p1, p2, p3), x in zip(counts, (model_cfg.g_ch / unit, model_cfg.d_ch), strict=True))
    for name, count in (("generator", g), ("discriminator", d)):
        if count > MAX_PARAMETERS:
            gib = count * BYTES_PER_TRAINED_PARAMETER / 2 ** 30
            raise ConfigError(f"the model section describes a {name} of {count:,} parameters (about {gib:,.0f} GiB "
                              f"to train), more than the limit of {MAX_PARAMETERS:,}: lower model.g_ch, "
                              f"model.d_ch, model.z_dim or model.num_classes")
    return g, d
