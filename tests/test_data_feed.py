"""Feeding: device-resident and streamed batches agree, resume exactly, and shard by rank."""

import numpy as np
import pytest
import torch

from sngan.checkpoint import load_checkpoint
from sngan.config import load_config
from sngan.data import Batches, IndexOrder, StreamBatches, make_batches, synthetic_shapes
from sngan.train.loop import train
from tests.data_fakes import write_image
from tests.helpers import train_until, write_config

CPU = torch.device("cpu")


def _draw(batches, sizes):
    return [batches.next(n) for n in sizes]


def test_streamed_batches_equal_resident_batches_and_resume_exactly():
    data = synthetic_shapes(50, 32, seed=3)
    sizes = [8, 8, 8, 20, 20, 8, 16]  # crosses epochs and changes batch size
    resident = _draw(Batches(data, CPU, seed=5, dequantize=False), sizes)
    stream = StreamBatches(data, CPU, seed=5, dequantize=False)
    streamed = _draw(stream, sizes[:3])
    state = stream.state_dict()  # batches gathered ahead must not count as handed out
    streamed += _draw(stream, sizes[3:])
    stream.close()
    for (xa, ya), (xb, yb) in zip(resident, streamed, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    resumed = StreamBatches(data, CPU, seed=99, dequantize=False)
    resumed.load_state_dict(state)
    for (xa, _), (xb, _) in zip(resident[3:], _draw(resumed, sizes[3:]), strict=True):
        assert torch.equal(xa, xb)
    resumed.close()
    x, _ = resident[0]
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1


def test_rank_shards_are_disjoint_equal_and_follow_one_permutation():
    shards = [IndexOrder(101, seed=7, rank=r, world=3) for r in range(3)]
    taken = [s.take(33) for s in shards]
    assert all(len(t) == 33 for t in taken) and len(torch.cat(taken).unique()) == 99
    whole = IndexOrder(101, seed=7).take(101)
    assert torch.equal(taken[1], whole[1::3][:33])
    with pytest.raises(ValueError):
        IndexOrder(10, seed=0, rank=3, world=3)


def test_budget_chooses_resident_or_stream():
    data = synthetic_shapes(8, 32)  # 24 KiB
    assert isinstance(make_batches(data, CPU, 0, True, budget_mb=1), Batches)
    stream = make_batches(data, CPU, 0, True, budget_mb=0.01)
    assert isinstance(stream, StreamBatches) and len(stream) == 8
    stream.close()


def test_training_from_a_memory_mapped_folder_matches_the_resident_run(tmp_path):
    root = tmp_path / "tree"
    rng = np.random.default_rng(0)
    for i in range(24):
        write_image(root / f"c{i % 2}" / f"{i}.png", (32, 32), tuple(int(v) for v in rng.integers(0, 255, 3)))
    base = {"data": {"name": "folder", "root": str(root)}, "train": {"iterations": 2}}
    resident = load_config(write_config(tmp_path / "a.yaml", base), ["data.device_budget_mb=64"])
    expected = load_checkpoint(train(resident, tmp_path / "resident", progress=False, log=lambda s: None))
    cfg = load_config(write_config(tmp_path / "b.yaml", base), ["data.device_budget_mb=0"])
    train_until(cfg, tmp_path / "stream", 1, progress=False, log=lambda s: None)
    streamed = load_checkpoint(train(cfg, tmp_path / "stream", resume=tmp_path / "stream/checkpoints/ckpt-0000001.pt",
                                     progress=False, log=lambda s: None))
    for name, tensor in expected["discriminator"].items():
        assert torch.equal(tensor, streamed["discriminator"][name]), name


def test_each_rank_takes_an_equal_share_of_every_epochs_own_permutation():
    """101 images, 3 ranks: each epoch is a new permutation drawn from the seeded generator (SerialIterator with
    shuffle), and rank r takes entries r, r + 3, ... of it, 33 each (the remainder, 2, is dropped), so the ranks
    cross into the next epoch together and never share an image within an epoch. Reference: the two permutations
    drawn here from torch.Generator().manual_seed(7)."""
    g = torch.Generator().manual_seed(7)
    first, second = torch.randperm(101, generator=g), torch.randperm(101, generator=g)
    assert not torch.equal(first, second)
    for rank in range(3):
        order = IndexOrder(101, seed=7, rank=rank, world=3)
        assert len(order) == 33
        assert torch.equal(order.take(66), torch.cat([first[rank::3][:33], second[rank::3][:33]]))
