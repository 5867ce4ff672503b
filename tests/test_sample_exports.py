"""Exports other tools load: per-class folders ImageFolder reads, --seeds (one image per seed), --truncation."""

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from sngan.cli import app
from sngan.errors import SamplingError
from sngan.sample.generate import MIN_TRUNCATION, generate, latents, load_generator, parse_seeds, truncate
from sngan.sample.writers import to_uint8
from tests.helpers import one_line
from tests.test_sampling import ok, sample

runner = CliRunner()


def test_seed_lists_and_ranges_parse_like_stylegan():
    assert parse_seeds("0-3") == [0, 1, 2, 3] and parse_seeds("1,5,10-12") == [1, 5, 10, 11, 12]
    for bad in ("a-b", "5-2", ","):
        with pytest.raises(SamplingError, match="--seeds"):
            parse_seeds(bad)


def test_each_seed_gives_its_own_image_whatever_the_other_seeds(tiny_runs, tmp_path):
    ckpt = tiny_runs["uncond_ckpt"]
    ok(sample(ckpt, tmp_path / "many", "--seeds", "3-6"))
    ok(sample(ckpt, tmp_path / "one", "--seeds", "5"))
    names = sorted(p.name for p in (tmp_path / "many").glob("*.png"))
    assert names == ["seed0003.png", "seed0004.png", "seed0005.png", "seed0006.png"]
    alone = np.asarray(Image.open(tmp_path / "one" / "seed0005.png"))
    generator, _ = load_generator(ckpt)
    z, _ = latents(1, generator.z_dim, 0, 5)
    expected = to_uint8(generate(generator, z, None))[0].numpy()
    diff = np.abs(np.asarray(Image.open(tmp_path / "many" / "seed0005.png")).astype(int) - alone.astype(int))
    assert diff.max() <= 1  # batch of 4 vs batch of 1: float round-off may flip a rounding
    np.testing.assert_array_equal(alone, expected)
    result = sample(ckpt, tmp_path / "x.npz", "--seeds", "1-2", "--num", 2)
    assert result.exit_code == 1 and "exclude each other" in result.output


def test_truncation_redraws_large_entries_from_the_seeded_stream(tiny_runs, tmp_path):
    z = truncate(torch.randn(500, 16, generator=torch.Generator().manual_seed(0)), 0.5,
                 torch.Generator().manual_seed(1))
    assert z.abs().max() <= 0.5 and z.std() > 0.2  # redrawn, not clipped to the bound
    a, _ = latents(64, 16, 0, 3, truncation=1.0)
    assert torch.equal(a, latents(64, 16, 0, 3, truncation=1.0)[0]) and a.abs().max() <= 1.0
    assert not torch.equal(a, latents(64, 16, 0, 3)[0])
    ok(sample(tiny_runs["uncond_ckpt"], tmp_path / "t.npz", "--num", 3, "--truncation", 0.7))
    result = sample(tiny_runs["uncond_ckpt"], tmp_path / "u.npz", "--truncation", 0)
    assert result.exit_code == 1 and "--truncation must be >= 0.05" in result.output


def test_conditional_folder_is_read_by_torchvision_image_folder(tiny_runs, tmp_path):
    datasets = pytest.importorskip("torchvision.datasets")
    folder = tmp_path / "cls"
    ok(sample(tiny_runs["cond_ckpt"], folder, "--classes", "0,2", "--num", 2))
    loaded = datasets.ImageFolder(str(folder))
    assert loaded.classes == ["circle", "triangle"] and [label for _, label in loaded.samples] == [0, 0, 1, 1]
    ok(sample(tiny_runs["cond_ckpt"], folder, "--classes", "1", "--num", 1, "--force"))  # --force replaces it
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png")) == ["square/00000.png"]


def test_scale_enlarges_the_strip_and_every_gif_frame_by_whole_pixels(tiny_runs, tmp_path):
    ckpt = tiny_runs["uncond_ckpt"]
    ok(sample(ckpt, tmp_path / "a.gif", "--interpolate", 3, "--num", 2, "--scale", 1))
    ok(sample(ckpt, tmp_path / "b.gif", "--interpolate", 3, "--num", 2, "--scale", 3))
    small, big = Image.open(tmp_path / "a.png"), Image.open(tmp_path / "b.png")
    assert big.size == (3 * small.width, 3 * small.height)
    np.testing.assert_array_equal(np.asarray(big.convert("RGB"))[::3, ::3], np.asarray(small.convert("RGB")))
    gif_small, gif_big = Image.open(tmp_path / "a.gif"), Image.open(tmp_path / "b.gif")
    assert gif_big.size == (3 * gif_small.width, 3 * gif_small.height) and gif_big.n_frames == gif_small.n_frames


