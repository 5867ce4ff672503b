"""Issue 38 sections 1 and 2: which real images make FID's reference, whatever the file layout, and how generated
images become uint8.

The reference rule (docs/eval.md): class-stratified, each class its share of N by largest remainder, within a
class the images with the smallest blake2b-64 hash of their pixels. A feature network that returns the pixels
(mean colour per channel of a 32x32 image) lets the statistics be recomputed here from the images they must come
from; the class histogram is read from the record and recomputed from the features' own colours.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from sngan.config import DataConfig
from sngan.evaluation.images import open_images
from sngan.evaluation.reference import reference_stats, stats_of_images
from sngan.metrics.stats import SUBSET_RULE, class_shares
from sngan.sample.writers import to_uint8
from tests.data_fakes import CIFAR_CLASSES


class ColourNet(nn.Module):
    """Features = (B, 4): each channel's mean and the first pixel's red value, in 0..255 (so a class that colours
    its images can be read back)."""

    network, sha256, inception_input, features_key = "colour-net", "0" * 64, "tf1", "colour-net-tf1"

    def __init__(self):
        super().__init__()
        self.register_buffer("anchor", torch.zeros(1))

    def forward(self, images):  # (B, 3, H, W) in [0, 1]
        features = torch.cat([images.mean((2, 3)), images[:, :1, 0, 0]], 1) * 255
        return features, features[:, :3]


def class_images(per_class: list[int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random 32x32 images; image of class k has its first pixel's red = 20 k (the class is in the pixels)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(per_class)), per_class)
    images = rng.integers(0, 256, (len(labels), 32, 32, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = labels * 20
    return images, labels


def write_tree(root: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """A class-sorted folder tree of lossless PNGs, as a CIFAR-10 export to folders gives (sorted class names)."""
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / CIFAR_CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:05d}.png")
    return root


def write_batches(root: Path, images: np.ndarray, labels: np.ndarray, seed: int = 1) -> Path:
    """The same images as official CIFAR-10 python batches, shuffled (class-mixed, as the official files)."""
    order = np.random.default_rng(seed).permutation(len(labels))
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    parts = np.array_split(order, 5)
    for i, part in enumerate(parts, start=1):
        data = images[part].transpose(0, 3, 1, 2).reshape(len(part), -1)  # rows are CHW
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump({"data": data, "labels": [int(t) for t in labels[part]]}, f, protocol=2)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": images[:2].transpose(0, 3, 1, 2).reshape(2, -1), "labels": [0, 1]}, f, protocol=2)
    return root


def stats_of(cfg: DataConfig, num: int | None, log=lambda s: None):
    return reference_stats(cfg, 32, 0, cfg.split, num, ColourNet(), 17, log)


def test_a_class_sorted_folder_gives_every_class_its_share_of_the_reference(tmp_path):
    images, labels = class_images([30] * 10)
    root = write_tree(tmp_path / "train", images, labels)
    ref = stats_of(DataConfig(name="folder", root=str(root), cache_dir=str(tmp_path / "cache")), 50)
    # the split holds 10 classes of 30: a 50-image reference holds 5 of each, exactly (the old rule: 30, 20, 0, ...)
    assert ref.protocol["per_class"] == [5] * 10
    first_red = ref.mu[3] * 50  # the sum of the class marks 20 k over the reference
    assert first_red == pytest.approx(sum(20 * k * 5 for k in range(10)), abs=1e-6)
    assert SUBSET_RULE in ref.path.name and ref.protocol["subset_rule"] == SUBSET_RULE


def test_unequal_classes_are_sampled_within_one_image_of_their_share(tmp_path):
    per_class = [37, 5, 12, 40, 1, 0, 9, 23, 3, 20]  # 150 images; the empty folder is no class (9 classes)
    images, labels = class_images(per_class, seed=3)
    root = write_tree(tmp_path / "train", images, labels)
    ref = stats_of(DataConfig(name="folder", root=str(root), cache_dir=str(tmp_path / "cache")), 40)
    got = np.asarray(ref.protocol["per_class"])
    exact = 40 * np.asarray([n for n in per_class if n]) / sum(per_class)  # the split's histogram, scaled to 40
    assert got.sum() == 40 and np.abs(got - exact).max() < 1  # tolerance: one image per class (rounding)


def test_class_shares_follow_largest_remainder_typed_by_hand():
    # 7 of (5, 3, 2): quotas 3.5, 2.1, 1.4 -> floors 3, 2, 1 (6), one more to the largest remainder (0.5: class 0)
    assert class_shares(np.array([5, 3, 2]), 7).tolist() == [4, 2, 1]
    # equal remainders go to the lower class index: 2 of (1, 1, 1, 1) -> 0.5 each
    assert class_shares(np.array([1, 1, 1, 1]), 2).tolist() == [1, 1, 0, 0]


@pytest.mark.parametrize("num", [50, None])
def test_the_same_images_as_cifar_batches_and_as_a_folder_give_the_same_reference(tmp_path, num):
    images, labels = class_images([15] * 10, seed=5)
    tree = write_tree(tmp_path / "tree" / "train", images, labels)
    batches = write_batches(tmp_path / "batches", images, labels)
    from_tree = stats_of(DataConfig(name="folder", root=str(tree), cache_dir=str(tmp_path / "c1")), num)
    from_batches = stats_of(DataConfig(name="cifar10", root=str(batches), download=False,
                                       cache_dir=str(tmp_path / "c2")), num)
    assert from_tree.protocol["per_class"] == from_batches.protocol["per_class"]
    # the same images in the same (class, hash) order: the same sums in the same order, so the same bits
    np.testing.assert_array_equal(from_tree.mu, from_batches.mu)
    np.testing.assert_array_equal(from_tree.sigma, from_batches.sigma)
    # and they are the rule's images: recomputed here from the pixels
    if num is not None:
        chosen = []
        for k in range(10):
            members = np.flatnonzero(labels == k)
            key = [hashlib.blake2b(images[i].tobytes(), digest_size=8).digest() for i in members]
            chosen += [members[j] for j in sorted(range(len(members)), key=key.__getitem__)[:5]]
        expected = images[chosen].reshape(len(chosen), -1, 3).mean(1).astype(np.float64).mean(0)
        np.testing.assert_allclose(from_tree.mu[:3], expected, rtol=1e-5)


def test_a_cache_written_under_the_first_n_rule_is_not_reused(tmp_path):
    images, labels = class_images([10] * 10)
    root = write_tree(tmp_path / "train", images, labels)
    cfg = DataConfig(name="folder", root=str(root), cache_dir=str(tmp_path / "cache"))
    new = stats_of(cfg, 20)
    old_name = new.path.name.replace(f"-{SUBSET_RULE}", "")  # where the earlier rule cached the same request
    old = new.path.with_name(old_name)
    from sngan.metrics.stats import save_stats

    save_stats(old, np.zeros(4), np.eye(4), {"subset": "first N in dataset order"})
    new.path.unlink()
    lines = []
    again = stats_of(cfg, 20, lines.append)
    assert any("computing reference statistics" in line for line in lines)  # recomputed, not read from `old`
    assert again.protocol["per_class"] == [2] * 10 and not np.array_equal(again.mu, np.zeros(4))


def test_a_folder_named_test_is_labelled_test_not_train(tmp_path):
    images, labels = class_images([4] * 10)
    root = write_tree(tmp_path / "test", images, labels)
    ref = stats_of(DataConfig(name="folder", root=str(root), cache_dir=str(tmp_path / "cache")), None)
    assert ref.protocol["split"] == "test" and "-test-" in ref.path.name


def test_a_ref_folder_subset_is_stratified_by_its_class_folders(tmp_path):
    images, labels = class_images([12] * 10, seed=7)
    root = write_tree(tmp_path / "ref", images, labels)
    ref = stats_of_images(open_images(root), 30, ColourNet(), 8, progress=False)
    assert ref.protocol["per_class"] == [3] * 10  # the first 30 in path order would be 12, 12, 6, 0, ...
    assert ref.protocol["num_real"] == 30


def authors_gen_images(x: np.ndarray) -> np.ndarray:
    """The authors' `gen_images` quantisation (evaluation.py), as written there."""
    return np.asarray(np.clip(x * 127.5 + 127.5, 0.0, 255.0), dtype=np.uint8)


