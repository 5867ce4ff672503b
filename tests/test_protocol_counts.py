"""What reaches the IS and FID computations under each protocol of `sngan eval`: how many generated images, which
and how many real ones, how many IS splits. The numbers are typed here from their sources, not read from
`PROTOCOLS`, so a change to a protocol's counts fails this file.

SN-GAN App. B.1 (the `paper` protocol): "we calculated the score for randomly generated 5000 examples from each
trained generator ... We repeated each experiment 10 times and reported the average and the standard deviation of
the inception scores" and "We computed the Fréchet inception distance between the true distribution and the
generated distribution empirically over 10000 and 5000 samples". `standard` (50,000 generated against the whole
training split) and `quick` (ours: 5,000 generated, 10 splits) are documented in `sngan/evaluation/protocols.py`.

The whole `sngan eval` path runs (`evaluate_checkpoint`: reference statistics through the cache, then
`score_generator`); only the expensive ends are replaced: a 1x1-pixel generator, a 50,000-image training split whose
pixels spell each image's index, and a network whose features are the pixel values. The arguments of
`frechet_distance` and `inception_score_from_logits` are then recomputed here from the images they must come from.
"""

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import sngan.evaluation.command as command
import sngan.evaluation.reference as reference
import sngan.evaluation.scoring as scoring
from sngan.config import load_config
from sngan.evaluation.protocols import make_protocol
from sngan.sample.generate import latents
from tests.helpers import CONFIGS

CIFAR10_TRAIN = 50000  # CIFAR-10's training split: 50,000 images
IS_SPLIT, IS_REPEATS = 5000, 10  # B.1: "randomly generated 5000 examples ... repeated each experiment 10 times"
FID_REAL, FID_GENERATED = 10000, 5000  # B.1: "empirically over 10000 and 5000 samples"
EXPECTED = {  # protocol: (IS images, IS splits, FID generated, FID real)
    "paper": (IS_SPLIT * IS_REPEATS, IS_REPEATS, FID_GENERATED, FID_REAL),
    "standard": (50000, 10, 50000, CIFAR10_TRAIN),
    "quick": (5000, 10, 5000, CIFAR10_TRAIN),
}


class PixelGenerator(nn.Module):
    """(B, 4) latents -> (B, 3, 1, 1) images: two channels from z, the third -1 (uint8 0, marks a generated image)."""

    z_dim, num_classes = 4, 0

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # where generate() finds the device

    def forward(self, z, y=None):
        return torch.stack([torch.tanh(z[:, 0]), torch.tanh(z[:, 1]), -torch.ones(len(z))], 1)[:, :, None, None]


class PixelNet(nn.Module):
    """Features = the pixel's three uint8 values, logits = a fixed function of them."""

    network, sha256, inception_input, features_key = "pixel-net", "0" * 64, "tf1", "pixel-net-tf1"

    def __init__(self):
        super().__init__()
        self.register_buffer("anchor", torch.zeros(1))

    def forward(self, images):
        features = (images.flatten(1) * 255).round()  # (B, 3, 1, 1) in [0, 1] -> (B, 3) in 0..255
        return features, torch.stack([features[:, 0] / 50, features[:, 1] / 70, features[:, 0] / 90], 1)


def training_split() -> np.ndarray:
    """50,000 1x1 images, image i = (i % 256, i // 256, 255): the index is readable from the features."""
    i = np.arange(CIFAR10_TRAIN)
    return np.stack([i % 256, i // 256, np.full_like(i, 255)], 1).astype(np.uint8)[:, None, None, :]


@pytest.mark.parametrize("name", list(EXPECTED))
def test_protocol_counts_reach_is_and_fid(name, tmp_path, monkeypatch):
    n_is, splits, n_fid_generated, n_fid_real = EXPECTED[name]
    cfg = load_config(CONFIGS / "cifar10_resnet.yaml")
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, cache_dir=str(tmp_path / "cache")))
    generator, requested, seen = PixelGenerator(), [], {}

    def fake_load_images(data_cfg, resolution, seed=0, **_):
        requested.append(data_cfg.split)
        return SimpleNamespace(images=training_split(), labels=np.zeros(CIFAR10_TRAIN, dtype=np.int64))

    def spy_fid(mu, sigma, mu_real, sigma_real):
        seen["fid"] = (mu, sigma, mu_real, sigma_real)
        return 0.0

    def spy_is(logits, n_splits):
        seen["is"] = (logits, n_splits)
        return 0.0, 0.0

    opened = SimpleNamespace(generator=generator, config=cfg, state={"step": 0}, generator_name="raw")
    monkeypatch.setattr("sngan.checkpoint.open_checkpoint", lambda *a, **k: opened)
    monkeypatch.setattr(command, "load_inception", lambda *a, **k: PixelNet())
    monkeypatch.setattr(reference, "load_images", fake_load_images)
    monkeypatch.setattr(scoring, "frechet_distance", spy_fid)
    monkeypatch.setattr(scoring, "inception_score_from_logits", spy_is)

    record = command.evaluate_checkpoint(tmp_path / "unused.pt", make_protocol(name), batch_size=5000, seed=3,
                                         log=lambda s: None)

    assert requested == ["train"]  # the checkpoint's training split, as the paper's "true distribution"
    real = training_split().reshape(-1, 3)[:n_fid_real].astype(np.float64)  # the FIRST n images of the split
    mu, sigma, mu_real, sigma_real = seen["fid"]
    np.testing.assert_allclose(mu_real, real.mean(0), rtol=1e-9)
    np.testing.assert_allclose(sigma_real, np.cov(real, rowvar=False), rtol=1e-7)
    assert record["num_real"] == n_fid_real

    z, _ = latents(n_is, generator.z_dim, 0, 3)  # the protocol's latents, seed 3
    images = generator(z)
    features = ((images.clamp(-1, 1) + 1) * 127.5 + 0.5).floor().flatten(1).double().numpy()  # uint8 values
    fid_features = features[:n_fid_generated]  # the FIRST n generated images
    np.testing.assert_allclose(mu, fid_features.mean(0), rtol=1e-9)
    np.testing.assert_allclose(sigma, np.cov(fid_features, rowvar=False), rtol=1e-7)

    logits, n_splits = seen["is"]
    assert logits.shape == (n_is, 3) and n_splits == splits  # every generated image, in order, in `splits` parts
    np.testing.assert_allclose(logits[:, 0], features[:, 0] / 50, rtol=1e-6)
    assert (record["num_generated"], record["is_splits"], record["fid_generated"]) == (n_is, splits,
                                                                                       n_fid_generated)
