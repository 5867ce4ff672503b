"""The packed cache (reuse, invalidation, atomic writes), folder layouts and the checks before training."""

import errno
import os

import numpy as np
import pytest
from typer.testing import CliRunner

from sngan.cli import app
from sngan.config import DataConfig, load_config
from sngan.data import cache_root, prepare
from sngan.errors import DataError, SnganError
from sngan.train.loop import train
from tests.data_fakes import write_image
from tests.helpers import one_line, write_config

runner = CliRunner()


def _tree(root, n_per_class=3, classes=("cat", "dog")):
    for c, name in enumerate(classes):
        for i in range(n_per_class):
            write_image(root / name / f"{i}.png", (40, 32), (c * 100 + i, 50, 60))
    return root


def _cfg(root, **kw):
    return DataConfig(name="folder", root=str(root), **kw)


def test_class_tree_and_flat_folder_layouts(tmp_path):
    tree = prepare(_cfg(_tree(tmp_path / "tree")), 32, progress=False)
    assert tree.classes == ("cat", "dog") and tree.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert tree.images.shape == (6, 32, 32, 3) and tuple(tree.images[4, 16, 16]) == (101, 50, 60)
    write_image(tmp_path / "flat" / "a.png", (64, 64))
    write_image(tmp_path / "flat" / "b.jpg", (64, 80))
    flat = prepare(_cfg(tmp_path / "flat"), 32, progress=False)
    assert flat.classes == ("flat",) and len(flat.images) == 2
    write_image(tmp_path / "tree" / "loose.png", (32, 32))
    with pytest.raises(DataError, match="holds both image files and class folders"):
        prepare(_cfg(tmp_path / "tree"), 32, progress=False)


def test_corrupt_file_is_skipped_counted_and_reported(tmp_path):
    root = _tree(tmp_path / "tree")
    (root / "dog" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (root / "dog" / "empty.jpg").write_bytes(b"")
    packed = prepare(_cfg(root), 32, progress=False)
    assert len(packed.images) == 6 and packed.manifest["per_class"] == [3, 3]
    assert packed.manifest["skipped_count"] == 2 and packed.manifest["count"] == 6
    assert "2 unreadable files skipped" in packed.summary()
    assert np.load(os.path.join(packed.notes[-1].split()[1], "images.npy")).shape == (6, 32, 32, 3)


def test_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no images"):
        prepare(_cfg(tmp_path / "empty"), 32, progress=False)
    with pytest.raises(DataError, match="is not a folder"):
        prepare(_cfg(tmp_path / "missing"), 32, progress=False)


def test_cache_is_reused_and_invalidated_by_source_or_resolution(tmp_path):
    root = _tree(tmp_path / "tree")
    first = prepare(_cfg(root), 32, progress=False)
    again = prepare(_cfg(root), 32, progress=False)
    assert "(reused" in again.notes[-1] and again.manifest["key"] == first.manifest["key"]
    other_res = prepare(_cfg(root), 48, progress=False)
    assert other_res.images.shape[1:3] == (48, 48) and other_res.manifest["key"] != first.manifest["key"]
    write_image(root / "cat" / "new.png", (32, 32))
    changed = prepare(_cfg(root), 32, progress=False)
    assert "(packed" in changed.notes[-1] and len(changed.images) == 7
    folders = sorted(p.name for p in cache_root(_cfg(root)).iterdir())
    assert len(folders) == 3 and not any(".tmp" in f or ".stage" in f for f in folders)  # old sets kept, none staged
    assert cache_root(_cfg(root)) == tmp_path / "sngan-cache"  # next to the tree, never inside it


def test_cache_dir_setting_is_used_and_a_broken_cache_is_reported(tmp_path):
    root = _tree(tmp_path / "tree")
    packed = prepare(_cfg(root, cache_dir=str(tmp_path / "c")), 32, progress=False)
    folder = tmp_path / "c" / os.listdir(tmp_path / "c")[0]
    assert str(folder) in packed.notes[-1]
    (folder / "labels.npy").write_bytes(b"junk")
    with pytest.raises(DataError, match="unreadable.*delete that folder"):
        prepare(_cfg(root, cache_dir=str(tmp_path / "c")), 32, progress=False)


def test_one_class_conditional_is_refused_before_training(tmp_path):
    write_image(tmp_path / "flat" / "a.png", (32, 32))
    cfg = load_config(write_config(tmp_path / "c.yaml", {"data": {"name": "folder", "root": str(tmp_path / "flat")},
                                                         "model": {"num_classes": 2}}))
    with pytest.raises(SnganError, match="dataset has 1 class"):
        train(cfg, tmp_path / "run", progress=False, log=lambda s: None)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_prepare_command_packs_then_reuses_and_reports_errors(tmp_path):
    from typer.testing import CliRunner

    from sngan.cli import app

    root = _tree(tmp_path / "tree", classes=("a", "b", "c"))
    config = write_config(tmp_path / "c.yaml", {"data": {"name": "folder", "root": str(root)}})
    runs = [CliRunner().invoke(app, ["prepare", "--config", str(config), "--no-progress"]) for _ in range(2)]
    assert all(r.exit_code == 0 for r in runs), runs[0].output
    assert "dataset: 9 images 32x32, 3 classes (0 a, 1 b, 2 c), per class min 3 max 3" in runs[0].stdout
    assert "packed in" in runs[0].stdout and "reused in" in runs[1].stdout
    bad = CliRunner().invoke(app, ["prepare", "--config", str(config), "--set", f"data.root={tmp_path / 'nope'}"])
    assert bad.exit_code == 1 and bad.stderr.strip().startswith("error: data.root")
    assert len(bad.stderr.strip().splitlines()) == 1


def test_unwritable_cache_dir_is_one_clear_line(tmp_path):
    root = _tree(tmp_path / "tree")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError, match="cannot write the packed cache.*data.cache_dir"):
        prepare(_cfg(root, cache_dir=str(blocker / "cache")), 32, progress=False)


