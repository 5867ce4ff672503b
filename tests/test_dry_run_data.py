"""issue 30 section 7: `sngan train --dry-run` checks the data root (without reading or downloading anything)."""

from typer.testing import CliRunner

from sngan.cli import app
from tests.helpers import CONFIGS, write_config

runner = CliRunner()


def _dry(config, *sets):
    return runner.invoke(app, ["train", "--config", str(config), "--dry-run", *[a for s in sets for a in ("--set", s)]])


def test_a_missing_root_is_an_error_for_sources_that_cannot_download(tmp_path):
    missing = tmp_path / "nowhere"
    folder = write_config(tmp_path / "f.yaml", {"data": {"name": "folder", "root": str(missing)}})
    result = _dry(folder)
    assert result.exit_code == 1 and result.output.splitlines()[-1].startswith(f"error: data.root '{missing}' is not a "
                                                                            f"folder")  # after the summary
    (tmp_path / "empty").mkdir()
    result = _dry(folder, f"data.root={tmp_path / 'empty'}")
    assert result.exit_code == 1 and "is empty" in result.output
    result = _dry(CONFIGS / "cifar10_resnet.yaml", f"data.root={missing}", "data.download=false")
    assert result.exit_code == 1 and "CIFAR-10 is absent under" in result.output and "download is off" in result.output
    assert not missing.exists()  # nothing created, nothing downloaded


def test_a_root_that_training_would_download_into_is_a_notice_and_the_summary_follows(tmp_path):
    result = _dry(CONFIGS / "cifar10_resnet.yaml", f"data.root={tmp_path / 'c10'}")
    assert result.exit_code == 0, result.output
    *summary, last = result.output.splitlines()
    assert last.startswith(f"notice: CIFAR-10 is absent under '{tmp_path / 'c10'}': training will download it")
    assert "generator parameters: 4276739" in summary and not (tmp_path / "c10").exists()


def test_without_the_data_the_dry_run_prints_what_it_can_then_the_data_problem_last_and_fails(tmp_path):
    """The paper's ImageNet config on a machine without ImageNet: the config, both parameter counts and the
    weights' memory, then the data error as the last line, exit 1."""
    missing = tmp_path / "imagenet"
    result = _dry(CONFIGS / "imagenet128_projection.yaml", f"data.root={missing}")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0] == "data:" and "  name: imagenet" in lines
    g = next(int(line.split(": ")[1]) for line in lines if line.startswith("generator parameters: "))
    d = next(int(line.split(": ")[1]) for line in lines if line.startswith("discriminator parameters: "))
    assert g > 10 ** 7 and d > 10 ** 7  # the 128-pixel projection model (Table 6), tens of millions each
    memory = next(line for line in lines if line.startswith("memory for weights, gradients and Adam moments"))
    assert memory.split(": ")[1].startswith(f"{(g + d) * 16 / 1e9:.2f} GB")  # 4 float32 numbers per parameter
    assert lines[-1].startswith(f"error: data.root '{missing}' is not a folder")
    assert result.stderr.strip().splitlines() == [lines[-1]]
    assert not missing.exists()


def test_a_cache_without_its_source_files_is_named_and_present_files_pass_silently(tmp_path):
    root = tmp_path / "c10"
    (root / "sngan-cache" / "cifar10-train-32px-0123456789abcdef").mkdir(parents=True)
    (root / "sngan-cache" / "cifar10-train-32px-0123456789abcdef" / "manifest.json").write_text("{}")
    result = _dry(CONFIGS / "cifar10_resnet.yaml", f"data.root={root}", "data.download=false")
    assert result.exit_code == 1
    assert f"a packed cache for it is at {root / 'sngan-cache' / 'cifar10-train-32px-0123456789abcdef'}" in \
        result.output and "needs them too" in result.output
    (root / "cifar-10-batches-py").mkdir()
    result = _dry(CONFIGS / "cifar10_resnet.yaml", f"data.root={root}", "data.download=false")
    assert result.exit_code == 0 and result.output.startswith("data:"), result.output
    images = tmp_path / "tree" / "cat"
    images.mkdir(parents=True)
    (images / "a.png").write_bytes(b"not read by a dry run")
    folder = write_config(tmp_path / "f.yaml", {"data": {"name": "folder", "root": str(tmp_path / "tree")}})
    assert _dry(folder).exit_code == 0
