"""What starting a run costs on a large image tree (issue 37 §4): the cache's identity check lists the tree once
(one stat per file), which must take seconds at 200,000 files, not minutes."""

import time

import pytest

from sngan.data.files import list_class_tree


@pytest.mark.slow  # 200,000 files: CI's slow step
def test_the_identity_check_of_a_200000_file_tree_takes_seconds(tmp_path):
    root = tmp_path / "tree"
    for c in range(1000):
        folder = root / f"n{c:08d}"
        folder.mkdir(parents=True)
        for i in range(200):
            (folder / f"img_{i:05d}.JPEG").touch()
    start = time.perf_counter()
    classes, files, digest = list_class_tree(root)
    seconds = time.perf_counter() - start
    assert (len(classes), len(files)) == (1000, 200_000)
    assert seconds < 60, f"{seconds:.1f} s"  # measured 3.8-4.2 s on the 2-core development machine
    (root / "n00000000" / "img_00000.JPEG").write_bytes(b"x")  # a changed file changes the identity
    assert list_class_tree(root)[2] != digest