def test_non_utf8_names_in_a_data_tree_hash_and_a_non_utf8_out_is_refused(tmp_path):
    from PIL import Image

    from sngan.data.files import list_class_tree as list_images

    root = tmp_path / "data"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        Image.new("RGB", (8, 8), "red").save(root / cls / "x.png")
    plain = list_images(root)
    bad = os.fsdecode(b"caf\xe9.png")
    Image.new("RGB", (8, 8), "blue").save(os.path.join(root / "a", bad))
    classes, files, digest = list_images(root)
    assert classes == ("a", "b") and len(files) == 3 and digest != plain[2]
    out = os.fsdecode(b"run-\xff")
    result = runner.invoke(app, ["train", "--config", str(write_config(tmp_path / "c.yaml")), "--out",
                                 str(tmp_path / out), "--no-progress"])
    assert result.exit_code == 1 and "is not valid UTF-8" in one_line(result)
    assert not (tmp_path / out).exists()


def test_a_hostile_cache_manifest_is_one_line(tmp_path):
    from sngan.data.cache import open_packed

    folder = tmp_path / "set"
    folder.mkdir()
    np.save(folder / "images.npy", np.zeros((2, 4, 4, 3), np.uint8))
    np.save(folder / "labels.npy", np.zeros(2, np.int64))
    for text in ("{}", '{"count": "2"}', "[" * 100_000):
        (folder / "manifest.json").write_text(text)
        with pytest.raises(DataError, match="delete that folder to pack again"):
            open_packed(folder)


def test_disk_full_while_packing_is_one_line_and_leaves_no_staging(tmp_path, monkeypatch):
    from sngan.data import load_images

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (40, 40), (i * 40, 0, 0)).save(tmp_path / "data" / cls / f"{i}.png")
    monkeypatch.setattr(os, "posix_fallocate", full)
    cfg = load_config(write_config(tmp_path / "c.yaml"), ["data.name=folder", f"data.root={tmp_path / 'data'}",
                                                          f"data.cache_dir={tmp_path / 'cache'}"])
    with pytest.raises(DataError, match="cannot reserve .* bytes for images.npy: no space left on device"):
        load_images(cfg.data, 32, seed=0, log=lambda _: None)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []
