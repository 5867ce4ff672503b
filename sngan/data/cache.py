"""The packed cache: a source is decoded once into `images.npy` (N, H, W, 3) uint8, `labels.npy` (N,) int64 and
`manifest.json`, then memory-mapped by every later run.

Where: `data.cache_dir`, or by default as the source's `sngan.datasets` class says: `<root>/sngan-cache` for a
downloading source (cifar10/stl10: their download folder) and a `sngan-cache` folder next to `<root>` for an image
tree (folder/imagenet: never inside it). Each packed set is a folder
`<source>-<split or folder name>-<R>px-<key>`, where the key hashes the source identity (file names, sizes and
modification times, or the listing of an image tree), the split, the resolution and the preprocessing version: when
any of them changes the key changes and the set is packed again (older folders are left in place, never deleted).
A folder is written under a temporary name and renamed when complete, so an interrupted pack leaves no half cache;
the staging folder is made, checked and renamed into place through a handle on the cache folder (`sngan.io.Folder`),
so a staging folder swapped for a link before the rename is refused, never published.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sngan.config import DataConfig
from sngan.data.pack import PackResult, PackWriter, Source
from sngan.data.sources import ArchiveSource, ImageSet, synthetic_shapes
from sngan.datasets import DATASETS, class_name_problem
from sngan.errors import DataError, SnganError
from sngan.io import MAX_MANIFEST_BYTES, Folder, open_regular, remove_dead_stages, stage_name

CACHE_FORMAT = 1  # the packed cache's layout (a checkpoint's is sngan.checkpoint.FORMAT_VERSION)
SKIPPED_LISTED = 20  # unreadable files named in the manifest (all are counted)


def cache_root(cfg: DataConfig) -> Path:
    """The folder that holds packed sets for this data config (`sngan.datasets.Dataset.cache_root`)."""
    return DATASETS[cfg.name].cache_root(cfg)


def open_source(cfg: DataConfig, resolution: int) -> Source:
    """The reader of a packed source (its `sngan.datasets` class names it)."""
    module, _, name = DATASETS[cfg.name].reader.partition(":")
    return getattr(importlib.import_module(module), name)(cfg, resolution)


def cache_key(source: Source, resolution: int, identity: object) -> str:
    """Hex sha256 over everything that makes a packed set what it is."""
    facts = {"format": CACHE_FORMAT, "source": source.name, "tag": source.tag, "resolution": resolution,
             "preprocessing": source.preprocessing, "identity": identity}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def _folder_name(source: Source, resolution: int, key: str) -> str:
    return f"{source.name}-{source.tag}-{resolution}px-{key[:16]}"


def open_packed(folder: Path) -> ImageSet:
    """Memory-map a packed set (read-only, copy-on-write) and check it against its manifest."""
    try:
        manifest = json.loads(open_regular(folder / "manifest.json", MAX_MANIFEST_BYTES))
        images = np.load(folder / "images.npy", mmap_mode="c")
        labels = np.load(folder / "labels.npy")
    except (OSError, ValueError, RecursionError, SnganError) as exc:
        raise DataError(f"packed cache '{folder}' is unreadable ({str(exc)[:200]}); delete that folder to pack "
                        f"again") from None
    if not _valid_manifest(manifest):
        raise DataError(f"packed cache '{folder}' has a manifest.json sngan did not write (missing or mistyped "
                        f"count, classes, skipped_count, dropped or notices); delete that folder to pack again")
    why = class_name_problem(manifest["classes"])
    if why:
        raise DataError(f"packed cache '{folder}' has a manifest.json sngan did not write ({why}); delete that "
                        f"folder to pack again")
    if images.shape[0] != manifest["count"] or labels.shape != (manifest["count"],):
        raise DataError(f"packed cache '{folder}' does not match its manifest; delete that folder to pack again")
    notes = [f"{manifest['skipped_count']} unreadable files skipped"] if manifest["skipped_count"] else []
    notes += [f"{n} dropped ({why})" for why, n in manifest["dropped"].items()]
    notes += manifest.get("notices", [])  # caches packed before notices existed have none
    return ImageSet(images, labels, tuple(manifest["classes"]), notes, manifest, folder)


def _valid_manifest(manifest: object) -> bool:
    """The keys `load_cached` reads, with their types (a hostile or hand-edited manifest is refused, not a
    KeyError)."""
    if not isinstance(manifest, dict):
        return False
    count, classes, dropped = manifest.get("count"), manifest.get("classes"), manifest.get("dropped")
    notices = manifest.get("notices", [])
    return (isinstance(count, int) and not isinstance(count, bool) and count >= 0
            and isinstance(classes, list) and all(isinstance(c, str) for c in classes)
            and isinstance(manifest.get("skipped_count"), int) and isinstance(dropped, dict)
            and all(isinstance(v, int) for v in dropped.values())
            and isinstance(notices, list) and all(isinstance(n, str) for n in notices))


def _write(source: Source, folder: Path, resolution: int, key: str, progress: bool) -> None:
    """Pack `source` into a temporary sibling of `folder`, then rename it into place."""
    parent = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        remove_dead_stages(folder.parent, folder.name)  # what a killed packer left
        parent = Folder.open(folder.parent, follow=True)  # the cache folder's handle: the stage is made and
        stage = parent.folder(stage_name(folder.name))  # renamed into place through it, never through a link
        tmp = stage.path
    except (OSError, SnganError) as exc:
        if parent is not None:
            parent.close()
        why = exc.strerror if isinstance(exc, OSError) else str(exc).rpartition(": ")[2]
        raise DataError(f"cannot write the packed cache under '{folder.parent}' ({why}): set "
                        f"data.cache_dir to a writable folder") from None
    writers: list[PackWriter] = []

    def open_writer(capacity: int) -> PackWriter:
        writers.append(PackWriter(tmp, capacity, resolution))
        return writers[-1]

    start = time.perf_counter()
    try:
        result: PackResult = source.pack(open_writer, progress)
        if not writers or writers[0].count == 0:
            raise DataError(f"data source '{source.name}' at '{source.root}' gave no usable images "
                            f"(unreadable or dropped)")
        writer = writers[0]
        count, content = writer.count, writer.finish()
        labels = np.load(tmp / "labels.npy")
        manifest = {
            "format_version": CACHE_FORMAT, "source": source.name, "root": str(Path(source.root).resolve()),
            "split": source.tag, "resolution": resolution, "preprocessing": source.preprocessing, "key": key,
            "count": count, "classes": list(result.classes),
            "per_class": np.bincount(labels, minlength=len(result.classes)).tolist(),
            "skipped_count": len(result.skipped), "skipped": result.skipped[:SKIPPED_LISTED],
            "dropped": result.dropped, "notices": result.notices, "content_sha256": content,
            "pack_seconds": round(time.perf_counter() - start, 2), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        stage.write("manifest.json", (json.dumps(manifest, indent=1) + "\n").encode())
        stage.check()  # the staging folder is still the one made here (numpy wrote its arrays by name)
        try:
            os.rename(stage.path.name, folder.name, src_dir_fd=parent.fd, dst_dir_fd=parent.fd)
        except OSError:
            if not (folder / "manifest.json").exists():  # another process did not finish the same set first
                raise
    except OSError as exc:  # disk full, permissions: one line, and no half-written cache is left behind
        raise DataError(f"packing into '{folder}' failed: {exc}") from None
    finally:
        stage.close()
        parent.remove_tree(stage.path.name)
        parent.close()


def check_data_root(cfg: DataConfig, resolution: int) -> list[str]:
    """What `sngan train --dry-run` checks of the data without reading it (no listing of a large tree, no
    download): DataError when training could not get its images; else notices (a download that training will
    attempt). A packed cache alone does not do: the cache is matched to the source's files (`cache_key`), so when
    the files are missing and a cache for this source is there, the message says so.

    Returns:
        Notice lines (empty when the files are in place).
    """
    kind = DATASETS[cfg.name]
    kind.check_split(cfg.split)
    if not kind.packed:
        return []
    root = Path(cfg.root)
    if kind.downloads:
        source = open_source(cfg, resolution)
        assert isinstance(source, ArchiveSource)  # the datasets that download are read from their archives
        if source.files.present:
            return []
        cached = _cached_folders(cfg, source.name, source.tag, resolution)
        if not cfg.download:
            raise DataError(f"{source.title} is absent under '{root}' (data.download is off): {source.place()}"
                            f"{cached}")
        return [f"notice: {source.title} is absent under '{root}': training will download it (data.download on; "
                f"needs network), or {source.place()}{cached}"]
    why = kind.root_problem(cfg)
    if why:
        raise DataError(why + _cached_folders(cfg, cfg.name, kind.cache_tag(cfg), resolution))
    return []


def _cached_folders(cfg: DataConfig, name: str, tag: str, resolution: int) -> str:
    """'; a packed cache for it is at X, but ...' when one exists (named as `_folder_name` names them), else ''."""
    pattern = f"{name}-{tag}-{resolution}px-*"
    found = sorted(p for p in cache_root(cfg).glob(pattern) if (p / "manifest.json").is_file()) \
        if cache_root(cfg).is_dir() else []
    if not found:
        return ""
    return (f"; a packed cache for it is at {found[-1]}, but a run checks the cache against the source files, so "
            f"it needs them too")


def prepare(cfg: DataConfig, resolution: int, progress: bool = True,
            log: Callable[[str], None] | None = None) -> ImageSet:
    """The packed set for `cfg` at `resolution`: reused when its cache is current, else packed first.

    Args:
        cfg: the `data` config section (name other than synthetic).
        resolution: image side in pixels (`model.resolution`).
        progress: show a progress bar while packing.
        log: where one-line messages go (None = silent).

    Returns:
        ImageSet memory-mapped from the cache; its notes say where the cache is and whether it was reused.
    """
    DATASETS[cfg.name].check_split(cfg.split)
    source = open_source(cfg, resolution)
    start = time.perf_counter()
    identity = source.identity()
    reused = False
    if identity is None:  # torchvision files absent: download them (or explain where to put them), then identify
        source.fetch()
        identity = source.identity()
    key = cache_key(source, resolution, identity)
    folder = cache_root(cfg) / _folder_name(source, resolution, key)
    if (folder / "manifest.json").exists():
        reused = True
    else:
        if log:
            log(f"packing {cfg.name} '{cfg.root}' at {resolution}x{resolution} into {folder}")
        _write(source, folder, resolution, key, progress)
    image_set = open_packed(folder)
    verb = "reused" if reused else "packed"
    image_set.notes.append(f"cache {folder} ({verb} in {time.perf_counter() - start:.1f} s)")
    return image_set


def load_images(data_cfg: DataConfig, resolution: int, seed: int = 0, progress: bool = True,
                log: Callable[[str], None] | None = None) -> ImageSet:
    """The uint8 image set named by the `data` config section at `resolution` (packed sources via the cache).

    Args:
        data_cfg: the `data` config section.
        resolution: image side in pixels.
        seed: synthetic only: the seed of the procedural images.
        progress: show a progress bar when a source has to be packed.
        log: where one-line messages go (None = silent).

    Returns:
        ImageSet with images (N, H, W, 3) uint8, labels (N,) int64 and class names.
    """
    if not DATASETS[data_cfg.name].packed:  # drawn, not read: the built-in shapes
        DATASETS[data_cfg.name].check_split(data_cfg.split)
        image_set = synthetic_shapes(data_cfg.num_images, resolution, seed)
    else:
        image_set = prepare(data_cfg, resolution, progress, log)  # checks the split first
    if image_set.images.shape[1:3] != (resolution, resolution):
        raise DataError(f"images are {image_set.images.shape[1]}x{image_set.images.shape[2]} but model.resolution "
                        f"is {resolution}")
    return image_set


def prepare_command(config: Path, overrides: list[str], progress: bool, log: Callable[[str], None]) -> None:
    """`sngan prepare`: pack a config's dataset into its uint8 cache (reused when current) and print its summary."""
    from sngan.config import load_config

    cfg = load_config(config, overrides)
    log(load_images(cfg.data, cfg.model.resolution, seed=cfg.train.seed, progress=progress, log=log).summary())