def test_a_folder_export_is_synced_once_after_every_png_and_its_manifest_comes_last(tmp_path, monkeypatch):
    """issue 23: no fsync per PNG; every PNG is on disk before the first sync, and manifest.json (each file's
    name, size and sha256, checked here with hashlib) is written after the syncs."""
    import hashlib
    import json
    import os

    import torch

    import sngan.io
    from sngan.sample.writers import save_folder

    folder, events = tmp_path / "export", []
    real_fsync = os.fsync

    def spy(fd):
        events.append((len(list(folder.glob("*.png"))), (folder / "manifest.json").exists()))
        return real_fsync(fd)

    monkeypatch.setattr(sngan.io.os, "fsync", spy)
    images = torch.rand(2, 3, 3, 8, 8) * 2 - 1  # two batches of three
    paths = save_folder(iter(images), None, folder, 6)
    first_sync = events[0]
    assert first_sync == (6, False)  # all six PNGs written before anything was synced
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["count"] == 6 and [e["file"] for e in manifest["files"]] == [p.name for p in paths]
    for entry, path in zip(manifest["files"], paths, strict=True):
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert entry["bytes"] == path.stat().st_size
    assert not any(has_manifest for _, has_manifest in events[:-2])  # only the manifest's own write follows


def test_sample_off_a_terminal_draws_no_progress_bar(tiny_runs, tmp_path):
    """Like training: stderr piped to a file (a cluster job) gets no carriage-return bar redraws."""
    import subprocess

    from tests.helpers import sngan_cmd

    proc = subprocess.run(sngan_cmd("sample", "--ckpt", str(tiny_runs["uncond_ckpt"]), "--out", str(tmp_path / "f"),
                                    "--num", "4", "--device", "cpu"), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and "%|" not in proc.stderr


def test_without_scale_the_gif_is_at_least_256_px_wide_in_whole_pixels(tiny_runs, tmp_path):
    """issue 30 section 7: 8 paths of 32 px cells make a 3-wide GIF frame of 3 x 34 + 2 = 104 px: enlarged 3 times
    (312 px; 2 times would be 208); the strip keeps the generator's pixels (9 x 34 + 2 = 308 px)."""
    ok(sample(tiny_runs["cond_ckpt"], tmp_path / "morph.gif", "--classes", "0,2", "--interpolate", 9))
    gif, strip = Image.open(tmp_path / "morph.gif"), Image.open(tmp_path / "morph.png")
    assert gif.size == (312, 3 * 104) and strip.size == (308, 8 * 34 + 2)
    ok(sample(tiny_runs["cond_ckpt"], tmp_path / "one.gif", "--classes", "0,2", "--interpolate", 9, "--scale", 1))
    assert Image.open(tmp_path / "one.gif").size == (104, 104)


@pytest.mark.parametrize("value", ["1e-6", "1e-7", "0", "-1", "nan"])
def test_truncation_too_small_is_refused_before_work(tiny_runs, tmp_path, value):
    ckpt = str(sorted((tiny_runs["uncond"] / "checkpoints").glob("ckpt-*.pt"))[-1])
    for args in (["sample", "--ckpt", ckpt, "--out", str(tmp_path / "x.png")], ["eval", "--ckpt", ckpt]):
        result = runner.invoke(app, [*args, f"--truncation={value}"])
        assert result.exit_code == 1 and "--truncation must be >= 0.05" in one_line(result)
    assert not (tmp_path / "x.png").exists()


def test_the_smallest_truncation_allowed_finishes_and_bounds_every_entry():
    z, _ = latents(64, 128, 0, seed=1, truncation=MIN_TRUNCATION)
    assert z.abs().max() <= MIN_TRUNCATION and z.abs().max() > 0.9 * MIN_TRUNCATION  # redrawn, not clamped


@pytest.mark.parametrize("seeds", ["18446744073709551616", "0-99999999999", "5-18446744073709551616"])
def test_huge_seeds_are_one_line(tiny_runs, tmp_path, seeds):
    ckpt = str(sorted((tiny_runs["uncond"] / "checkpoints").glob("ckpt-*.pt"))[-1])
    result = runner.invoke(app, ["sample", "--ckpt", ckpt, "--out", str(tmp_path / "x"), "--seeds", seeds])
    assert result.exit_code == 1 and "--seeds" in one_line(result)
    result = runner.invoke(app, ["eval", "--ckpt", ckpt, "--seed", "18446744073709551616"])
    assert result.exit_code == 2 and "--seed" in one_line(result)
