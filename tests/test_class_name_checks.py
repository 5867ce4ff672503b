"""Class names and labels as they enter (issue 38 section 5, issue 36 section 3): from CIFAR-10's batches.meta,
from class folders, from a packed cache's manifest and from a checkpoint. Names are text (bytes decoded), unique
and printable; a bad set is one line naming the first bad name, before any image is packed; labels that are not
integers 0..9 (2**70, 0.5) are refused with one line instead of overflowing or being truncated.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sngan.checkpoint import class_names
from sngan.cli import app
from sngan.config import DataConfig
from sngan.data import prepare
from sngan.data.cache import open_packed
from sngan.data.files import list_class_tree
from sngan.errors import CheckpointError, DataError
from tests.data_fakes import CIFAR_CLASSES, write_cifar10, write_image
from tests.helpers import CONFIGS


def _cifar(root: Path):
    return prepare(DataConfig(name="cifar10", root=str(root), download=False, cache_dir=str(root / "cache")), 32,
                   progress=False)


def _meta(root: Path, names) -> None:
    with open(root / "cifar-10-batches-py" / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, f, protocol=2)


def test_bytes_class_names_of_a_python3_resave_are_text_everywhere(tmp_path):
    write_cifar10(tmp_path)
    _meta(tmp_path, [n.encode() for n in CIFAR_CLASSES])  # what pickle.load(f, encoding='bytes') + re-save gives
    packed = _cifar(tmp_path)
    assert packed.classes == tuple(CIFAR_CLASSES) and all(type(n) is str for n in packed.classes)
    assert "0 airplane, 1 automobile" in packed.summary() and "b'" not in packed.summary()
    cached = open_packed(Path(packed.notes[-1].split()[1]))  # a later run reads the names back from the manifest
    assert cached.classes == tuple(CIFAR_CLASSES)


def test_latin1_bytes_names_decode_and_a_name_with_a_newline_is_one_line_before_packing(tmp_path):
    write_cifar10(tmp_path)
    _meta(tmp_path, [b"caf\xe9"] + [n.encode() for n in CIFAR_CLASSES[1:]])  # not UTF-8: read as latin-1
    assert _cifar(tmp_path).classes[0] == "café"
    forged = ["airplane\n2026-01-01 step 100 fid 1.0"] + CIFAR_CLASSES[1:]
    for bad, why in ((forged, "control character"), (["cat"] * 10, "repeats"), ([""] + CIFAR_CLASSES[1:], "empty")):
        root = tmp_path / why.replace(" ", "_")
        write_cifar10(root)
        _meta(root, bad)
        with pytest.raises(DataError, match=f"batches.meta: class name .* {why}") as info:
            _cifar(root)
        assert "\n" not in str(info.value)
        assert not (root / "cache").exists() or not any((root / "cache").iterdir())  # nothing was packed


@pytest.mark.parametrize("label,shown", [(2 ** 70, "1180591620717411303424 (int)"), (0.5, "0.5 (float)"),
                                         (True, "True (bool)"), ("3", "'3' (str)")])
def test_cifar_labels_that_are_not_integers_0_to_9_are_one_line(tmp_path, label, shown):
    write_cifar10(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_2", "wb") as f:
        pickle.dump({"data": np.zeros((2, 3072), np.uint8), "labels": [1, label]}, f, protocol=2)
    with pytest.raises(DataError, match=f"data_batch_2 'labels' must be integers 0..9, got {re.escape(shown)} at "
                                        f"index 1"):
        _cifar(tmp_path)


def test_integer_label_arrays_pass_and_float_arrays_are_refused(tmp_path):
    write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    with open(batch, "wb") as f:
        pickle.dump({"data": np.zeros((2, 3072), np.uint8), "labels": np.array([3, 7], np.uint8)}, f, protocol=2)
    packed = _cifar(tmp_path)
    assert packed.labels[4:6].tolist() == [3, 7]  # 4 images per fake batch: batch 2 starts at 4
    with open(batch, "wb") as f:
        pickle.dump({"data": np.zeros((2, 3072), np.uint8), "labels": np.array([3.0, 0.5])}, f, protocol=2)
    with pytest.raises(DataError, match=r"'labels' must be integers 0..9, got a float64 array"):
        _cifar(tmp_path)


def _tree(root: Path, names: list[bytes]) -> Path:
    for name in names:
        folder = os.path.join(os.fsencode(root), name)
        os.makedirs(folder)
        write_image(Path(os.fsdecode(folder)) / "a.png", (8, 8))
    return root


def test_a_class_folder_whose_name_is_not_utf8_is_refused_with_one_line(tmp_path):
    root = _tree(tmp_path / "tree", [b"cat", b"caf\xe9"])  # a Latin-1 name on a UTF-8 system
    with pytest.raises(DataError, match=r"class name 0 'caf\\udce9' holds a control character or an undecodable"):
        list_class_tree(root)
    result = CliRunner().invoke(app, ["prepare", "--config", str(CONFIGS / "demo.yaml"), "--set", "data.name=folder",
                                      "--set", f"data.root={root}", "--set", f"data.cache_dir={tmp_path / 'c'}",
                                      "--no-progress"])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "rename that class folder" in result.output
    assert not (tmp_path / "c").exists()


def test_a_class_folder_named_to_forge_a_log_line_is_refused_and_an_empty_one_is_shown_escaped(tmp_path):
    root = _tree(tmp_path / "tree", [b"cat", b"dog\n2026-01-01T00:00:00 step 9 done"])
    with pytest.raises(DataError, match="class name 1 .* holds a control character"):
        list_class_tree(root)
    ok = _tree(tmp_path / "ok", [b"cat", b"dog"])
    (ok / "empty\nstep 9").mkdir()  # an empty class folder is left out and named in a notice
    packed = prepare(DataConfig(name="folder", root=str(ok), cache_dir=str(tmp_path / "c2")), 8, progress=False)
    assert packed.classes == ("cat", "dog") and "\n" not in packed.summary()
    assert "'empty\\nstep 9'" in packed.summary()


def test_a_hand_edited_manifest_or_checkpoint_with_bad_names_is_refused(tmp_path):
    ok = _tree(tmp_path / "tree", [b"cat", b"dog"])
    packed = prepare(DataConfig(name="folder", root=str(ok), cache_dir=str(tmp_path / "c")), 8, progress=False)
    folder = Path(packed.notes[-1].split()[1])
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "classes": ["cat", "dog\r"]}))
    with pytest.raises(DataError, match=r"class name 1 'dog\\r' holds a control character"):
        open_packed(folder)
    for bad, why in ((["a", "b\x1b[2J"], "control character"), (["a", "a" * 201], "longer than 200")):
        with pytest.raises(CheckpointError, match=why):
            class_names({"class_names": bad}, 2)