def test_truncate_quantises_exactly_as_the_authors_gen_images():
    rng = np.random.default_rng(0)
    levels = (np.arange(256, dtype=np.float32) - np.float32(127.5)) / np.float32(127.5)  # x at (or next to) k
    near = np.concatenate([levels, np.nextafter(levels, np.float32(-2)), np.nextafter(levels, np.float32(2))])
    x = np.concatenate([rng.uniform(-1.2, 1.2, 30000).astype(np.float32), near]).astype(np.float32)
    x = x[: len(x) // 3 * 3].reshape(-1, 3, 1, 1)  # (N, 3, 1, 1) images
    ours = to_uint8(torch.from_numpy(x), "truncate").numpy()  # (N, 1, 1, 3)
    np.testing.assert_array_equal(ours.transpose(0, 3, 1, 2), authors_gen_images(x))
    rounded = to_uint8(torch.from_numpy(x)).numpy().transpose(0, 3, 1, 2)
    differ = (rounded != authors_gen_images(x)).mean()
    assert 0.3 < differ < 0.7  # the two rules differ by one level on about half the values


def test_the_record_names_the_quantisation_of_each_protocol():
    from sngan.evaluation.protocols import QUANTISE, make_protocol

    assert make_protocol("paper").quantise == "truncate"
    assert make_protocol("paper", num_samples=100).quantise == "truncate"  # a modified paper protocol too
    assert make_protocol("quick").quantise == make_protocol("standard").quantise == "round"
    assert "gen_images" in QUANTISE["truncate"] and "ours" in QUANTISE["round"]
    assert dataclasses.replace(make_protocol("paper"), num_generated=10).quantise == "truncate"


def test_statistics_of_the_earlier_first_n_rule_are_named_in_a_warning():
    from sngan.evaluation.scoring import reference_warnings
    from sngan.metrics.stats import ReferenceStats

    old = ReferenceStats(np.zeros(2), np.eye(2), {"network": "x", "subset": "first N in dataset order"}, Path("o"))
    assert "earlier sngan from the first N in dataset order" in reference_warnings(old)[0]
    new = ReferenceStats(np.zeros(2), np.eye(2), {"network": "x", "subset": "s", "subset_rule": SUBSET_RULE})
    foreign = ReferenceStats(np.zeros(2), np.eye(2), None)  # pytorch-fid's files carry no record
    assert reference_warnings(new) == reference_warnings(foreign) == []


def test_a_ref_folders_classes_are_its_sub_folders_in_sorted_name_order(tmp_path):
    """Sub-folders c (3 images), a (1), b (2), written in that order: ImageFolder's numbering by sorted name gives
    a = 0, b = 1, c = 2, and files are read in sorted path order, so the labels are, by hand, 0, 1, 1, 2, 2, 2."""
    from tests.data_fakes import write_image

    for name, count in (("c", 3), ("a", 1), ("b", 2)):
        for i in range(count):
            write_image(tmp_path / "ref" / name / f"{i}.png", (8, 8), (10 * i, 20, 30))
    assert open_images(tmp_path / "ref").labels().tolist() == [0, 1, 1, 2, 2, 2]


def test_images_scored_under_a_protocol_give_fid_of_its_first_fid_generated_images_only(tmp_path):
    """`sngan eval --images` under a protocol with fewer FID images than IS images (the paper's 5,000 of 50,000):
    12 images, the first 6 dark and the last 6 bright, FID of the first 6. Against the mean and covariance of those 6
    images' ColourNet features computed here by hand from the pixels (channel means and the first red value, ddof=1),
    the FID is 0 up to float32 round-off of features below 255; all 12 would give about 44,000."""
    from sngan.evaluation.protocols import make_protocol
    from sngan.evaluation.scoring import score_images
    from sngan.metrics.stats import ReferenceStats

    rng = np.random.default_rng(0)
    images = np.concatenate([rng.integers(0, 100, (6, 8, 8, 3)), rng.integers(150, 256, (6, 8, 8, 3))]).astype(np.uint8)
    np.savez(tmp_path / "imgs.npz", x=images)
    first = images[:6].astype(np.float64)
    features = np.concatenate([first.mean(axis=(1, 2)), first[:, 0, 0, :1]], axis=1)  # (6, 4), by hand
    ref = ReferenceStats(features.mean(axis=0), np.cov(features, rowvar=False), None)
    protocol = dataclasses.replace(make_protocol("paper"), num_generated=12, splits=2, fid_generated=6)
    scores = score_images(open_images(tmp_path / "imgs.npz"), ColourNet(), protocol, ref, 5, progress=False)
    fid = next(v for k, v in scores.items() if k.startswith("fid"))
    assert abs(fid) < 1e-2
