"""Sources read through the real torchvision loaders and the image-folder / ImageNet preprocessing."""

import numpy as np
import pytest
import torch
from torchvision.transforms.functional import resize

from sngan.config import DataConfig
from sngan.data import prepare
from sngan.errors import DataError
from tests.data_fakes import (
    CIFAR_CLASSES,
    register_cifar10_md5,
    register_stl10_md5,
    write_cifar10,
    write_image,
    write_stl10,
)


def test_cifar10_python_batches_are_packed_exactly(tmp_path, monkeypatch):
    images, labels = write_cifar10(tmp_path / "c10")
    register_cifar10_md5(monkeypatch, tmp_path / "c10")
    packed = prepare(DataConfig(name="cifar10", root=str(tmp_path / "c10"), download=False), 32, progress=False)
    assert packed.images.shape == (20, 32, 32, 3) and packed.classes == tuple(CIFAR_CLASSES)
    assert np.array_equal(packed.images, images) and np.array_equal(packed.labels, labels)
    assert packed.manifest["per_class"] == np.bincount(labels, minlength=10).tolist()


def test_cifar10_absent_offline_names_the_file_and_folder(tmp_path):
    with pytest.raises(DataError, match="cifar-10-python.tar.gz and extract it there.*cifar-10-batches-py"):
        prepare(DataConfig(name="cifar10", root=str(tmp_path / "none"), download=False), 32, progress=False)
    with pytest.raises(DataError, match="CIFAR-10 images are 32x32 but model.resolution is 48"):
        prepare(DataConfig(name="cifar10", root=str(tmp_path), download=False), 48, progress=False)


def test_stl10_unlabeled_is_resized_to_48_with_antialiasing(tmp_path, monkeypatch):
    raw = write_stl10(tmp_path / "stl")
    register_stl10_md5(monkeypatch, tmp_path / "stl")
    packed = prepare(DataConfig(name="stl10", root=str(tmp_path / "stl"), split="unlabeled", download=False), 48,
                     progress=False)
    assert packed.images.shape == (5, 48, 48, 3) and packed.classes == ("unlabeled",)
    expected = resize(torch.from_numpy(raw["unlabeled"]).permute(0, 3, 1, 2), [48, 48], antialias=True)
    assert np.array_equal(packed.images, expected.permute(0, 2, 3, 1).numpy())
    assert packed.images[:, :24].mean() < packed.images[:, 24:].mean() / 2  # dark top half stayed on top


def test_stl10_train_split_keeps_its_ten_classes(tmp_path, monkeypatch):
    write_stl10(tmp_path / "stl")
    register_stl10_md5(monkeypatch, tmp_path / "stl")
    packed = prepare(DataConfig(name="stl10", root=str(tmp_path / "stl"), split="train", download=False), 48,
                     progress=False)
    assert packed.classes == tuple(CIFAR_CLASSES) and packed.labels.tolist() == [0, 1, 2, 3, 4, 5]
    with pytest.raises(DataError, match="stl10_binary.tar.gz and extract it"):
        prepare(DataConfig(name="stl10", root=str(tmp_path / "x"), download=False), 48, progress=False)


def test_imagenet_tree_gets_the_authors_preprocessing(tmp_path):
    root = tmp_path / "imagenet" / "train"
    write_image(root / "n02" / "wide.png", (512, 256), (255, 0, 0), split_colour=(0, 0, 255))
    write_image(root / "n02" / "tall.jpg", (256, 600), (0, 255, 0))
    write_image(root / "n01" / "small.png", (300, 200))  # a side < 256: dropped, as preprocess.sh
    write_image(root / "n01" / "ok.png", (256, 256), (10, 20, 30))
    (root / "n01" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    packed = prepare(DataConfig(name="imagenet", root=str(root)), 128, progress=False)
    assert packed.classes == ("n01", "n02") and packed.labels.tolist() == [0, 1, 1]
    assert packed.images.shape == (3, 128, 128, 3)
    assert packed.manifest["dropped"] == {"side < 256": 1} and packed.manifest["skipped_count"] == 1
    assert "n01/broken.jpg" in packed.manifest["skipped"][0]
    wide = packed.images[2]  # files sort by name within a class: n01/ok, n02/tall, n02/wide
    assert tuple(wide[64, 4]) == (255, 0, 0) and tuple(wide[64, 123]) == (0, 0, 255)  # centre crop of 512x256
    assert np.abs(packed.images[1][0, 0].astype(int) - (0, 255, 0)).max() <= 3  # JPEG: nearly exact
    assert tuple(packed.images[0][5, 5]) == (10, 20, 30)
    assert any("dropped (side < 256)" in n for n in packed.notes)
    assert any("unreadable" in n for n in packed.notes)
