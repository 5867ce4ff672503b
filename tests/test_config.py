"""The config schema: every shipped config sets every field, values are typed, --set overrides apply, and a bad
value (a NUL byte in a path, a value nested too deeply to show) is one short error naming its key."""

from pathlib import Path

import pytest

from sngan.config import Config, field_help, from_dict, load_config, to_yaml
from sngan.errors import ConfigError
from tests.helpers import CONFIGS, write_config

PAPER_CONFIGS = sorted(CONFIGS.glob("*.yaml"))


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_loads_and_sets_every_field(path: Path):
    cfg = load_config(path)
    text = path.read_text()
    for key, *_ in field_help():
        section, name = key.split(".")
        assert f"\n  {name}:" in text, f"{path.name} does not set {key}"
        assert f"{section}:" in text
    assert isinstance(cfg.optim.beta1, float)


def test_beta1_zero_becomes_float(tmp_path):
    cfg = load_config(write_config(tmp_path / "c.yaml", {"optim": {"beta1": 0, "beta2": 0}}))
    assert cfg.optim.beta1 == 0.0 and type(cfg.optim.beta1) is float and type(cfg.optim.beta2) is float


def test_scientific_notation_string_is_a_float(tmp_path):
    cfg = load_config(write_config(tmp_path / "c.yaml", {"optim": {"lr": "2e-4"}}))
    assert cfg.optim.lr == pytest.approx(2e-4)


def test_overrides_apply_and_parse_yaml(tiny_config):
    cfg = load_config(tiny_config, ["train.iterations=7", "optim.lr=1e-3", "train.device=cpu", "data.download=no"])
    assert cfg.train.iterations == 7 and cfg.optim.lr == pytest.approx(1e-3) and cfg.data.download is False


@pytest.mark.parametrize("override, message", [
    ("train.iteratons=5", "unknown key 'train.iteratons' (did you mean 'iterations'?)"),
    ("trian.iterations=5", "unknown section 'trian'"),
    ("train.iterations=abc", "key 'train.iterations' must be an integer"),
    ("train.iterations=2.5", "key 'train.iterations' must be an integer"),
    ("optim.lr=-1", "key 'optim.lr' must be > 0, got -1.0"),
    ("model.arch=vgg", "key 'model.arch' must be one of resnet|cnn"),
    ("loss.type=wgan", "key 'loss.type' must be one of hinge|nonsaturating"),
    ("data.download=3", "key 'data.download' must be true or false"),
    ("train.n_dis=0", "key 'train.n_dis' must be >= 1"),
    ("iterations=5", "must look like section.key"),
    ("train.iterations", "must look like section.key=value (one argument, no spaces: --set train.iterations=VALUE)"),
])
def test_bad_overrides_are_one_line_errors_naming_the_set_and_key_not_the_file(tiny_config, override, message):
    with pytest.raises(ConfigError) as err:
        load_config(tiny_config, [override])
    text = str(err.value)
    assert message in text and "\n" not in text
    assert str(tiny_config) not in text  # the YAML file is fine: the --set is wrong
    if "=" in override and "." in override.split("=")[0]:
        assert f"--set {override}" in text


def test_malformed_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  iterations: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: malformed YAML at line \d+"):
        load_config(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(scalar)


def test_decay_start_must_precede_the_end(tiny_config):
    with pytest.raises(ConfigError, match="optim.lr_decay_start"):
        load_config(tiny_config, ["optim.lr_decay_start=3"])


def test_yaml_round_trip_is_identity(tiny_config):
    import yaml

    cfg = load_config(tiny_config)
    assert from_dict(yaml.safe_load(to_yaml(cfg))) == cfg
    assert Config().to_dict()["train"]["n_dis"] == 5


@pytest.mark.parametrize("key", ["data.root", "data.cache_dir"])
def test_a_nul_byte_in_a_path_is_one_config_error(tmp_path, key):
    with pytest.raises(ConfigError, match=f"key '{key}' must not contain a NUL byte"):
        load_config(write_config(tmp_path / "c.yaml"), [f"{key}=a\x00b"])


def test_a_deeply_nested_config_value_is_a_short_error():
    deep: list = []
    for _ in range(20_000):
        deep = [deep]
    with pytest.raises(ConfigError) as caught:
        from_dict({"train": {"iterations": deep}})
    assert len(str(caught.value)) < 300 and "nested too deeply to show" in str(caught.value)
