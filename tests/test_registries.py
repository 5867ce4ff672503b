"""The choices the config schema and the CLI offer are exactly what the registries implement.

The schema (`sngan.config`) is read before torch loads, so it cannot import the torch-side registries; its tuples
are the one list of names, and these tests hold each registry to it (a name added on one side only fails here).
"""

import re

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


def test_the_eval_help_names_exactly_the_registered_metrics(monkeypatch):
    """`sngan eval --help` reads its metric names from the registry when it is shown: a metric registered here
    appears in it, in registry order after IS and FID."""
    from typer.testing import CliRunner

    from sngan.cli import app
    from sngan.metrics import extra

    def listed() -> list[str]:
        text = " ".join(CliRunner().invoke(app, ["eval", "--help"], terminal_width=400).output.split())
        return re.search(r"Comma-separated, from ([a-z_,]+):", text).group(1).split(",")

    assert listed() == ["is", "fid", *extra.EXTRA]
    monkeypatch.setitem(extra.EXTRA, "sharpness", extra.EXTRA[next(iter(extra.EXTRA))])
    assert listed() == ["is", "fid", *extra.EXTRA] and listed()[-1] == "sharpness"
