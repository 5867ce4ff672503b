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

Which real images (issue 38): the training split here is class-sorted (labels i // 5000, as a class-folder tree
packs), and the reference must be a class-stratified sample chosen by a hash of the pixels (docs/eval.md), rewritten
here from its description: every class gives N / 10, the images with the smallest 8-byte blake2b digest of their
pixels. The first N in file order (the old rule) would be classes 0 and 1 only.

Modified protocols (`--num-samples`, `--num-real`) are pinned too, with their counts typed from the rule in
docs/eval.md ("FID: the protocol's count, at most --num-samples"), not read from `make_protocol`.
"""

import dataclasses
import hashlib
import re
import time
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
CLASS_SIZE = 5000  # the split is sorted by class: 10 classes of 5,000
EXPECTED = {  # (protocol, make_protocol changes): (IS images, IS splits, FID generated, FID real, names)
    ("paper", ()): (IS_SPLIT * IS_REPEATS, IS_REPEATS, FID_GENERATED, FID_REAL, ("is50k", "fid5k_train10k")),
    ("standard", ()): (50000, 10, 50000, CIFAR10_TRAIN, ("is50k", "fid50k_train50k")),
    ("quick", ()): (5000, 10, 5000, CIFAR10_TRAIN, ("is5k", "fid5k_train50k")),
    # modified: paper keeps FID on the first 5,000 generated; standard and quick score FID on all of them
    ("paper", (("num_samples", 20000),)): (20000, 10, FID_GENERATED, FID_REAL, ("is20k", "fid5k_train10k")),
    ("paper", (("num_samples", 3000),)): (3000, 10, 3000, FID_REAL, ("is3k", "fid3k_train10k")),
    ("paper", (("num_real", 20000),)): (50000, 10, FID_GENERATED, 20000, ("is50k", "fid5k_train20k")),
    ("standard", (("num_samples", 20000),)): (20000, 10, 20000, CIFAR10_TRAIN, ("is20k", "fid20k_train50k")),
    ("quick", (("num_samples", 2000), ("splits", 4))): (2000, 4, 2000, CIFAR10_TRAIN,
                                                        ("is2k_4splits", "fid2k_train50k")),
}
QUANTISE = {  # how each protocol turns G's [-1, 1] floats into uint8 (issue 38 section 2)
    "paper": lambda x: np.asarray(np.clip(x * 127.5 + 127.5, 0.0, 255.0), dtype=np.uint8),  # authors' gen_images
    "standard": lambda x: np.floor((np.clip(x, -1, 1) + 1) * np.float32(127.5) + np.float32(0.5)),  # rounded
    "quick": lambda x: np.floor((np.clip(x, -1, 1) + 1) * np.float32(127.5) + np.float32(0.5)),
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


def stratified_by_hash(images: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """The documented reference rule for equal classes: n / K per class, smallest blake2b-64 digests first."""
    classes = np.unique(labels)
    chosen = []
    for k in classes:
        members = np.flatnonzero(labels == k)
        digests = [hashlib.blake2b(images[i].tobytes(), digest_size=8).digest() for i in members]
        chosen += [members[j] for j in sorted(range(len(members)), key=lambda j: digests[j])[:n // len(classes)]]
    return np.asarray(chosen)


@pytest.mark.parametrize("name,changes", list(EXPECTED), ids=lambda v: str(v))
def test_protocol_counts_reach_is_and_fid(name, changes, tmp_path, monkeypatch):
    n_is, splits, n_fid_generated, n_fid_real, names = EXPECTED[(name, changes)]
    cfg = load_config(CONFIGS / "cifar10_resnet.yaml")
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, cache_dir=str(tmp_path / "cache")))
    generator, requested, seen = PixelGenerator(), [], {}

    def fake_load_images(data_cfg, resolution, seed=0, **_):
        requested.append(data_cfg.split)
        return SimpleNamespace(images=training_split(), labels=np.arange(CIFAR10_TRAIN) // CLASS_SIZE)

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

    protocol = make_protocol(name, **dict(changes))
    record = command.evaluate_checkpoint(tmp_path / "unused.pt", protocol, batch_size=5000, seed=3,
                                         log=lambda s: None)

    assert requested == ["train"]  # the checkpoint's training split, as the paper's "true distribution"
    split = training_split()
    if n_fid_real == CIFAR10_TRAIN:
        real = split.reshape(-1, 3).astype(np.float64)  # the whole split
    else:  # 1,000 (or 2,000) of each class, chosen by the pixels' hash: never the first n
        chosen = stratified_by_hash(split, np.arange(CIFAR10_TRAIN) // CLASS_SIZE, n_fid_real)
        assert np.bincount(chosen // CLASS_SIZE).tolist() == [n_fid_real // 10] * 10
        real = split.reshape(-1, 3)[chosen].astype(np.float64)
    mu, sigma, mu_real, sigma_real = seen["fid"]
    np.testing.assert_allclose(mu_real, real.mean(0), rtol=1e-9)
    np.testing.assert_allclose(sigma_real, np.cov(real, rowvar=False), rtol=1e-7)
    assert record["num_real"] == n_fid_real

    z, _ = latents(n_is, generator.z_dim, 0, 3)  # the protocol's latents, seed 3
    images = generator(z)
    features = QUANTISE[name](images.flatten(1).numpy()).astype(np.float64)  # the protocol's uint8 values
    fid_features = features[:n_fid_generated]  # the FIRST n generated images
    np.testing.assert_allclose(mu, fid_features.mean(0), rtol=1e-9)
    np.testing.assert_allclose(sigma, np.cov(fid_features, rowvar=False), rtol=1e-7)

    logits, n_splits = seen["is"]
    assert logits.shape == (n_is, 3) and n_splits == splits  # every generated image, in order, in `splits` parts
    np.testing.assert_allclose(logits[:, 0], features[:, 0] / 50, rtol=1e-6)
    assert (record["num_generated"], record["is_splits"], record["fid_generated"]) == (n_is, splits,
                                                                                       n_fid_generated)
    assert [k for k in record["metrics"] if not k.endswith("_std")] == list(names)


class SlowProbeNet(PixelNet):
    """PixelNet that takes 0.1 s per image on its first two calls (the timing probe), then runs at full speed:
    the measured rate (at most 10 img/s: the sleep is a floor) makes 10,000 + 10,000 images at least 33m20s."""

    def __init__(self, events):
        super().__init__()
        self.events, self.calls = events, 0

    def forward(self, images):
        self.calls += 1
        if self.calls <= 2:
            time.sleep(0.1 * len(images))
            return images.flatten(1)[:, :3] * 255, images.flatten(1)[:, :3]
        return super().forward(images)


def test_a_long_cpu_evaluation_is_announced_with_its_length_before_any_image_is_scored(tmp_path, monkeypatch):
    cfg = load_config(CONFIGS / "cifar10_resnet.yaml")
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, cache_dir=str(tmp_path / "cache")))
    events = []

    class RecordingGenerator(PixelGenerator):
        def forward(self, z, y=None):
            events.append("generate")
            return super().forward(z, y)

    def fake_load_images(data_cfg, resolution, seed=0, **_):
        events.append("read real images")
        return SimpleNamespace(images=training_split(), labels=np.arange(CIFAR10_TRAIN) // CLASS_SIZE)

    opened = SimpleNamespace(generator=RecordingGenerator(), config=cfg, state={"step": 0}, generator_name="raw")
    monkeypatch.setattr("sngan.checkpoint.open_checkpoint", lambda *a, **k: opened)
    monkeypatch.setattr(command, "load_inception", lambda *a, **k: SlowProbeNet(events))
    monkeypatch.setattr(reference, "load_images", fake_load_images)
    protocol = make_protocol("paper", num_samples=10000)
    command.evaluate_checkpoint(tmp_path / "unused.pt", protocol, batch_size=5000, seed=3, log=events.append)
    notice = next(i for i, e in enumerate(events) if e.startswith("notice:"))
    assert notice < events.index("read real images") < events.index("generate")  # said before any work
    line = events[notice]
    assert "10,000 generated + 10,000 real" in line and "--protocol quick" in line and "--device cuda" in line
    minutes = re.search(r"about (\d+)m\d\ds before the result", line)  # 20,000 images at <= 10 img/s
    assert minutes and 33 <= int(minutes[1]) < 60
    events.clear()
    command.evaluate_checkpoint(tmp_path / "unused.pt", protocol, batch_size=5000, seed=3,
                                log=events.append)  # reference now cached: only the generated images are due
    assert "runs 10,000 generated images" in next(e for e in events if e.startswith("notice:"))
