"""Checkpoint files: saved atomically (a full disk keeps the previous file), refused in one line by the one
opener when they are not sngan's or hold values no run writes, listed and pruned in step order."""

import errno
import os
import shutil

import pytest
import torch
from typer.testing import CliRunner

from sngan.checkpoint import checkpoint_path, list_checkpoints, load_checkpoint, save_checkpoint
from sngan.cli import app
from sngan.errors import CheckpointError, SnganError
from tests.helpers import one_line

runner = CliRunner()


def minimal_state(step: int = 1) -> dict:
    return {"format_version": 1, "config": {"model": {}}, "step": step, "generator": {"w": torch.ones(2)},
            "discriminator": {"w": torch.zeros(3)}}


def test_round_trip(tmp_path):
    path = save_checkpoint(minimal_state(5), tmp_path / "a" / "ckpt.pt")
    loaded = load_checkpoint(path)
    assert loaded["step"] == 5 and torch.equal(loaded["generator"]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.joinpath("a").iterdir()] == ["ckpt.pt"]  # no temp file left


def test_a_torch_file_without_sngan_keys_is_not_an_sngan_checkpoint(tmp_path):
    # truncated, pickled-code, text and missing files: test_bad_inputs.py's "... resume" and "... sample" rows
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.ones(1)}, other)
    with pytest.raises(CheckpointError, match="not an sngan checkpoint"):
        load_checkpoint(other)


def test_listing_and_pruning(tmp_path):
    from sngan.train.rundir import RunFolder

    folder = RunFolder.open(tmp_path / "run", "x: 1\n")
    ckpt_dir = tmp_path / "run" / "checkpoints"
    for step in (1, 20, 3):
        folder.save(checkpoint_path("", step).name, lambda fh, s=step: torch.save(minimal_state(s), fh))
    (ckpt_dir / "best.pt").write_bytes(b"x")
    assert [p.name for p in list_checkpoints(ckpt_dir)] == ["ckpt-0000001.pt", "ckpt-0000003.pt", "ckpt-0000020.pt"]
    folder.prune(keep=1)
    folder.close()
    assert [p.name for p in list_checkpoints(ckpt_dir)] == ["ckpt-0000020.pt"]
    assert (ckpt_dir / "best.pt").exists()


def test_disk_full_during_a_checkpoint_save_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    path.write_bytes(b"the previous checkpoint")
    real_fdopen = os.fdopen

    def fdopen(fd, mode="r", *args, **kwargs):  # the temporary's writes find the disk full
        fh = real_fdopen(fd, mode, *args, **kwargs)
        if "w" in mode:
            def refuse(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            fh.write = refuse
        return fh

    monkeypatch.setattr(os, "fdopen", fdopen)
    with pytest.raises(SnganError) as caught:
        save_checkpoint({"w": torch.zeros(1000)}, path)
    monkeypatch.undo()
    assert str(caught.value) == f"cannot write {path}: no space left on device"
    assert path.read_bytes() == b"the previous checkpoint" and sorted(tmp_path.iterdir()) == [path]


def test_hostile_checkpoint_values_are_one_line(tiny_runs, tmp_path):
    src = sorted((tiny_runs["uncond"] / "checkpoints").glob("ckpt-*.pt"))[-1]
    state = torch.load(src, weights_only=True)
    cases = {"step": ({**state, "step": 2 ** 63 - 1}, "its 'step' must be an integer in [0, 100000000]"),
             "sparse": ({**state, "generator": {**state["generator"], next(iter(state["generator"])):
                                                state["generator"][next(iter(state["generator"]))].to_sparse()}},
                        "is a torch.sparse_coo tensor; a checkpoint holds dense weights"),
             "meta": ({**state, "discriminator": {**state["discriminator"], next(iter(state["discriminator"])):
                                                  torch.empty(3, device="meta")}},
                      "is a meta tensor; a checkpoint holds dense weights"),
             "rng": ({**state, "rng": {**state["rng"], "numpy": "garbage"}}, "cannot be restored")}
    for name, (bad, expected) in cases.items():
        run = shutil.copytree(tiny_runs["uncond"], tmp_path / name)
        path = run / "checkpoints" / src.name
        torch.save(bad, path)
        result = runner.invoke(app, ["train", "--out", str(run), "--resume", str(path), "--no-progress",
                                     "--set", "train.iterations=9"])
        assert result.exit_code == 1 and expected in one_line(result), (name, result.output[-500:])
