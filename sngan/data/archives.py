"""CIFAR-10 and STL-10 read from the files a user has, extracted or still in the official `.tar.gz`.

We read the files ourselves (as StyleGAN2-ADA's dataset tool does) instead of through torchvision's loaders, whose
md5 check of every file reports any copy that is not byte for byte the official one (re-pickled, repacked) as
"not found or corrupted". Here:

- the md5 of each file is compared with the official one and a difference is a *notice*, never a refusal;
- what makes the data usable is checked instead: array shapes, dtypes, label ranges, and images matching labels;
  a count that differs from the official split is a notice too (subsets are legitimate);
- "absent" (no folder and no archive: download, or say where to place the files) is told apart from "present but
  unreadable" (a missing batch, a truncated file, a pickle that is not a CIFAR-10 batch: the file and the reason).

CIFAR-10 (`cifar-10-batches-py/` or `cifar-10-python.tar.gz`): pickled dicts with `data` uint8 (N, 3072) rows
in CHW order and `labels` (N,) in 0..9, `batches.meta` with `label_names`. The pickles are data, so they are
loaded with `SafeUnpickler`, which resolves only the few callables that rebuild a numpy array; anything else in
the file (a pickle can call any importable function) refuses it.

STL-10 (`stl10_binary/` or `stl10_binary.tar.gz`): `<split>_X.bin` uint8 images of 3x96x96 stored column-major
(each image is (C, W, H) in C order), `<split>_y.bin` uint8 labels 1..10, optional `class_names.txt`.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sngan.datasets import class_name_problem, class_name_text
from sngan.errors import DataError
from sngan.io import open_input

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_SPLITS = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
CIFAR10_BATCH = 10000  # images per official batch file
CIFAR10_MD5 = {  # the official files (as torchvision lists them)
    "data_batch_1": "c99cafc152244af753f735de768cd75f", "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751", "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb", "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
STL10_FOLDER = "stl10_binary"
STL10_ARCHIVE = "stl10_binary.tar.gz"
STL10_SIDE = 96
STL10_IMAGE_BYTES = 3 * STL10_SIDE * STL10_SIDE
STL10_COUNTS = {"train": 5000, "test": 8000, "unlabeled": 100000}
STL10_MD5 = {
    "train_X.bin": "918c2871b30a85fa023e0c44e0bee87f", "train_y.bin": "5a34089d4802c674881badbb80307741",
    "unlabeled_X.bin": "5242ba1fed5e4be9e1e742405eb56ca4", "test_X.bin": "7f263ba9f9e0b06b93213547f721ac82",
    "test_y.bin": "36f9794fa4beb8a2c72628de14fa638e",
}
MAX_PICKLE_BYTES = 64 << 20  # an official CIFAR-10 batch is 31 MB; anything far larger is not one


def _array_rebuilders() -> dict[tuple[str, str], object]:
    """The callables a pickled numpy array names, taken from numpy's own public `__reduce_ex__` (whatever module
    numpy keeps them in), under the module names that numpy 1.x and 2.x pickles use."""
    probe = np.zeros(1, np.uint8)
    reconstruct, frombuffer = probe.__reduce_ex__(2)[0], probe.__reduce_ex__(5)[0]
    allowed: dict[tuple[str, str], object] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core", "numpy._core"):
        allowed[(f"{module}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{module}.numeric", "_frombuffer")] = frombuffer
    allowed[("_codecs", "encode")] = __import__("codecs").encode  # Python 3 protocol-2 pickles of bytes
    return allowed


class SafeUnpickler(pickle.Unpickler):
    """An unpickler for data: only numpy array reconstruction may be named; any other global refuses the file."""

    _allowed = _array_rebuilders()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name} (a data file names only numpy array "
                                         f"reconstruction)") from None


def safe_unpickle(data: bytes) -> object:
    """Load a pickle of plain data and numpy arrays (Python 2 strings read as latin-1, as numpy needs)."""
    return SafeUnpickler(io.BytesIO(data), encoding="latin1").load()


@dataclass
class RawSplit:
    """Images of one split as read from the files, before any resize.

    Attributes:
        parts: (N_i, H, W, 3) uint8 arrays, in order (one per file or split part; views of the files' bytes, so
            a memory-mapped extracted file is never copied whole).
        labels: (sum N_i,) int64 in 0..K-1 (all 0 for unlabeled data).
        classes: class names in label order.
        notices: one line each: md5 differences, counts other than the official ones.
    """

    parts: list[np.ndarray]
    labels: np.ndarray
    classes: tuple[str, ...]
    notices: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    def images(self) -> np.ndarray:
        """All images as one (N, H, W, 3) array (a copy when there are several parts)."""
        return self.parts[0] if len(self.parts) == 1 else np.concatenate(self.parts)


class Files:
    """The named members of an extracted folder or of its `.tar.gz` (members read in one pass over the archive)."""

    def __init__(self, root: Path, folder: str, archive: str):
        self.folder, self.archive = root / folder, root / archive
        self.prefix = folder
        self.where = str(self.folder) if self.folder.is_dir() else str(self.archive)

    @property
    def present(self) -> bool:
        return self.folder.is_dir() or self.archive.is_file()

    def identity(self) -> list | None:
        """[name, size, mtime_ns] of the folder's files (or of the archive); None when absent."""
        if self.folder.is_dir():
            entries = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in self.folder.iterdir()
                             if e.is_file())
            return [list(e) for e in entries] or None
        if self.archive.is_file():
            stat = self.archive.stat()
            return [[self.archive.name, stat.st_size, stat.st_mtime_ns]]
        return None

    def read(self, names: list[str], optional: tuple[str, ...] = ()) -> dict[str, bytes | np.ndarray]:
        """The bytes of each of `names` (and of those of `optional` that exist); a missing name is refused.
        Files of an extracted folder come memory-mapped (uint8 arrays), members of an archive as bytes."""
        found: dict[str, bytes | np.ndarray] = {}
        wanted = set(names) | set(optional)
        try:
            if self.folder.is_dir():
                for name in wanted:
                    path = self.folder / name
                    if path.is_file():
                        size = path.stat().st_size
                        found[name] = np.memmap(path, dtype=np.uint8, mode="r") if size else b""
            else:
                with open_input(self.archive) as fh, tarfile.open(fileobj=fh, mode="r:gz") as tar:
                    for member in tar:
                        name = member.name.removeprefix("./").removeprefix(self.prefix + "/")
                        if member.isfile() and name in wanted and name not in found:
                            data = tar.extractfile(member)
                            assert data is not None  # a regular file's member
                            found[name] = data.read()
        except (OSError, EOFError, tarfile.TarError, __import__("zlib").error) as exc:
            raise DataError(f"'{self.where}' is present but unreadable ({type(exc).__name__}: {exc})") from None
        missing = [n for n in names if n not in found]
        if missing:
            raise DataError(f"'{self.where}' is present but unreadable: {', '.join(missing)} missing")
        return found


