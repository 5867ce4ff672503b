import pytest
import torch

from sngan.checkpoint import checkpoint_path, list_checkpoints, load_checkpoint, save_checkpoint
from sngan.errors import CheckpointError


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
