"""The choices the config schema and the CLI offer are exactly what the registries implement.

The schema (`sngan.config`) is read before torch loads, so it cannot import the torch-side registries; its tuples
are the one list of names, and these tests hold each registry to it (a name added on one side only fails here).
"""

import re
import typing

from sngan.config import D_NORMS, EVAL_PROTOCOLS, LOSS_TYPES, RESOLUTIONS, SN_ALGORITHMS, ModelConfig


def test_every_loss_type_has_its_pair_of_losses_and_no_other_exists():
    from sngan.train.losses import LOSSES

    assert tuple(LOSSES) == LOSS_TYPES


def test_every_architecture_builds_exactly_its_resolutions():
    import pytest

    from sngan.errors import ConfigError
    from sngan.models import DISCRIMINATORS, GENERATORS, build_generator
    from sngan.models.resnet import LAYOUTS

    assert set(RESOLUTIONS) == set(GENERATORS) == set(DISCRIMINATORS)
    assert RESOLUTIONS["resnet"] == tuple(sorted(LAYOUTS))
    for arch, sizes in RESOLUTIONS.items():
        for size in (16, 24, 32, 48, 64, 96, 128, 256):
            cfg = ModelConfig(arch=arch, resolution=size, g_ch=8, d_ch=8, z_dim=4)
            if size in sizes:
                assert build_generator(cfg) is not None
            else:
                with pytest.raises(ConfigError, match="model.resolution"):
                    build_generator(cfg)


def test_every_spectral_norm_start_has_its_step_and_every_protocol_its_definition():
    from sngan.evaluation.protocols import PROTOCOLS
    from sngan.models.spectral import STEP_OF_ALGORITHM

    assert tuple(STEP_OF_ALGORITHM) == SN_ALGORITHMS
    assert set(PROTOCOLS) == set(EVAL_PROTOCOLS)


def test_every_discriminator_normalisation_is_built():
    from torch import nn

    from sngan.models.layers import norm_activation, norm_weight

    for kind in D_NORMS:
        norm_weight(nn.Conv2d(2, 2, 3), kind)
        norm_activation(kind, 2)


def test_the_eval_help_names_exactly_the_registered_metrics():
    """`sngan eval --metrics` lists its names in the help (typed there: importing the registry costs seconds of
    torch at every `sngan` start); they must be IS, FID and the registered extra metrics."""
    from sngan.cli import eval_
    from sngan.metrics.extra import EXTRA

    help_text = typing.get_type_hints(eval_, include_extras=True)["metrics"].__metadata__[0].help
    listed = re.search(r"from ([a-z_,]+):", help_text).group(1).split(",")
    assert listed == ["is", "fid", *EXTRA]