def _md5_notices(found: dict[str, bytes | np.ndarray], official: dict[str, str], where: str) -> list[str]:
    # numpy declares arrays' buffer protocol to type checkers for Python >= 3.12 only
    differ = [n for n in sorted(found)
              if n in official and hashlib.md5(found[n]).hexdigest() != official[n]]  # type: ignore[arg-type]
    if not differ:
        return []
    return [f"md5 of {', '.join(differ)} in {where} differs from the official file (read anyway; shapes and labels "
            f"checked)"]


def _cifar_batch(name: str, blob: bytes | np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 32, 32, 3) uint8, labels (N,) int64) of one CIFAR-10 batch pickle, checked."""
    def bad(why: str) -> DataError:
        return DataError(f"'{where}' is present but unreadable: {name} {why}")

    if len(blob) > MAX_PICKLE_BYTES:
        raise bad(f"is {len(blob)} bytes, not a CIFAR-10 batch")
    try:
        batch = safe_unpickle(bytes(blob))
    except Exception as exc:  # truncated, refused or malformed pickles all mean "not a batch"
        raise bad(f"is not a readable pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(batch, dict):
        raise bad(f"holds a {type(batch).__name__}, not a dict")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise bad(f"has no 'data'/'labels' (keys: {', '.join(map(str, batch)) or 'none'})")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise bad(f"'data' must be uint8 (N, 3072), got {getattr(data, 'dtype', type(data).__name__)} {shape}")
    labels = _cifar_labels(batch["labels"], bad)
    if labels.shape != (len(data),):
        raise bad(f"has {len(data)} images but {labels.size} labels")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels  # rows are CHW -> (N, H, W, C)


def _cifar_labels(raw: object, bad: Callable[[str], DataError]) -> np.ndarray:
    """(N,) int64 from a batch's 'labels': a list of Python or numpy integers, or an integer array, all in 0..9.
    Anything else is refused naming the first bad entry, before a conversion could truncate a float (0.5 -> 0) or
    overflow on a huge integer (2**70)."""
    values: np.ndarray | list | tuple
    if isinstance(raw, np.ndarray):
        if raw.ndim != 1 or raw.dtype.kind not in "iu":
            raise bad(f"'labels' must be integers 0..9, got a {raw.dtype} array of shape {raw.shape}")
        values = raw
    elif isinstance(raw, (list, tuple)):
        for k, label in enumerate(raw):
            if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= label <= 9:
                raise bad(f"'labels' must be integers 0..9, got {ascii(label)[:40]} ({type(label).__name__}) at "
                          f"index {k}")
        values = raw
    else:
        raise bad(f"'labels' must be a list of integers 0..9, got {type(raw).__name__}")
    if isinstance(values, np.ndarray) and len(values) and (int(values.min()) < 0 or int(values.max()) > 9):
        raise bad(f"has labels outside 0..9 (min {values.min()}, max {values.max()})")
    return np.asarray(values).astype(np.int64) if len(values) else np.zeros(0, np.int64)


def read_cifar10(root: Path, split: str) -> RawSplit:
    """CIFAR-10 `split` (train: data_batch_1..5, test: test_batch) from `root`, extracted or as the archive."""
    files = Files(root, CIFAR10_FOLDER, CIFAR10_ARCHIVE)
    names = CIFAR10_SPLITS[split]
    found = files.read(names, optional=("batches.meta",))
    notices = _md5_notices(found, CIFAR10_MD5, files.where)
    batches = [_cifar_batch(n, found[n], files.where) for n in names]
    labels = np.concatenate([b[1] for b in batches])
    counts = [len(b[1]) for b in batches]
    if any(c != CIFAR10_BATCH for c in counts):
        notices.append(f"CIFAR-10 {split}: {len(labels)} images ({'+'.join(map(str, counts))}), not the official "
                       f"{CIFAR10_BATCH * len(names)}")
    return RawSplit([b[0] for b in batches], labels, _cifar_classes(found, files.where, notices), notices)


def _cifar_classes(found: dict[str, bytes | np.ndarray], where: str, notices: list[str]) -> tuple[str, ...]:
    """The class names of batches.meta as text (bytes names, as a Python 3 re-save writes them, decoded), checked
    (`class_name_problem`); the official names when the file is absent or holds no 10 names."""
    if "batches.meta" not in found:
        return CIFAR10_CLASSES
    try:
        meta = safe_unpickle(bytes(found["batches.meta"]))
        listed = meta.get("label_names", meta.get(b"label_names", ())) if isinstance(meta, dict) else ()
        names_read = tuple(class_name_text(n) for n in listed) if isinstance(listed, (list, tuple)) else ()
    except Exception:
        names_read = ()
    if len(names_read) != 10:
        notices.append("batches.meta has no 10 label_names; the official class names are used")
        return CIFAR10_CLASSES
    why = class_name_problem(list(names_read))
    if why:
        raise DataError(f"'{where}' is present but unreadable: batches.meta: {why}")
    return tuple(str(name) for name in names_read)  # strings: class_name_problem refuses anything else


def stl10_members(split: str) -> list[str]:
    """The files a split needs ('train+unlabeled' needs both parts)."""
    parts = split.split("+")
    return [f"{p}_X.bin" for p in parts] + [f"{p}_y.bin" for p in parts if p != "unlabeled"]


def _stl_images(name: str, blob: bytes | np.ndarray, where: str) -> np.ndarray:
    """(N, 96, 96, 3) uint8 view of an STL-10 `_X.bin` (stored (N, C, W, H))."""
    if len(blob) == 0 or len(blob) % STL10_IMAGE_BYTES:
        raise DataError(f"'{where}' is present but unreadable: {name} is {len(blob)} bytes, not a multiple of "
                        f"{STL10_IMAGE_BYTES} (one 3x96x96 image)")
    cwh = np.frombuffer(blob, dtype=np.uint8).reshape(-1, 3, STL10_SIDE, STL10_SIDE)  # (N, C, W, H)
    return cwh.transpose(0, 3, 2, 1)  # -> (N, H, W, C)


def read_stl10(root: Path, split: str) -> RawSplit:
    """STL-10 `split` (train, test, unlabeled, train+unlabeled) from `root`, extracted or as the archive.

    The unlabeled part carries no class: a split that contains it is one class named `unlabeled`."""
    files = Files(root, STL10_FOLDER, STL10_ARCHIVE)
    found = files.read(stl10_members(split), optional=("class_names.txt",))
    notices = _md5_notices(found, STL10_MD5, files.where)
    images, labels = [], []
    for part in split.split("+"):
        x = _stl_images(f"{part}_X.bin", found[f"{part}_X.bin"], files.where)
        if part == "unlabeled":
            y = np.zeros(len(x), np.int64)
        else:
            y = np.frombuffer(found[f"{part}_y.bin"], dtype=np.uint8).astype(np.int64)
            if len(y) != len(x):
                raise DataError(f"'{files.where}' is present but unreadable: {part}_X.bin holds {len(x)} images "
                                f"but {part}_y.bin {len(y)} labels")
            if y.min() < 1 or y.max() > 10:
                raise DataError(f"'{files.where}' is present but unreadable: {part}_y.bin has labels outside "
                                f"1..10 (min {y.min()}, max {y.max()})")
            y = y - 1
        if len(x) != STL10_COUNTS[part]:
            notices.append(f"STL-10 {part}: {len(x)} images, not the official {STL10_COUNTS[part]}")
        images.append(x)
        labels.append(y)
    if "unlabeled" in split:
        classes: tuple[str, ...] = ("unlabeled",)
        labels = [np.zeros(len(x), np.int64) for x in images]
    else:
        text = [line.strip() for line in bytes(found.get("class_names.txt", b"")).decode("utf-8", "replace")
                .splitlines() if line.strip()]
        classes = tuple(text) if len(text) == 10 else tuple(str(i) for i in range(10))
        why = class_name_problem(list(classes))
        if why:
            raise DataError(f"'{files.where}' is present but unreadable: class_names.txt: {why}")
    return RawSplit(images, np.concatenate(labels), classes, notices)

