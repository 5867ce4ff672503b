"""Each data source's facts come from its one class in `sngan.datasets`: the values typed here are what the cache
folders, statistics files and split checks were before the registry (so existing caches stay valid), and a source
registered in this test trains through the normal path without touching any other code."""

import hashlib
from pathlib import Path

import numpy as np
import pytest

from sngan import datasets
from sngan.config import DataConfig, load_config
from sngan.data import cache_root, load_images
from sngan.data.cache import check_data_root
from sngan.data.pack import PackResult
from sngan.errors import ConfigError, DataError
from sngan.metrics.stats import cache_path
from tests.helpers import write_config


def test_cache_folders_and_statistics_names_are_the_ones_existing_caches_use(tmp_path):
    tree = tmp_path / "pics" / "faces"
    cfg = {name: DataConfig(name=name, root=str(tree if name in ("folder", "imagenet") else tmp_path / "c"),
                            split={"stl10": "train+unlabeled"}.get(name, "train"), num_images=128)
           for name in ("synthetic", "cifar10", "stl10", "folder", "imagenet")}
    assert cache_root(cfg["cifar10"]) == tmp_path / "c" / "sngan-cache"  # a download folder keeps its cache
    assert cache_root(cfg["stl10"]) == tmp_path / "c" / "sngan-cache"
    assert cache_root(cfg["folder"]) == tmp_path / "pics" / "sngan-cache"  # next to an image tree, never inside
    assert cache_root(cfg["imagenet"]) == tmp_path / "pics" / "sngan-cache"
    assert cache_root(DataConfig(name="folder", root=str(tree), cache_dir=str(tmp_path / "x"))) == tmp_path / "x"
    tags = {name: datasets.DATASETS[name].cache_tag(c) for name, c in cfg.items() if name != "synthetic"}
    assert tags == {"cifar10": "train", "stl10": "train-unlabeled", "folder": "faces", "imagenet": "faces"}
    digest = hashlib.sha256(str(tree.resolve()).encode()).hexdigest()[:8]
    # statistics names changed on purpose with issue 38: they name the sampling rule (first-N caches are not reused)
    # and a folder's images are called by the folder's name, not 'train'
    labels = {name: datasets.DATASETS[name].split_label(c) for name, c in cfg.items()}
    assert labels == {"synthetic": "train", "cifar10": "train", "stl10": "train+unlabeled", "folder": "faces",
                      "imagenet": "faces"}
    names = {name: cache_path(Path("R"), c, 3, labels[name], None, 32, "NET").name for name, c in cfg.items()}
    assert names == {"synthetic": "synthetic128-seed3-train-32px-nall-strat-blake2b-v1-NET.npz",
                     "cifar10": "cifar10-train-32px-nall-strat-blake2b-v1-NET.npz",
                     "stl10": "stl10-train+unlabeled-32px-nall-strat-blake2b-v1-NET.npz",
                     "folder": f"folder-faces-{digest}-faces-32px-nall-strat-blake2b-v1-NET.npz",
                     "imagenet": f"imagenet-faces-{digest}-faces-32px-nall-strat-blake2b-v1-NET.npz"}


@pytest.mark.parametrize("name, good, bad, message", [
    ("cifar10", ["train", "test"], "unlabeled", "data.split must be train or test for cifar10, got 'unlabeled'"),
    ("stl10", ["unlabeled", "train", "test", "train+unlabeled"], "extra",
     "data.split must be unlabeled or train or test or train+unlabeled for stl10, got 'extra'"),
    ("synthetic", ["train"], "test", "data.split must be train for synthetic, got 'test' (one set of images, no "
                                     "other split)"),
    ("folder", ["train"], "test", "data.split must be train for folder, got 'test'"),
    ("imagenet", ["train"], "val", "data.split must be train for imagenet, got 'val'"),
])
def test_each_source_has_the_splits_it_has(name, good, bad, message):
    for split in good:
        datasets.DATASETS[name].check_split(split)
    with pytest.raises(DataError) as err:
        datasets.DATASETS[name].check_split(bad)
    assert str(err.value).startswith(message)


def test_the_split_help_says_what_each_source_takes():
    text = DataConfig.__dataclass_fields__["split"].metadata["help"]
    assert "cifar10 train|test" in text and "stl10 unlabeled|train|test|train+unlabeled" in text
    assert "synthetic train only (one set of images)" in text and "unused" not in text


class Stripes(datasets.Dataset):
    """A source made up in this test: horizontal stripes, one class per stripe width."""

    name = "stripes"
    reader = "tests.test_datasets:StripesReader"


class StripesReader:
    name, preprocessing = "stripes", "stripes-v1"

    def __init__(self, cfg, resolution):
        self.root, self.tag, self.resolution = Path(cfg.root), "all", resolution

    def identity(self):
        return "stripes"

    def fetch(self):
        return None

    def pack(self, open_writer, progress):
        images = np.zeros((8, self.resolution, self.resolution, 3), np.uint8)
        for i in range(8):
            images[i, :: 1 + i % 2] = 255  # widths 1 and 2 alternate
        writer = open_writer(8)
        writer.add(images, np.arange(8, dtype=np.int64) % 2)
        return PackResult(("thin", "wide"))


def test_a_new_source_is_one_class_and_trains_through_the_normal_path(tmp_path, monkeypatch):
    from sngan.train.loop import train

    with pytest.raises(ConfigError, match="data.name"):  # unknown until registered
        load_config(write_config(tmp_path / "a.yaml", {"data": {"name": "stripes"}}))
    monkeypatch.setitem(datasets.DATASETS, "stripes", Stripes())
    config = write_config(tmp_path / "b.yaml", {"data": {"name": "stripes", "root": str(tmp_path / "s" / "x")},
                                                "model": {"num_classes": 2}})
    cfg = load_config(config)
    assert check_data_root(cfg.data, 32) == []  # a folder-like source whose root need not exist: its reader says
    images = load_images(cfg.data, 32)
    assert images.classes == ("thin", "wide") and images.images.shape == (8, 32, 32, 3)
    assert (tmp_path / "s" / "sngan-cache").is_dir()  # the default placement of a non-downloading source
    ckpt = train(load_config(config, ["train.iterations=1", "train.ckpt_every=0"]), tmp_path / "run",
                 progress=False, log=lambda _: None)
    assert ckpt.is_file()
