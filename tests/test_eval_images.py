"""`sngan eval --images`: a folder, an npz and the checkpoint they were sampled from score the same, and every
input is checked before any work."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from sngan.cli import app
from sngan.config import load_config

runner = CliRunner()
COUNTS = ["--num-samples", "6", "--splits", "2", "--device", "cpu", "--no-progress"]


def _eval(tmp_path, weights, *args):
    out = tmp_path / "records.jsonl"
    before = len(out.read_text().splitlines()) if out.exists() else 0
    result = runner.invoke(app, ["eval", *args, *COUNTS, "--inception-weights", str(weights), "--json", str(out)])
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert len(lines) == before + 1
    return json.loads(lines[-1]), result.output


def test_folder_npz_and_checkpoint_give_the_same_is_and_fid(tiny_runs, stand_in_inception, tmp_path):
    weights, _ = stand_in_inception
    ckpt = tiny_runs["cond_ckpt"]
    config = tiny_runs["cond"].parent / "cond.yaml"
    stats = tmp_path / "real.npz"
    few = "data.num_images=12"  # the real side: 12 images (each is a 299x299 Inception forward on the CPU)
    result = runner.invoke(app, ["stats", "--config", str(config), "--out", str(stats), "--inception-weights",
                                 str(weights), "--device", "cpu", "--set", f"data.cache_dir={tmp_path / 'cache'}",
                                 "--set", few])
    assert result.exit_code == 0, result.output
    for out in ("folder", "images.npz"):
        result = runner.invoke(app, ["sample", "--ckpt", str(ckpt), "--out", str(tmp_path / out), "--num", "6",
                                     "--seed", "5"])
        assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "folder").glob("*/*.png"))) == 6  # class sub-folders: order from the manifest

    from_ckpt, _ = _eval(tmp_path, weights, "--ckpt", str(ckpt), "--seed", "5", "--stats", str(stats))
    from_folder, printed = _eval(tmp_path, weights, "--images", str(tmp_path / "folder"), "--stats", str(stats))
    from_npz, _ = _eval(tmp_path, weights, "--images", str(tmp_path / "images.npz"), "--stats", str(stats))
    assert set(from_ckpt["metrics"]) == {"is6_2splits", "is6_2splits_std", "fid6_train12"}
    assert from_folder["metrics"] == from_ckpt["metrics"] == from_npz["metrics"]  # same pixels, same batches
    assert from_folder["images"] == str(tmp_path / "folder") and from_folder["images_kind"] == "folder"
    assert "warning: FID from 6 generated and 12 real images (< 2048)" in printed
    assert "warning: IS from 3 images per split (< 5000)" in printed
    assert from_folder["warnings"] and "FID  " in printed

    # --ref: the same real images as an npz give the FID of the statistics file (named after the reference)
    real = load_config(config, [few])
    from sngan.data import load_images
    images = load_images(real.data, real.model.resolution, seed=real.train.seed).images
    np.savez(tmp_path / "real_images.npz", arr_0=np.asarray(images))
    against_ref, _ = _eval(tmp_path, weights, "--images", str(tmp_path / "images.npz"), "--ref",
                           str(tmp_path / "real_images.npz"))
    assert against_ref["metrics"]["fid6_ref12"] == pytest.approx(from_ckpt["metrics"]["fid6_train12"], rel=1e-6)


def test_moving_images_across_is_splits_changes_is_and_a_wrong_scale_changes_fid(tiny_runs, stand_in_inception,
                                                                                   tmp_path):
    """The pins above can fail. IS is the mean over in-order splits (here images 0-2 and 3-5): swapping images 0
    and 3 changes both splits' members, so the score moves; reordering inside each split does not (the split scores
    are sums over their members). A wrong pixel scale (x // 2) moves FID far from 0."""
    weights, _ = stand_in_inception
    ckpt = tiny_runs["uncond_ckpt"]
    runner.invoke(app, ["sample", "--ckpt", str(ckpt), "--out", str(tmp_path / "a.npz"), "--num", "6"])
    with np.load(tmp_path / "a.npz") as data:
        x = data["x"]
    np.savez(tmp_path / "across.npz", x=x[[3, 1, 2, 0, 4, 5]])
    np.savez(tmp_path / "within.npz", x=x[[2, 1, 0, 5, 4, 3]])
    np.savez(tmp_path / "halved.npz", x=(x // 2).astype(np.uint8))
    scores = {n: _eval(tmp_path, weights, "--images", str(tmp_path / f"{n}.npz"), "--ref",
                       str(tmp_path / "a.npz"))[0]["metrics"] for n in ("a", "across", "within", "halved")}
    is_a = scores["a"]["is6_2splits"]
    assert scores["within"]["is6_2splits"] == pytest.approx(is_a, rel=1e-6)
    # the swap moves IS by about 9% here; reordering inside the splits by about 1e-7 (the batch's order)
    assert abs(scores["across"]["is6_2splits"] - is_a) > 1e-2 * is_a, scores
    # FID of a set against itself is 0 up to the eigensolve's round-off (~1e-12 here; the halved set scores ~40)
    assert scores["a"]["fid6_ref6"] == pytest.approx(0, abs=1e-3)
    assert scores["halved"]["fid6_ref6"] > 1.0, scores


def _one_line_error(args, match):
    result = runner.invoke(app, ["eval", *args])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and match in lines[0], result.output


def test_eval_inputs_are_checked_before_any_work(tiny_runs, offline_hub, tmp_path):
    """Offline without Inception weights: each error below comes from a check made before the network loads."""
    np.savez(tmp_path / "imgs.npz", arr_0=np.zeros((20, 8, 8, 3), np.uint8))
    np.savez(tmp_path / "stats.npz", mu=np.zeros(4), sigma=np.eye(4))
    imgs, stats = str(tmp_path / "imgs.npz"), str(tmp_path / "stats.npz")
    _one_line_error(["--images", imgs], "--images needs one reference: --stats FILE")
    _one_line_error(["--images", imgs, "--num-samples", "50", "--stats", stats],
                    "--num-samples 50 but --images")  # a typed count is kept, and refused when too large
    _one_line_error(["--images", imgs, "--protocol", "paper", "--num-samples", "20", "--num-real", "50", "--ref",
                     imgs], "protocol paper (modified) needs 50 real images but --ref")
    _one_line_error(["--images", imgs, "--num-samples", "20", "--stats", stats, "--metrics", "kid"],
                    "--metrics kid need the real images' features, and")
    _one_line_error(["--images", imgs, "--num-samples", "20", "--stats", stats, "--metrics", "kid"],
                    "sngan stats --features")
    _one_line_error(["--images", imgs, "--num-samples", "20", "--stats", stats, "--metrics", "fid,bogus"],
                    "--metrics: unknown bogus")
    _one_line_error(["--ckpt", str(tiny_runs["uncond_ckpt"]), "--stats", stats, "--metrics", "prdc"],
                    "holds only mu and sigma")
    _one_line_error(["--ckpt", str(tiny_runs["uncond_ckpt"]), "--protocol", "paper"],
                    "needs 10000 real images but synthetic train holds 128: use --protocol quick or --num-real 128")
    _one_line_error(["--ckpt", str(tiny_runs["uncond_ckpt"]), "--images", imgs], "give either --ckpt")
    Image.new("RGB", (8, 8)).save(tmp_path / "one.png")
    (tmp_path / "dir").mkdir()
    _one_line_error(["--images", str(tmp_path / "dir"), "--stats", stats], "no image files found")
    np.savez(tmp_path / "bad.npz", x=np.zeros((3, 8, 8), np.uint8))
    _one_line_error(["--images", str(tmp_path / "bad.npz"), "--stats", stats], "must be uint8 (N, H, W, 3)")
    _one_line_error(["--images", stats, "--stats", stats], "a statistics file (mu, sigma) goes to --stats")


def test_counts_are_taken_from_what_is_there_and_said_before_the_network_loads(offline_hub, tmp_path):
    np.savez(tmp_path / "a.npz", arr_0=np.zeros((20, 8, 8, 3), np.uint8))
    np.savez(tmp_path / "b.npz", arr_0=np.zeros((30, 8, 8, 3), np.uint8))
    result = runner.invoke(app, ["eval", "--images", str(tmp_path / "a.npz"), "--ref", str(tmp_path / "b.npz"),
                                 "--protocol", "paper", "--device", "cpu"])
    assert "--images holds 20 images and protocol paper scores 50000: scoring all 20" in result.output
    assert "--ref holds 30 images and protocol paper takes 10000 real: taking all 30" in result.output
    assert result.exit_code == 1 and "pt_inception" in result.output  # offline: the weights are the next thing


@pytest.mark.slow
def test_two_folders_score_with_counts_taken_from_what_is_there(tiny_runs, stand_in_inception, tmp_path):
    """`eval --images A --ref B` without counts scores all of A against all of B, saying so (as `pytorch-fid A B`),
    and `stats --images B` writes the statistics that give the same FID through --stats."""
    weights, _ = stand_in_inception
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "a.npz", x=rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8))
    for k in range(8):
        (tmp_path / "real" / f"c{k % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "real" / f"c{k % 2}" /
                                                                              f"{k}.png")
    common = ["--protocol", "quick", "--splits", "2", "--device", "cpu", "--no-progress", "--inception-weights",
              str(weights)]
    result = runner.invoke(app, ["eval", "--images", str(tmp_path / "a.npz"), "--ref", str(tmp_path / "real"),
                                 *common, "--json", str(tmp_path / "r.jsonl")])
    assert result.exit_code == 0, result.output
    assert "--images holds 6 images and protocol quick scores 5000: scoring all 6" in result.output
    by_ref = json.loads((tmp_path / "r.jsonl").read_text())
    assert by_ref["num_generated"] == by_ref["fid_generated"] == 6 and by_ref["num_real"] == 8
    result = runner.invoke(app, ["stats", "--images", str(tmp_path / "real"), "--out", str(tmp_path / "real.npz"),
                                 "--device", "cpu", "--inception-weights", str(weights)])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "8" in result.output
    result = runner.invoke(app, ["eval", "--images", str(tmp_path / "a.npz"), "--stats", str(tmp_path / "real.npz"),
                                 *common, "--json", str(tmp_path / "s.jsonl")])
    assert result.exit_code == 0, result.output
    by_stats = json.loads((tmp_path / "s.jsonl").read_text())
    assert by_stats["metrics"]["fid6_real8"] == pytest.approx(by_ref["metrics"]["fid6_ref8"], rel=1e-6)
    result = runner.invoke(app, ["stats", "--images", str(tmp_path / "real"), "--out", str(tmp_path / "x.npz"),
                                 "--config", "configs/demo.yaml"])
    assert result.exit_code == 1 and "give either --config CONFIG (a dataset) or --images PATH" in result.output


def test_stats_refuses_a_cached_file_without_its_record_and_writes_nothing(stand_in_inception, tmp_path):
    from tests.helpers import write_config

    weights, _ = stand_in_inception
    config = write_config(tmp_path / "c.yaml", {"data": {"name": "synthetic", "num_images": 6}})
    args = ["stats", "--config", str(config), "--inception-weights", str(weights), "--device", "cpu",
            "--set", f"data.cache_dir={tmp_path / 'cache'}"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "first.npz")])
    assert result.exit_code == 0, result.output
    [cached] = (tmp_path / "cache").rglob("*.npz")
    with np.load(cached) as raw:
        mu, sigma = raw["mu"], raw["sigma"]
    with open(cached, "wb") as fh:  # what another tool writes: mu and sigma, no record of how they were made
        np.savez(fh, mu=mu, sigma=sigma)
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "second.npz")])
    assert result.exit_code == 1
    assert "carry no record of what they were computed from; delete the file to rebuild it" in result.output
    assert not (tmp_path / "second.npz").exists()


