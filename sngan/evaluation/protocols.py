"""The IS/FID protocols: how many images go where, and the metric names that record it.

A protocol fixes every count a reader would otherwise have to guess:

| protocol | generated | IS splits | FID generated | FID real |
|---|---|---|---|---|
| standard | 50,000 | 10 (5,000 each) | all 50,000 | every image of the training split (CIFAR-10 train: 50,000) |
| paper (SN-GAN App. B.1) | 50,000 | 10 (5,000 each) | the first 5,000 | 10,000 of the training split (see below) |
| quick (ours, a cheap signal) | 5,000 | 10 (500 each) | all 5,000 | every image of the training split |

The paper's App. B.1: "we calculated the score for randomly generated 5000 examples ... We repeated each experiment
10 times" (IS over 10 x 5,000) and "We computed the Frechet inception distance between the true distribution and
the generated distribution empirically over 10000 and 5000 samples". quick's IS of 500-image splits is biased low
against the 5,000-image splits of the other two: its numbers are for watching a run, not for a table.
The same names serve `sngan eval --protocol` and `train.eval_protocol` (training-time evaluation, study plans).

The training split is the checkpoint's `data.split` (CIFAR-10: train). Where a protocol takes fewer real images than
the split holds, which ones is `sngan.metrics.stats.reference_subset`'s rule (class-stratified, by a hash of the
pixels): the same images give the same reference whatever their file layout. App. B.1 does not say which 10,000;
the authors' code loads a `cifar-10-fid.npz` it does not ship or describe (docs/eval.md).

Generated images are quantised to uint8 by the protocol's `quantise` rule (`QUANTISE`): `paper` truncates, as the
authors' `gen_images` (`np.asarray(np.clip(x * 127.5 + 127.5, 0, 255), dtype=np.uint8)`); `standard` and `quick`
round to the nearest level (ours: the unbiased rounding of torchvision's `save_image` and of `sngan sample`'s
exports, so an export scores as its checkpoint).

How images reach the Inception network (uint8, the input path, the weights, the latents) is said once, in
`sngan.evaluation.scoring`; the input path is part of the protocol (`tf1` by default, the TF inception-2015-12-05
graph's resize and scaling that the paper's code fed; `pytorch-fid` on request) and stamped into its names.
Metric names encode the protocol (StyleGAN2-ADA style): `is50k` = IS of 50,000 images in 10 splits,
`fid5k_train10k` = FID of 5,000 generated against 10,000 real images of the train split.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sngan.errors import MetricError
from sngan.metrics.dinov2 import DINOV2_INPUT, FD_NETWORKS
from sngan.metrics.inception import DEFAULT_INCEPTION_INPUT, INCEPTION_INPUTS, check_inception_input

INPUT = "generated images quantised to uint8, then /255 (real images: uint8 /255)"
QUANTISE = {  # how generated images in [-1, 1] become uint8, by name (the record's `quantise`)
    "truncate": "uint8(clip(x * 127.5 + 127.5, 0, 255)), truncated as the authors' gen_images",
    "round": "uint8(clip((x + 1) * 127.5 + 0.5, 0, 255)), rounded to the nearest level (ours)",
}

PRECISION = "float32, eval mode, TF32 off"



@dataclass(frozen=True)
class Protocol:
    """How many images go where. Real images come from the training split; `num_real` None = all of them."""

    name: str
    num_generated: int
    splits: int
    fid_generated: int
    num_real: int | None
    description: str
    truncation: float | None = None  # latents redrawn at |z| > T (`sample --truncation`): never the paper's protocol
    inception_input: str = DEFAULT_INCEPTION_INPUT  # INCEPTION_INPUTS: how images are resized and scaled for it
    quantise: str = "round"  # QUANTISE: how generated images become uint8
    fd_network: str = "inception"  # FD_NETWORKS: the features of the Fréchet distance (IS is always the Inception's)


PROTOCOLS = {
    "standard": Protocol("standard", 50000, 10, 50000, None,
                         "IS 50k in 10 splits; FID 50k generated vs the whole training split"),
    "paper": Protocol("paper", 50000, 10, 5000, 10000,
                      "SN-GAN App. B.1: IS 10 x 5000 generated; FID 5000 generated vs 10000 real (a "
                      "class-stratified sample of the training split); generated images truncated to uint8 as the "
                      "authors' gen_images", quantise="truncate"),
    "quick": Protocol("quick", 5000, 10, 5000, None,
                      "ours, a cheap in-training signal: IS 5000 generated in 10 splits of 500 (biased low against "
                      "10 x 5000); FID 5000 generated vs the whole training split"),
}


def make_protocol(name: str, num_samples: int | None = None, splits: int | None = None,
                  num_real: int | None = None, inception_input: str | None = None,
                  fd_network: str = "inception") -> Protocol:
    """A named protocol, with the number of generated images, IS splits, real images, the Inception input path and
    the Fréchet distance's network optionally changed.

    Args:
        name: standard | paper | quick.
        num_samples: generated images (IS uses all; FID the protocol's count, at most this many).
        splits: IS splits.
        num_real: this many real images, chosen by the reference rule (default: the protocol's).
        inception_input: tf1 | pytorch-fid (`INCEPTION_INPUTS`); None = the protocol's (tf1).
        fd_network: inception (FID) | dinov2_vitl14 (`FD_NETWORKS`: FD in DINOv2 features instead of FID).

    Returns:
        The protocol (its name gains ' (modified)' when a count differs from the definition, and ' (<path>
        input)' when the input path does, ' (FD in <network> features)' for another FD network).
    """
    if name not in PROTOCOLS:
        raise MetricError(f"protocol must be one of {'|'.join(PROTOCOLS)}, got {name!r}")
    if fd_network not in FD_NETWORKS:
        raise MetricError(f"--fd-network must be one of {'|'.join(FD_NETWORKS)}, got {fd_network!r}")
    base = PROTOCOLS[name]
    if fd_network != base.fd_network:
        base = dataclasses.replace(base, name=f"{name} (FD in {fd_network} features)", fd_network=fd_network,
                                   description=f"{base.description}; the Fréchet distance in {fd_network} features "
                                               f"({DINOV2_INPUT}), IS on the Inception")
    if inception_input is not None and check_inception_input(inception_input) != base.inception_input:
        base = dataclasses.replace(base, name=f"{base.name} ({inception_input} input)", inception_input=inception_input,
                                   description=f"{base.description}; Inception input: "
                                               f"{INCEPTION_INPUTS[inception_input]}")
    n = base.num_generated if num_samples is None else num_samples
    s = base.splits if splits is None else splits
    real = base.num_real if num_real is None else num_real
    fid_n = n if base.fid_generated == base.num_generated else min(base.fid_generated, n)
    if n < max(2, s):
        raise MetricError(f"--num-samples {n} is too small: IS needs one image per split ({s}) and FID at least 2")
    if real is not None and real < 2:
        raise MetricError(f"--num-real {real} is too small: FID needs at least 2 real images")
    if (n, s, real) == (base.num_generated, base.splits, base.num_real):
        return base
    changed = f"modified here: IS {n} generated in {s} splits, FID {fid_n} generated"
    changed += "" if real == base.num_real else f" vs {real} real"
    return dataclasses.replace(base, name=f"{base.name} (modified)", num_generated=n, splits=s, fid_generated=fid_n,
                               num_real=real, description=f"{base.description}; {changed}")


def count_label(n: int) -> str:
    """50000 -> '50k', 5000 -> '5k', 6 -> '6'."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def metric_names(protocol: Protocol, real: dict[str, Any] | None) -> tuple[str, str]:
    """(IS name, FID name), e.g. ('is50k', 'fid5k_train10k'), from the protocol and the reference statistics'
    record (split and count); statistics without a record (foreign files) read 'ext'. The Fréchet distance in
    other features names its network first: 'fd_dinov2_vitl14_5k_train10k'."""
    is_name = f"is{count_label(protocol.num_generated)}"
    if protocol.splits != 10:
        is_name += f"_{protocol.splits}splits"
    label = "ext"
    if real is not None and "split" in real and "num_real" in real:
        label = f"{real['split']}{count_label(real['num_real'])}"
    trunc = "" if protocol.truncation is None else f"_trunc{protocol.truncation:g}"  # e.g. fid5k_train10k_trunc0.5
    default = protocol.inception_input == DEFAULT_INCEPTION_INPUT
    path = "" if default else "_" + protocol.inception_input.replace("-", "")
    counts = f"{count_label(protocol.fid_generated)}_{label}{trunc}"
    if protocol.fd_network != "inception":  # the Inception's input path is IS's only: DINOv2 has its own
        return is_name + trunc + path, f"fd_{protocol.fd_network}_{counts}"
    return is_name + trunc + path, f"fid{counts}{path}"  # e.g. fid5k_train10k_pytorchfid
