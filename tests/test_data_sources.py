"""Sources read through the real torchvision loaders and the image-folder / ImageNet preprocessing."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.transforms.functional import resize

from sngan.config import DataConfig
from sngan.data import prepare
from sngan.errors import DataError
from tests.data_fakes import (
    CIFAR_CLASSES,
    archive,
    write_cifar10,
    write_image,
    write_stl10,
)


def _cifar(root, split="train"):
    return prepare(DataConfig(name="cifar10", root=str(root), split=split, download=False), 32, progress=False)


def _stl(root, split, resolution=48):
    return prepare(DataConfig(name="stl10", root=str(root), split=split, download=False), resolution,
                   progress=False)


@pytest.mark.parametrize("protocol", [2, 4])
def test_cifar10_python_batches_are_packed_exactly(tmp_path, protocol):
    images, labels = write_cifar10(tmp_path / "c10", protocol=protocol)
    packed = _cifar(tmp_path / "c10")
    assert packed.images.shape == (20, 32, 32, 3) and packed.classes == tuple(CIFAR_CLASSES)
    assert np.array_equal(packed.images, images) and np.array_equal(packed.labels, labels)
    assert packed.manifest["per_class"] == np.bincount(labels, minlength=10).tolist()
    # not the official bytes nor counts: said, not refused
    assert any("md5 of batches.meta, data_batch_1" in n and "differs from the official" in n for n in packed.notes)
    assert any("20 images (4+4+4+4+4), not the official 50000" in n for n in packed.notes)


def test_cifar10_archive_is_read_without_extracting_and_equals_the_folder(tmp_path):
    images, labels = write_cifar10(tmp_path / "c10")
    folder = _cifar(tmp_path / "c10", "test")
    archive(tmp_path / "c10" / "cifar-10-batches-py", "cifar-10-python.tar.gz")
    packed = _cifar(tmp_path / "c10")
    assert np.array_equal(packed.images, images) and np.array_equal(packed.labels, labels)
    assert not (tmp_path / "c10" / "cifar-10-batches-py").exists()  # nothing extracted
    from_tar = _cifar(tmp_path / "c10", "test")
    assert np.array_equal(from_tar.images, folder.images) and len(from_tar.images) == 4


def test_cifar10_present_but_unreadable_says_which_file_and_why(tmp_path):
    root = tmp_path / "c10"
    write_cifar10(root)
    batches = root / "cifar-10-batches-py"
    (batches / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"present but unreadable: data_batch_3 missing"):
        _cifar(root)
    with open(batches / "data_batch_3", "wb") as f:  # a pickle that would run a command when loaded
        pickle.dump({"data": np.zeros((1, 3072), np.uint8), "labels": [0], "x": print}, f)
    with pytest.raises(DataError, match=r"data_batch_3 is not a readable pickle .*refused global builtins.print"):
        _cifar(root)
    with open(batches / "data_batch_3", "wb") as f:
        pickle.dump({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}, f)
    with pytest.raises(DataError, match=r"data_batch_3 'labels' must be integers 0..9, got 10 \(int\) at index 1"):
        _cifar(root)
    with open(batches / "data_batch_3", "wb") as f:
        pickle.dump({"data": np.zeros((2, 32, 32, 3), np.uint8), "labels": [0, 1]}, f)
    with pytest.raises(DataError, match=r"'data' must be uint8 \(N, 3072\)"):
        _cifar(root)
    (batches / "data_batch_3").write_bytes(b"\x80\x02}q\x00(X")  # truncated
    with pytest.raises(DataError, match=r"data_batch_3 is not a readable pickle"):
        _cifar(root)
    (root / "broken").mkdir()
    (root / "broken" / "cifar-10-python.tar.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match=r"cifar-10-python.tar.gz' is present but unreadable"):
        _cifar(root / "broken")


def test_cifar10_absent_offline_names_the_file_and_folder(tmp_path):
    with pytest.raises(DataError, match="CIFAR-10 is absent under .*download is off.*as cifar-10-python.tar.gz "
                                        "\\(read as it is\\) or extract it there.*cifar-10-batches-py"):
        _cifar(tmp_path / "none")
    with pytest.raises(DataError, match="CIFAR-10 images are 32x32 but model.resolution is 48"):
        prepare(DataConfig(name="cifar10", root=str(tmp_path), download=False), 48, progress=False)


@pytest.mark.parametrize("as_archive", [False, True])
def test_stl10_column_major_files_give_upright_images_and_0_based_labels(tmp_path, as_archive):
    raw = write_stl10(tmp_path / "stl")
    if as_archive:
        archive(tmp_path / "stl" / "stl10_binary", "stl10_binary.tar.gz")
    packed = _stl(tmp_path / "stl", "train", resolution=96)
    assert np.array_equal(packed.images, raw["train"])  # exact: a transposed read fails here
    assert packed.labels.tolist() == raw["train_labels"].tolist() and packed.classes == tuple(CIFAR_CLASSES)
    assert any("STL-10 train: 6 images, not the official 5000" in n for n in packed.notes)
    both = _stl(tmp_path / "stl", "train+unlabeled", resolution=96)
    assert np.array_equal(both.images, np.concatenate([raw["train"], raw["unlabeled"]]))
    assert both.classes == ("unlabeled",) and set(both.labels.tolist()) == {0}


def test_stl10_unlabeled_is_resized_to_48_with_antialiasing(tmp_path):
    raw = write_stl10(tmp_path / "stl")
    packed = _stl(tmp_path / "stl", "unlabeled")
    assert packed.images.shape == (5, 48, 48, 3) and packed.classes == ("unlabeled",)
    expected = resize(torch.from_numpy(raw["unlabeled"]).permute(0, 3, 1, 2), [48, 48], antialias=True)
    assert np.array_equal(packed.images, expected.permute(0, 2, 3, 1).numpy())
    assert packed.images[:, :24].mean() < packed.images[:, 24:].mean() / 2  # dark top half stayed on top


def test_stl10_bad_files_are_refused_with_the_reason(tmp_path):
    write_stl10(tmp_path / "stl")
    folder = tmp_path / "stl" / "stl10_binary"
    (folder / "test_y.bin").write_bytes(bytes([1, 2]))
    with pytest.raises(DataError, match="test_X.bin holds 3 images but test_y.bin 2 labels"):
        _stl(tmp_path / "stl", "test")
    (folder / "test_y.bin").write_bytes(bytes([1, 0, 3]))
    with pytest.raises(DataError, match="test_y.bin has labels outside 1..10"):
        _stl(tmp_path / "stl", "test")
    (folder / "test_X.bin").write_bytes(bytes(100))
    with pytest.raises(DataError, match="test_X.bin is 100 bytes, not a multiple of 27648"):
        _stl(tmp_path / "stl", "test")
    with pytest.raises(DataError, match="STL-10 is absent under .*stl10_binary.tar.gz \\(read as it is\\) or "
                                        "extract it"):
        _stl(tmp_path / "x", "train")


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


def test_a_failed_download_leaves_no_folder_and_no_partial_archive(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    def offline(url, root, md5=None):  # what an interrupted download leaves: the folder and part of the file
        Path(root).mkdir(parents=True, exist_ok=True)
        (Path(root) / url.rsplit("/", 1)[-1]).write_bytes(b"\x1f\x8b partial")
        raise OSError("network unreachable")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    root = tmp_path / "data" / "cifar10"
    with pytest.raises(DataError, match="download failed"):
        prepare(DataConfig(name="cifar10", root=str(root), download=True), 32, progress=False)
    assert not (tmp_path / "data").exists()  # both folders it created are gone
    kept = tmp_path / "mine"
    kept.mkdir()
    (kept / "notes.txt").write_text("the user's")
    with pytest.raises(DataError, match="download failed"):
        prepare(DataConfig(name="cifar10", root=str(kept), download=True), 32, progress=False)
    assert sorted(p.name for p in kept.iterdir()) == ["notes.txt"]  # the partial archive removed, the rest kept


def _noise_image(width: int, height: int, seed: int):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_imagenet_transform_is_lanczos_256_imagemagick_centre_crop_then_bilinear():
    """The authors' preprocess.sh (`convert -resize 256x256^ -gravity center -crop 256x256+0+0`) and imresize
    (scipy's, which called PIL's bilinear resize), written here with the sizes worked by hand for a 512x300 image:
    the short side 300 -> 256 makes the width 512 * 256/300 = 436.9 -> 437 (ImageMagick rounds the geometry);
    ImageMagick's centre gravity offsets the crop by width/2 - 256/2 in integer arithmetic: 218 - 128 = 90."""
    from PIL import Image

    from sngan.data.files import imagenet_transform

    img = _noise_image(512, 300, seed=0)
    crop = img.resize((437, 256), Image.Resampling.LANCZOS).crop((90, 0, 346, 256))
    assert np.array_equal(imagenet_transform(img, 256), np.asarray(crop))
    small = crop.resize((128, 128), Image.Resampling.BILINEAR)
    assert np.array_equal(imagenet_transform(img, 128), np.asarray(small))
    assert imagenet_transform(_noise_image(256, 400, seed=1), 128).shape == (128, 128, 3)  # 256 is kept
    assert imagenet_transform(_noise_image(255, 400, seed=1), 128) == "side < 256"