def test_images_scored_without_any_reference_is_one_line_before_the_network_loads(tmp_path):
    from sngan.errors import MetricError
    from sngan.evaluation.command import evaluate_images
    from sngan.evaluation.images import open_images
    from sngan.evaluation.protocols import make_protocol

    (tmp_path / "fake").mkdir()
    for k in range(2):
        Image.fromarray(np.full((8, 8, 3), 40 * k, np.uint8)).save(tmp_path / "fake" / f"{k}.png")
    with pytest.raises(MetricError, match="give --stats FILE or --ref PATH"):
        evaluate_images(open_images(tmp_path / "fake"), make_protocol("quick"), stats=None, ref_images=None,
                        batch_size=2, weights=tmp_path / "absent.pth", device="cpu", log=print)


def test_an_export_manifest_naming_files_outside_its_folder_is_not_followed(tmp_path):
    from sngan.evaluation.images import _listed_files

    folder = tmp_path / "export"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "00000.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "outside.png")
    for files in ([{"file": "../outside.png"}], [{"file": str(tmp_path / "outside.png")}], {}, "[" * 100_000):
        text = files if isinstance(files, str) else json.dumps({"files": files} if isinstance(files, list) else files)
        (folder / "manifest.json").write_text(text)
        assert _listed_files(folder, (".png",)) == [folder / "00000.png"]
