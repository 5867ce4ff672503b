"""`sngan sample`: every format round-trips, same seed = same bytes, class options, interpolations, refusals."""

import zipfile

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from sngan.cli import app
from sngan.sample.generate import generate, latents, load_generator

runner = CliRunner()
TILE = 34  # 32-pixel images + 2-pixel padding in grids


def sample(ckpt, out, *args):
    """Run `sngan sample` in-process; returns the result (exit code and output)."""
    return runner.invoke(app, ["sample", "--ckpt", str(ckpt), "--out", str(out), "--no-progress", *map(str, args)])


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def tiles(path, rows, cols):
    """The (rows, cols, 32, 32, 3) images of a grid PNG written with 2-pixel padding."""
    pixels = np.asarray(Image.open(path).convert("RGB"))
    return np.stack([np.stack([pixels[2 + r * TILE:r * TILE + TILE, 2 + c * TILE:c * TILE + TILE]
                               for c in range(cols)]) for r in range(rows)])


@pytest.mark.parametrize(("num", "nrow", "cols", "rows"), [(7, 3, 3, 3), (10, None, 4, 3), (4, 4, 4, 1)])
def test_grid_dimensions_follow_num_and_nrow(tiny_runs, tmp_path, num, nrow, cols, rows):
    out = tmp_path / "grid.png"
    ok(sample(tiny_runs["uncond_ckpt"], out, "--num", num, *(["--nrow", nrow] if nrow else [])))
    assert Image.open(out).size == (cols * TILE + 2, rows * TILE + 2)


def test_npz_has_stated_dtype_and_shape(tiny_runs, tmp_path):
    ok(sample(tiny_runs["uncond_ckpt"], tmp_path / "u.npz", "--num", 5))
    with np.load(tmp_path / "u.npz") as data:
        assert sorted(data.files) == ["arr_0", "x"]  # arr_0: the key guided-diffusion's evaluator reads
        assert data["x"].dtype == np.uint8 and data["x"].shape == (5, 32, 32, 3)
        np.testing.assert_array_equal(data["arr_0"], data["x"])
    ok(sample(tiny_runs["cond_ckpt"], tmp_path / "c.npz", "--num", 6))
    with np.load(tmp_path / "c.npz") as data:
        assert data["x"].dtype == np.uint8 and data["x"].shape == (6, 32, 32, 3)
        assert data["y"].dtype == np.int64 and data["y"].shape == (6,)
        assert set(data["y"].tolist()) <= {0, 1, 2}