def test_imagenet_transform_rounds_a_half_pixel_up_as_imagemagick():
    """A 513x512 image: 513 * 256/512 = 256.5 exactly, which ImageMagick's geometry (`floor(x + 0.5)`) makes 257, so
    `convert` resizes to 257x256 and crops at 257/2 - 128 = 0; rounding half to even would squash it to 256x256.
    The same for the tall image (512x513) and for the folder source's one rule (33x32 to 16: 16.5 -> 17)."""
    from PIL import Image

    from sngan.data.files import folder_transform, imagenet_transform

    wide = _noise_image(513, 512, seed=4)
    expected = wide.resize((257, 256), Image.Resampling.LANCZOS).crop((0, 0, 256, 256))
    assert np.array_equal(imagenet_transform(wide, 256), np.asarray(expected))
    tall = _noise_image(512, 513, seed=5)
    expected = tall.resize((256, 257), Image.Resampling.LANCZOS).crop((0, 0, 256, 256))
    assert np.array_equal(imagenet_transform(tall, 256), np.asarray(expected))
    small = _noise_image(33, 32, seed=6)
    expected = small.resize((17, 16), Image.Resampling.BILINEAR).crop((0, 0, 16, 16))
    assert np.array_equal(folder_transform(small, 16), np.asarray(expected))


def test_folder_transform_is_bilinear_short_side_then_centre_crop():
    """31x20 to 16: the short side 20 -> 16 makes the width 31 * 0.8 = 24.8 -> 25 (rounded, as the ImageNet
    path's ImageMagick geometry), and the centre crop starts at (25 - 16) // 2 = 4 (ImageMagick's integer
    centre); PIL's bilinear (antialiased when shrinking) written here with those hand-worked sizes."""
    from PIL import Image

    from sngan.data.files import folder_transform

    img = _noise_image(31, 20, seed=2)
    expected = img.resize((25, 16), Image.Resampling.BILINEAR).crop((4, 0, 20, 16))
    assert np.array_equal(folder_transform(img, 16), np.asarray(expected))
    tall = _noise_image(20, 30, seed=3)  # 20x30 -> 16x24, crop rows 4..19
    assert np.array_equal(folder_transform(tall, 16),
                          np.asarray(tall.resize((16, 24), Image.Resampling.BILINEAR).crop((0, 4, 16, 20))))
