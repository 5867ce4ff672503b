"""The data sources `data.name` can name, one class each: every fact about a source is decided here.

A `Dataset` says which `data.split` values the source has, whether it is packed into the uint8 cache (all but
`synthetic`, which is drawn on the fly) or downloaded into `data.root`, where its packed sets live by default, how
its reference statistics are tagged, and which class in `sngan.data` reads its images (`reader`, a dotted path, so
this module stays free of torch and `sngan.config` can check `data.name` and `data.split` before torch loads).
A new dataset is one subclass here, registered with `register`, plus its reader.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, ClassVar

from sngan.errors import DataError

STL10_SPLITS = ("unlabeled", "train", "test", "train+unlabeled")
SPLIT_LABEL_CHARS = 32  # a folder's name in metric names is cut to this many characters
CACHE_FOLDER = "sngan-cache"  # the default home of packed sets; an image tree's listing skips a folder of this name


class Dataset:
    """What sngan knows of one source. `cfg` arguments are the `data` config section (`sngan.config.DataConfig`)."""

    name: ClassVar[str]
    splits: ClassVar[tuple[str, ...]] = ("train",)  # one entry: one set of images (data.split must be train)
    packed: ClassVar[bool] = True  # decoded once into the uint8 cache (`sngan.data.cache`)
    downloads: ClassVar[bool] = False  # fetched into data.root when absent (data.download on)
    reader: ClassVar[str] = ""  # "module:Class" of the reader in sngan.data (packed sources)

    def split_help(self) -> str:
        """How `data.split` reads for this source, for the config reference."""
        return "|".join(self.splits) if len(self.splits) > 1 else "train only (one set of images)"

    def check_split(self, split: str) -> None:
        """Refuse a `data.split` this source does not have (checked before any work: a wrong split is never
        ignored)."""
        if split in self.splits:
            return
        if len(self.splits) == 1:
            raise DataError(f"data.split must be train for {self.name}, got {split!r} (one set of images, no other "
                            f"split)")
        raise DataError(f"data.split must be {' or '.join(self.splits)} for {self.name}, got {split!r}")

    def cache_root(self, cfg: Any) -> Path:
        """The folder that holds this source's packed sets: data.cache_dir, else beside its files (a downloading
        source's own folder; next to an image tree, never inside it)."""
        if cfg.cache_dir:
            return Path(cfg.cache_dir)
        root = Path(cfg.root)
        return root / CACHE_FOLDER if self.downloads else root.resolve().parent / CACHE_FOLDER

    def cache_tag(self, cfg: Any) -> str:
        """The middle of a packed set's folder name, `<name>-<tag>-<R>px-<key>`: the split, file-name safe."""
        return cfg.split.replace("+", "-")

    def stats_tag(self, cfg: Any, seed: int) -> str:
        """A file-name-safe name of the images, for cached reference statistics."""
        return self.name

    def split_label(self, cfg: Any) -> str:
        """What reference statistics and metric names call the images (`fid5k_train10k`): the split."""
        return cfg.split

    def known_size(self, cfg: Any) -> int | None:
        """How many images the source holds, when known without reading it."""
        return None

    def root_problem(self, cfg: Any) -> str | None:
        """Why training could not read this source at data.root, from a look at the folder alone (no listing of
        a large tree, no download: what `--dry-run` checks), or None."""
        return None


class Synthetic(Dataset):
    """Built-in procedural shapes, drawn for a count and a seed, never cached."""

    name = "synthetic"
    packed = False

    def stats_tag(self, cfg: Any, seed: int) -> str:
        return f"synthetic{cfg.num_images}-seed{seed}"

    def known_size(self, cfg: Any) -> int | None:
        return cfg.num_images


class Cifar10(Dataset):
    name = "cifar10"
    splits = ("train", "test")
    downloads = True
    reader = "sngan.data.sources:Cifar10Source"