def test_npz_pixels_match_the_generator(tiny_runs, tmp_path):
    ok(sample(tiny_runs["cond_ckpt"], tmp_path / "c.npz", "--num", 4, "--seed", 3))
    generator, _ = load_generator(tiny_runs["cond_ckpt"])
    z, y = latents(4, generator.z_dim, 3, seed=3)
    expected = ((generate(generator, z, y).clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(0, 2, 3, 1)
    with np.load(tmp_path / "c.npz") as data:
        np.testing.assert_array_equal(data["x"], expected.numpy())
        np.testing.assert_array_equal(data["y"], y.numpy())


def test_folder_holds_exactly_n_readable_pngs_matching_the_npz(tiny_runs, tmp_path):
    folder = tmp_path / "fid"
    result = ok(sample(tiny_runs["cond_ckpt"], folder, "--num", 7, "--seed", 5))
    assert "wrote 7 images" in result.output
    files = sorted(folder.rglob("*.png"), key=lambda p: p.name)
    assert len(files) == 7
    ok(sample(tiny_runs["cond_ckpt"], tmp_path / "same.npz", "--num", 7, "--seed", 5))
    ok(sample(tiny_runs["cond_ckpt"], tmp_path / "flat", "--num", 7, "--seed", 5, "--flat"))
    with np.load(tmp_path / "same.npz") as data:
        for i, path in enumerate(files):  # one sub-folder per class, named as the synthetic source names them
            names = ("circle", "square", "triangle")
            assert path.relative_to(folder).as_posix() == f"{names[data['y'][i]]}/{i:05d}.png"
            np.testing.assert_array_equal(np.asarray(Image.open(path)), data["x"][i])
        assert sorted(p.name for p in (tmp_path / "flat").iterdir()) == \
            [f"{i:05d}_class{data['y'][i]}.png" for i in range(7)] + ["manifest.json"]
    ok(sample(tiny_runs["uncond_ckpt"], tmp_path / "plain", "--format", "folder", "--num", 3))
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == ["00000.png", "00001.png", "00002.png",
                                                                     "manifest.json"]


@pytest.mark.parametrize("args", [["--num", 6], ["--num", 5, "--format", "npz"], ["--num", 4, "--format", "folder"],
                                  ["--interpolate", 4, "--num", 2], ["--classes", "all", "--num", 2],
                                  ["--classes", "0,2", "--interpolate", 3, "--num", 2]])
def test_same_seed_gives_byte_identical_outputs(tiny_runs, tmp_path, args):
    def files(name, seed):
        out = tmp_path / name
        ok(sample(tiny_runs["cond_ckpt"], out, "--seed", seed, *args))
        written = sorted(out.rglob("*.png")) if out.is_dir() else sorted(tmp_path.glob(f"{out.stem}.*"))
        return [p.read_bytes() for p in written]

    first, again, other = files("a.png", 1), files("b.png", 1), files("c.png", 2)
    assert first == again
    assert first != other


def test_format_option_wins_over_the_extension(tiny_runs, tmp_path):
    ckpt = tiny_runs["uncond_ckpt"]
    ok(sample(ckpt, tmp_path / "grid", "--format", "grid", "--num", 4))
    assert Image.open(tmp_path / "grid").format == "PNG"
    ok(sample(ckpt, tmp_path / "arrays.bin", "--format", "npz", "--num", 2))
    with np.load(tmp_path / "arrays.bin") as data:
        assert data["x"].shape == (2, 32, 32, 3)
    ok(sample(ckpt, tmp_path / "pngs.png", "--format", "folder", "--num", 2))
    assert sorted(p.name for p in (tmp_path / "pngs.png").iterdir()) == ["00000.png", "00001.png", "manifest.json"]


def test_npz_zip_entries_carry_a_fixed_date(tiny_runs, tmp_path):
    """Byte-identity must not depend on the clock: zip entries would otherwise hold the write time."""
    ok(sample(tiny_runs["uncond_ckpt"], tmp_path / "u.npz", "--num", 2))
    with zipfile.ZipFile(tmp_path / "u.npz") as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_class_and_per_class_grid(tiny_runs, tmp_path):
    ckpt = tiny_runs["cond_ckpt"]
    ok(sample(ckpt, tmp_path / "k.npz", "--class", 2, "--num", 4))
    with np.load(tmp_path / "k.npz") as data:
        assert data["y"].tolist() == [2, 2, 2, 2]
    ok(sample(ckpt, tmp_path / "rows.npz", "--classes", "2,0", "--num", 3))
    with np.load(tmp_path / "rows.npz") as data:
        assert data["y"].tolist() == [2, 2, 2, 0, 0, 0]
        rows = data["x"]
    ok(sample(ckpt, tmp_path / "rows.png", "--classes", "2,0", "--num", 3))
    assert Image.open(tmp_path / "rows.png").size == (3 * TILE + 2, 2 * TILE + 2)
    np.testing.assert_array_equal(tiles(tmp_path / "rows.png", 2, 3).reshape(6, 32, 32, 3), rows)
    ok(sample(ckpt, tmp_path / "all.png", "--classes", "all"))  # default 10 per class, one row per class
    assert Image.open(tmp_path / "all.png").size == (10 * TILE + 2, 3 * TILE + 2)


def test_class_interpolation_starts_and_ends_at_the_classes(tiny_runs, tmp_path):
    """Strip columns 0 and -1 equal plain class-0 and class-2 samples of the same z; the GIF plays there and back."""
    ckpt, steps = tiny_runs["cond_ckpt"], 5
    ok(sample(ckpt, tmp_path / "morph.gif", "--classes", "0,2", "--interpolate", steps, "--num", 3, "--seed", 4))
    strip = tiles(tmp_path / "morph.png", 3, steps)
    for k, column in ((0, 0), (2, steps - 1)):
        ok(sample(ckpt, tmp_path / f"k{k}.npz", "--class", k, "--num", 3, "--seed", 4))
        with np.load(tmp_path / f"k{k}.npz") as data:  # other batch shapes: float round-off may flip a rounding
            diff = np.abs(strip[:, column].astype(int) - data["x"].astype(int))
            assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    gif = Image.open(tmp_path / "morph.gif")
    assert gif.n_frames == 2 * steps - 2
    assert gif.size == (4 * (2 * TILE + 2), 4 * (2 * TILE + 2))  # 3 paths: a 2x2 grid of 70 px, 4x to >= 256 px


@pytest.mark.parametrize("method", ["slerp", "lerp"])
def test_latent_interpolation_runs_from_seed_to_end_seed(tiny_runs, tmp_path, method):
    ckpt, steps = tiny_runs["uncond_ckpt"], 4
    ok(sample(ckpt, tmp_path / "walk.png", "--interpolate", steps, "--num", 2, "--seed", 7, "--end-seed", 9,
              "--interp", method))
    strip = tiles(tmp_path / "walk.png", 2, steps).astype(int)
    for seed, column in ((7, 0), (9, steps - 1)):
        ok(sample(ckpt, tmp_path / f"s{seed}.npz", "--num", 2, "--seed", seed))
        with np.load(tmp_path / f"s{seed}.npz") as data:
            assert np.abs(strip[:, column] - data["x"].astype(int)).max() <= 1  # slerp end points up to rounding
    assert Image.open(tmp_path / "walk.gif").n_frames == 2 * steps - 2


@pytest.mark.parametrize("args", [["--class", 0], ["--classes", "all"], ["--classes", "0,1", "--interpolate", 3]])
def test_class_operations_are_refused_on_an_unconditional_model(tiny_runs, tmp_path, args):
    result = sample(tiny_runs["uncond_ckpt"], tmp_path / "x.png", *args)
    assert result.exit_code == 1
    assert "unconditional" in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("args", "message"), [
    (["--class", 3], "class 3 is out of range: the model has 3 classes (0-2)"),
    (["--classes", "0,-1"], "class -1 is out of range"),
    (["--classes", "1", "--interpolate", 4], "at least two classes"),
    (["--class", 1, "--classes", "0,1"], "exclude each other"),
    (["--classes", "0,1", "--nrow", 2], "--nrow does not apply"),
    (["--interpolate", 1], "--interpolate must be between 2 and 256"),
    (["--interp", "cubic", "--interpolate", 3], "--interp must be one of slerp|lerp"),
    (["--end-seed", 3], "only with --interpolate"),
    (["--format", "jpeg"], "--format must be one of"),
])
def test_bad_requests_are_refused_and_write_nothing(tiny_runs, tmp_path, args, message):
    result = sample(tiny_runs["cond_ckpt"], tmp_path / "x.png", *args)
    assert result.exit_code == 1
    assert message in result.output
    assert list(tmp_path.iterdir()) == []


def test_refusal_is_one_line_on_stderr(tiny_runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["sample", "--ckpt", str(tiny_runs["uncond_ckpt"]), "--out", "x.png", "--class", "1"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == ["error: this model is unconditional (model.num_classes 0): "
                                                  "--class/--classes need a class-conditional checkpoint"]
    assert list(tmp_path.iterdir()) == []


def test_existing_work_is_not_replaced_without_force(tiny_runs, tmp_path):
    ckpt = tiny_runs["uncond_ckpt"]
    folder = tmp_path / "fid"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    result = sample(ckpt, folder, "--num", 2)
    assert result.exit_code == 1 and "not empty" in result.output
    result = sample(ckpt, folder, "--num", 2, "--force")  # --force swaps the whole folder: only an earlier export
    assert result.exit_code == 1 and "holds 'notes.txt'" in result.output
    (folder / "notes.txt").unlink()
    ok(sample(ckpt, folder, "--num", 3, "--force"))
    ok(sample(ckpt, folder, "--num", 2, "--force"))  # the 3 earlier PNGs are replaced by a new folder of 2
    assert sorted(p.name for p in folder.iterdir()) == ["00000.png", "00001.png", "manifest.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fid"]  # no staging folder left
    (tmp_path / "grid.png").write_bytes(b"precious")
    result = sample(ckpt, tmp_path / "grid.png")
    assert result.exit_code == 1 and "exists" in result.output
    assert (tmp_path / "grid.png").read_bytes() == b"precious"
    ok(sample(ckpt, tmp_path / "grid.png", "--force"))
    assert Image.open(tmp_path / "grid.png").size == (8 * TILE + 2, 8 * TILE + 2)


def test_progress_counts_every_generated_image_once_and_stays_off_when_not_asked(tiny_runs, monkeypatch):
    import sngan.sample.generate as generate_module

    bars = []

    class Recorder:
        def __init__(self, total, desc, enabled=True, **_):
            self.total, self.enabled, self.updates, self.closed = total, enabled, [], False
            bars.append(self)

        def update(self, n):
            self.updates.append(n)

        def close(self):
            self.closed = True

    monkeypatch.setattr(generate_module, "PassProgress", Recorder)
    generator, _ = load_generator(tiny_runs["uncond_ckpt"])
    z, _ = latents(5, generator.z_dim, 0, seed=0)
    generate(generator, z, batch_size=2, progress=True)
    generate(generator, z, batch_size=2)
    assert [(b.total, b.updates, b.enabled, b.closed) for b in bars] == [(5, [2, 2, 1], True, True),
                                                                         (5, [2, 2, 1], False, True)]


def test_latent_sizes_reads_the_generators_sizes_and_refuses_a_module_that_is_not_one(tmp_path):
    from torch import nn

    from sngan.config import from_dict
    from sngan.errors import SamplingError
    from sngan.models import build_generator
    from sngan.sample.command import SampleRequest, export
    from sngan.sample.generate import latent_sizes

    model = from_dict({"model": {"arch": "resnet", "resolution": 32, "z_dim": 12, "g_ch": 4, "num_classes": 3}}).model
    assert latent_sizes(build_generator(model)) == (12, 3)
    with pytest.raises(SamplingError, match="Linear is not a generator: it has no integer z_dim and num_classes"):
        export(nn.Linear(2, 2), SampleRequest(out=tmp_path / "x.png"))
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("n, nrow", [(1, 8), (2, 1), (5, 3), (6, 3), (7, 4), (16, 4), (3, 8)])
def test_grids_are_torchvisions_make_grid_and_save_image_to_the_byte(n, nrow):
    """Our grid (written without importing torchvision at every start) against torchvision's own functions: the
    same tensor and the same PNG bytes, for full and short last rows, one image, values outside [-1, 1], H != W."""
    import io

    from torchvision.utils import make_grid, save_image

    from sngan.sample.writers import grid_tensor, grid_writer

    images = torch.randn(n, 3, 5, 7, generator=torch.Generator().manual_seed(n)) * 0.8
    expected = make_grid(images, nrow=nrow, normalize=True, value_range=(-1, 1))
    assert torch.equal(grid_tensor(images, nrow), expected)
    ours, theirs = io.BytesIO(), io.BytesIO()
    grid_writer(images, nrow)(ours)
    save_image(images, theirs, nrow=nrow, normalize=True, value_range=(-1, 1), format="PNG")
    assert ours.getvalue() == theirs.getvalue()


def test_generated_labels_are_uniform_over_every_class():
    """The authors' gen_images draws y = randint(0, n_classes): each of 10 classes has probability 1/10, so in 3,000
    draws every class appears with a count of 300 ± 16.4 (binomial sd); the bound 300 ± 100 (6 sd) holds for any
    seed but with probability below 1e-7, and a class never drawn (0 or 9) fails it."""
    _, y = latents(3000, 4, 10, seed=0)
    counts = np.bincount(y.numpy(), minlength=10)
    assert len(counts) == 10 and y.dtype == torch.int64
    assert counts.min() >= 200 and counts.max() <= 400, counts


def test_gif_writer_out_of_memory_says_what_to_lower(tmp_path, monkeypatch):
    from sngan.sample.writers import save_gif

    def fail(self, *args, **kwargs):
        raise ValueError("quantization error")

    monkeypatch.setattr(Image.Image, "save", fail)
    with pytest.raises(MemoryError, match="lower --num, --interpolate or --scale"):
        save_gif(torch.rand(4, 3, 8, 8), 2, tmp_path / "x.gif")
    assert list(tmp_path.iterdir()) == []
