"""issue 30 section 5: class names in the checkpoint, in export folders, in --class/--classes and in the dataset line.

The tiny conditional run trains on the synthetic source, whose labels are 0=circle, 1=square, 2=triangle (written out
here, not read from the package), so a name attached to the wrong index fails these tests.
"""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from sngan.checkpoint import class_names, load_checkpoint
from sngan.config import load_config
from sngan.data import ImageSet, load_images
from sngan.errors import CheckpointError
from sngan.sample.generate import generate, latents, load_generator
from sngan.sample.writers import class_folders, to_uint8
from tests.helpers import write_config
from tests.test_sampling import ok, sample

NAMES = ["circle", "square", "triangle"]  # the synthetic source's labels 0, 1, 2


def _without_names(ckpt, path):
    """A copy of `ckpt` as written before class names were stored."""
    state = torch.load(ckpt, weights_only=True)
    del state["class_names"]
    torch.save(state, path)
    return path


def test_checkpoints_store_the_dataset_class_names_as_plain_strings(tiny_runs):
    assert load_checkpoint(tiny_runs["cond_ckpt"])["class_names"] == NAMES
    assert load_checkpoint(tiny_runs["uncond_ckpt"])["class_names"] == []


def test_a_checkpoint_without_names_gets_numeric_names_and_bad_names_are_refused(tiny_runs, tmp_path):
    old = load_checkpoint(_without_names(tiny_runs["cond_ckpt"], tmp_path / "old.pt"))
    assert class_names(old, 3) == ["0", "1", "2"]
    for bad, why in ((["a", "b"], "holds 2 names"), (["a", "a", "b"], "repeats"), ([1, 2, 3], "list of strings")):
        with pytest.raises(CheckpointError, match=why):
            class_names({**old, "class_names": bad}, 3)


def test_class_by_name_gives_that_label_and_the_same_images_as_its_index(tiny_runs, tmp_path):
    ckpt = tiny_runs["cond_ckpt"]
    ok(sample(ckpt, tmp_path / "name.npz", "--class", "triangle", "--num", 3, "--seed", 1))
    ok(sample(ckpt, tmp_path / "index.npz", "--class", 2, "--num", 3, "--seed", 1))
    ok(sample(ckpt, tmp_path / "rows.npz", "--classes", "square,circle", "--num", 2))
    with np.load(tmp_path / "name.npz") as a, np.load(tmp_path / "index.npz") as b:
        assert a["y"].tolist() == [2, 2, 2]
        np.testing.assert_array_equal(a["x"], b["x"])
    with np.load(tmp_path / "rows.npz") as rows:
        assert rows["y"].tolist() == [1, 1, 0, 0]
    ok(sample(ckpt, tmp_path / "case.npz", "--class", "Square", "--num", 1))
    with np.load(tmp_path / "case.npz") as case:
        assert case["y"].tolist() == [1]
    bad = sample(ckpt, tmp_path / "bad.npz", "--class", "hexagon")
    assert bad.exit_code == 1 and "no class named 'hexagon'" in bad.output and "circle, square, triangle" in bad.output
    assert not (tmp_path / "bad.npz").exists()


def test_folder_export_names_class_folders_and_holds_that_class_images(tiny_runs, tmp_path):
    folder = tmp_path / "cls"
    ok(sample(tiny_runs["cond_ckpt"], folder, "--classes", "triangle,circle", "--num", 2, "--seed", 7))
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png")) == \
        ["circle/00002.png", "circle/00003.png", "triangle/00000.png", "triangle/00001.png"]
    generator, _ = load_generator(tiny_runs["cond_ckpt"])
    z, y = latents(4, generator.z_dim, 3, 7, torch.tensor([2, 2, 0, 0]))
    expected = to_uint8(generate(generator, z, y)).numpy()
    for i, rel in enumerate(["triangle/00000.png", "triangle/00001.png", "circle/00002.png", "circle/00003.png"]):
        np.testing.assert_array_equal(np.asarray(Image.open(folder / rel)), expected[i])
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["classes"] == [{"index": k, "name": n, "folder": n} for k, n in enumerate(NAMES)]


def test_an_old_checkpoint_exports_numbered_class_folders(tiny_runs, tmp_path):
    old = _without_names(tiny_runs["cond_ckpt"], tmp_path / "old.pt")
    ok(sample(old, tmp_path / "out", "--class", 1, "--num", 2))
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")) == \
        ["00001/00000.png", "00001/00001.png"]
    assert sample(old, tmp_path / "x.npz", "--class", "square").exit_code == 1


def test_class_folders_are_safe_and_sort_in_label_order():
    assert class_folders(["cat", "dog"]) == ["cat", "dog"]
    assert class_folders(["0", "1", "10"]) == ["00000", "00001", "00010"]
    assert class_folders(["../etc", "b c", ""]) == ["00000__etc", "00001_b_c", "00002_00002"]  # "00002" < "_etc"
    assert class_folders(["dog", "cat"]) == ["00000_dog", "00001_cat"]  # ImageFolder would swap the labels
    assert class_folders(["a/b", "a:b"]) == ["00000_a_b", "00001_a_b"]  # two names that clean alike
    assert all(len(name) <= 64 for name in class_folders(["x" * 500]))


def test_dataset_line_maps_indices_to_names_and_stays_short_for_imagenet():
    images = np.zeros((4, 2, 2, 3), np.uint8)
    line = ImageSet(images, np.array([0, 1, 1, 2]), ("airplane", "bird", "cat")).summary()
    assert line.startswith("dataset: 4 images 2x2, 3 classes (0 airplane, 1 bird, 2 cat), per class min 1 max 2")
    many = ImageSet(images, np.array([0, 1, 2, 3]), tuple(f"n{k:08d}" + "x" * 100 for k in range(1000))).summary()
    assert "0 n00000000" in many and "9 n00000009" in many and "10 n" not in many and "990 more" in many
    assert len(many) < 700


def test_empty_class_folders_are_named_in_the_dataset_line(tmp_path):
    for cls in ("ant", "bee", "cat"):
        (tmp_path / "data" / cls).mkdir(parents=True)
    for cls in ("ant", "cat"):
        Image.new("RGB", (40, 40), "red").save(tmp_path / "data" / cls / "0.png")
    cfg = load_config(write_config(tmp_path / "c.yaml"), ["data.name=folder", f"data.root={tmp_path / 'data'}",
                                                          f"data.cache_dir={tmp_path / 'cache'}"])
    image_set = load_images(cfg.data, 32, seed=0, log=lambda _: None)
    assert image_set.classes == ("ant", "cat")
    assert "1 empty class folder left out (bee): the 2 classes are numbered without it" in image_set.summary()