class Stl10(Dataset):
    name = "stl10"
    splits = STL10_SPLITS
    downloads = True
    reader = "sngan.data.sources:Stl10Source"


class ImageFolder(Dataset):
    """An image tree (one class per sub-folder) or a flat folder of images."""

    name = "folder"
    reader = "sngan.data.files:FolderSource"

    def root_problem(self, cfg: Any) -> str | None:
        root = Path(cfg.root)
        if root.is_dir() and any(os.scandir(root)):
            return None
        why = "is not a folder" if not root.is_dir() else "is empty"
        return f"data.root '{root}' {why}: {self.name} needs its images there (one sub-folder per class)"

    def cache_tag(self, cfg: Any) -> str:
        """A folder has no split: its packed sets are named after the folder."""
        return Path(cfg.root).resolve().name or "root"

    def split_label(self, cfg: Any) -> str:
        """A folder has no split: its images are called by the folder's name, letters and digits only (a folder
        `cifar10/test` gives `fid5k_test10k`), never `train` by default."""
        return folder_label(Path(cfg.root))

    def stats_tag(self, cfg: Any, seed: int) -> str:
        """A folder is named by its absolute path (its last part and a hash of the whole)."""
        path = Path(cfg.root).resolve()
        return f"{self.name}-{path.name}-{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"


class ImageNet(ImageFolder):
    """An ILSVRC2012 train tree, preprocessed as the authors'."""

    name = "imagenet"
    reader = "sngan.data.files:ImageNetSource"


def folder_label(path: Path) -> str:
    """A folder's name as a metric-name part: letters and digits only, at most SPLIT_LABEL_CHARS ('folder' if none)."""
    return re.sub(r"[^A-Za-z0-9]", "", path.resolve().name)[:SPLIT_LABEL_CHARS] or "folder"


MAX_CLASS_NAME = 200  # characters of one class name


def class_name_problem(names: object) -> str | None:
    """Why `names` is not a usable list of class names, naming the first bad one (as `ascii` writes it, so the
    message is one line whatever the name holds), or None. Names are text (str; bytes are decoded where they are
    read), non-empty, printable (no newline, tab or other control character, no undecodable byte of a file name:
    Python keeps those as surrogates, which are not printable), at most MAX_CLASS_NAME characters, and unique. A
    name that passes can be written into a log line, a folder name or a metric record without forging anything."""
    if not isinstance(names, (list, tuple)):
        return f"class names must be a list of text, got {type(names).__name__}"
    seen: set[str] = set()
    for k, name in enumerate(names):
        if not isinstance(name, str):
            return f"class name {k} must be text, got {type(name).__name__} {ascii(name)[:80]}"
        why = ("is empty" if not name else f"is longer than {MAX_CLASS_NAME} characters" if len(name) > MAX_CLASS_NAME
               else "holds a control character or an undecodable byte" if not name.isprintable()
               else "repeats an earlier name" if name in seen else None)
        if why:
            return f"class name {k} {ascii(name)[:80]} {why}"
        seen.add(name)
    return None


def class_name_text(name: object) -> object:
    """A class name read from a file as text: bytes (a CIFAR-10 pickle written by Python 3 with bytes names) are
    decoded as UTF-8 (latin-1 when that fails, as numpy reads Python 2 strings); anything else is left to
    `class_name_problem`."""
    if isinstance(name, (bytes, bytearray)):
        try:
            return bytes(name).decode("utf-8")
        except UnicodeDecodeError:
            return bytes(name).decode("latin-1")
    return name


DATASETS: dict[str, Dataset] = {}  # data.name -> its source (config checks the name first: a KeyError is a bug)


def register(cls: type[Dataset]) -> type[Dataset]:
    """Make `cls` a value of `data.name` (usable as a class decorator)."""
    DATASETS[cls.name] = cls()
    return cls


for _cls in (Synthetic, ImageFolder, Cifar10, Stl10, ImageNet):
    register(_cls)

