"""The choices the config schema and the CLI offer are read from the registries that implement them.

The schema (`sngan.config`) imports no torch; its choice lists for architectures, losses, spectral-norm starts and
evaluation protocols are `Registered` views of the torch-side dicts: a name added to a registry is accepted at once,
a name taken out is refused, and a mistyped key still fails before torch loads (tests/test_cli.py).
"""

import re

import pytest

from sngan.config import D_NORMS, ModelConfig, from_dict
from sngan.errors import ConfigError


@pytest.mark.parametrize("module, registry, section, key, value", [
    ("sngan.train.losses", "LOSSES", "loss", "type", "hinge"),
    ("sngan.models", "GENERATORS", "model", "arch", "resnet"),
    ("sngan.models.spectral", "STEP_OF_ALGORITHM", "model", "sn_algorithm", "random"),
    ("sngan.evaluation.protocols", "PROTOCOLS", "train", "eval_protocol", "paper"),
])
def test_a_config_takes_exactly_the_names_the_registry_holds(monkeypatch, module, registry, section, key, value):
    """The registry is replaced by copies (never edited in place: its order is what messages and help show)."""
    import importlib

    owner = importlib.import_module(module)
    table = getattr(owner, registry)
    from_dict({section: {key: value}})  # registered: accepted
    if key == "arch":  # a new architecture also says which sides it builds
        import sngan.models

        monkeypatch.setattr(sngan.models, "RESOLUTIONS", {**sngan.models.RESOLUTIONS, "newcomer": (32,)})
    monkeypatch.setattr(owner, registry, {**table, "newcomer": table[value]})  # registered elsewhere: accepted
    assert getattr(getattr(from_dict({section: {key: "newcomer"}}), section), key) == "newcomer"
    monkeypatch.setattr(owner, registry, {k: v for k, v in table.items() if k != value})  # taken out: refused
    rest = "|".join(k for k in table if k != value)
    with pytest.raises(ConfigError, match=re.escape(f"key '{section}.{key}' must be one of {rest}, got '{value}'")):
        from_dict({section: {key: value}})


def test_every_architecture_builds_exactly_the_sides_the_config_takes():
    from sngan.models import GENERATORS, RESOLUTIONS, build_discriminator, build_generator
    from sngan.models.resnet import LAYOUTS

    assert set(RESOLUTIONS) == set(GENERATORS) and RESOLUTIONS["resnet"] == tuple(sorted(LAYOUTS))
    assert RESOLUTIONS["cnn"] == (32, 48)  # the paper's standard CNN: CIFAR-10 and STL-10 (Table 3)
    for arch, sides in RESOLUTIONS.items():
        for side in (16, 24, 32, 48, 64, 96, 128, 256):
            raw = {"model": {"arch": arch, "resolution": side, "g_ch": 8, "d_ch": 8, "z_dim": 4}}
            if side in sides:
                model = from_dict(raw).model
                assert build_generator(model) is not None and build_discriminator(model) is not None
            else:
                with pytest.raises(ConfigError, match="model.resolution"):
                    from_dict(raw)
                with pytest.raises(ConfigError, match="model.resolution"):
                    build_generator(ModelConfig(arch=arch, resolution=side, g_ch=8, d_ch=8, z_dim=4))


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
