"""The data path's maths on known uint8 pixels: dequantization x/128 - 1 + U(0, 1/128) as the authors'
`datasets/cifar10.py`, and x/127.5 - 1 without it; through `to_float`, `Batches` and a built training state."""

import numpy as np
import pytest
import torch

from sngan.config import load_config
from sngan.data import Batches, ImageSet, IndexOrder, StreamBatches, to_float
from sngan.train.state import build_state
from tests.helpers import write_config

CPU = torch.device("cpu")
PIXELS = torch.tensor([0, 1, 127, 128, 254, 255], dtype=torch.uint8).view(1, 1, 2, 3).expand(1, 3, 2, 3)


def test_without_dequantization_pixels_map_to_x_over_127_5_minus_1_exactly():
    x = to_float(PIXELS.clone(), dequantize=False)[0, 0].flatten()
    by_hand = torch.tensor([-1.0, 1 / 127.5 - 1, 127 / 127.5 - 1, 128 / 127.5 - 1, 254 / 127.5 - 1, 1.0])
    assert torch.allclose(x, by_hand, atol=1e-7)
    assert x[0] == -1.0 and x[-1] == 1.0


def test_dequantized_pixels_are_x_over_128_minus_1_plus_uniform_noise_of_width_1_over_128():
    many = torch.tensor([0, 128, 255], dtype=torch.uint8).view(3, 1, 1, 1).expand(3, 3, 64, 64).contiguous()
    torch.manual_seed(0)
    x = to_float(many, dequantize=True)
    base = torch.tensor([-1.0, 0.0, 127 / 128]).view(3, 1, 1, 1)  # x/128 - 1 by hand
    noise = x - base
    assert noise.min() >= 0 and noise.max() < 1 / 128
    assert noise.max() > 0.99 / 128 and noise.min() < 0.01 / 128  # fills the whole interval
    for i in range(3):
        assert noise[i].mean().item() == pytest.approx(1 / 256, rel=0.02)  # E[U(0, 1/128)]
    assert x.min() >= -1 and x.max() < 1  # [-1, 1)


def test_dequantized_values_are_exact_for_a_seeded_noise_draw():
    torch.manual_seed(1)
    x = to_float(PIXELS.contiguous(), dequantize=True)
    torch.manual_seed(1)
    noise = torch.rand(PIXELS.shape) / 128
    assert torch.allclose(x, PIXELS.float() / 128 - 1 + noise, atol=1e-7)


def _known_set():
    """8 images, image i filled with pixel value 30 * i and labelled i % 2."""
    images = np.stack([np.full((4, 4, 3), 30 * i, dtype=np.uint8) for i in range(8)])
    return ImageSet(images, np.arange(8, dtype=np.int64) % 2, ("a", "b"))


@pytest.mark.parametrize("feed", [Batches, StreamBatches])
@pytest.mark.parametrize("dequantize", [False, True])
def test_batches_carry_each_image_with_its_label_and_the_formula_values(feed, dequantize):
    batches = feed(_known_set(), CPU, seed=0, dequantize=dequantize)
    x, y = batches.next(8)
    batches.close()
    # recover which image each row is from its first pixel, then check every pixel and the label
    first = x[:, 0, 0, 0]
    index = torch.round((first + 1) * (128 if dequantize else 127.5) / 30).long()  # noise moves it < 1/30
    assert sorted(index.tolist()) == list(range(8))  # one epoch: every image once
    assert torch.equal(index, IndexOrder(8, seed=0).take(8))  # in the seeded order the rank shards split
    assert torch.equal(y, index % 2)
    if dequantize:
        noise = x - ((30 * index).float() / 128 - 1).view(8, 1, 1, 1)
        assert noise.min() >= 0 and noise.max() < 1 / 128
    else:
        assert torch.allclose(x, ((30 * index).float() / 127.5 - 1).view(8, 1, 1, 1).expand_as(x), atol=1e-6)


@pytest.mark.parametrize("dequantize", [False, True])
def test_training_batches_follow_the_data_dequantize_setting(tmp_path, dequantize):
    cfg = load_config(write_config(tmp_path / "tiny.yaml"), [f"data.dequantize={str(dequantize).lower()}"])
    state = build_state(cfg, CPU, log=lambda s: None)
    x, _ = state.batches.next(8)
    if dequantize:
        grid = (x + 1) * 128  # = pixel + U(0, 1): never an integer, floor is the pixel
        assert (grid - grid.floor()).max() > 0.5 and ((grid - grid.floor()) > 0).float().mean() > 0.99
        assert x.max() < 1
    else:
        grid = (x + 1) * 127.5  # the pixels back, integers
        assert torch.allclose(grid, grid.round(), atol=1e-4)
        assert x.min() >= -1 and x.max() <= 1
