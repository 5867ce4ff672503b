"""The FID Inception network (pytorch-fid's port of TF `inception-2015-12-05`) and where its weights come from.

The architecture is pytorch-fid's own `InceptionV3` (FID variant, pool3 block), built with `resize_input=False`,
`normalize_input=False`: the resize to 299×299 and the scaling to [-1, 1] are ours, by name (`INCEPTION_INPUTS`):
- `tf1` (the default): what TensorFlow's `inception-2015-12-05` graph does to its input, the graph of the paper's
  IS and FID code (OpenAI's `inception_score.py`, TTUR's `fid.py`): TF1 `ResizeBilinear` (align_corners=False and no
  half-pixel centres: source coordinate = destination · in/out, `tf1_resize_bilinear`), then (x − 128)/128 on the
  0..255 scale. torch-fidelity reproduces the same input (`interpolate_bilinear_2d_like_tensorflow1x`; a test
  compares).
- `pytorch-fid`: pytorch-fid's own input (`resize_input=True`, `normalize_input=True`): `F.interpolate` bilinear with
  half-pixel centres (align_corners=False), then x/127.5 − 1.
The two differ by about half a pixel of shift after the resize. pytorch-fid builds the network and downloads its
weights in one call; we hand it the state dict that `resolve_weights` found instead, so nothing touches the
network unless a download is really needed.

Weights, in order: an explicit path (`--inception-weights`), the torch hub cache
(`<torch.hub.get_dir()>/checkpoints/pt_inception-2015-12-05-6726825d.pth`), then a download through torch hub
(skipped when the environment sets SNGAN_OFFLINE=1). The hub file must have a sha256 starting with 6726825d (the
suffix of its name); any other file is accepted but stamped `custom-<sha256 prefix>`, never as the paper network.

Precision: float32 in eval mode, with TF32 switched off for convolutions and matmuls while features are
extracted, so scores do not depend on the GPU generation (TF32 changes FID in the second decimal).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sngan.errors import InceptionWeightsError, MetricError
from sngan.io import open_input, sha256_file
from sngan.metrics.precision import scoring_precision

WEIGHTS_NAME = "pt_inception-2015-12-05"
WEIGHTS_FILE = f"{WEIGHTS_NAME}-6726825d.pth"
WEIGHTS_SHA256_PREFIX = "6726825d"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_FILE}"
FEATURE_DIM = 2048
NUM_LOGITS = 1008
INCEPTION_SIZE = 299
INCEPTION_INPUTS = {
    "tf1": "TF1 inception-2015-12-05 graph input: ResizeBilinear to 299x299 (align_corners=False, no half-pixel "
           "centres: src = dst*in/out), then (x - 128)/128 on 0..255",
    "pytorch-fid": "pytorch-fid input: F.interpolate bilinear to 299x299 (align_corners=False, half-pixel centres), "
                   "then x/127.5 - 1",
}
DEFAULT_INCEPTION_INPUT = "tf1"  # the paper's: its IS and FID came from the TF graph



@dataclass(frozen=True)
class Weights:
    """A resolved weights file: its state dict, its path and the network name stamped on every score."""

    state_dict: dict[str, torch.Tensor]
    path: Path
    sha256: str

    @property
    def network(self) -> str:
        """`pt_inception-2015-12-05` for the official file, else `custom-<sha256 prefix>`."""
        official = self.sha256.startswith(WEIGHTS_SHA256_PREFIX)
        return WEIGHTS_NAME if official else f"custom-{self.sha256[:8]}"


def hub_weights_path() -> Path:
    """Where torch hub keeps (and pytorch-fid downloads) the weights file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def _how_to_supply() -> str:
    return (f"download {WEIGHTS_URL} and put it at {hub_weights_path()} (or pass --inception-weights PATH; "
            f"train.eval_inception_weights during training)")



def _download(dest: Path) -> None:
    if os.environ.get("SNGAN_OFFLINE", "") not in ("", "0"):
        raise InceptionWeightsError(f"Inception weights {WEIGHTS_FILE} not found and SNGAN_OFFLINE is set: "
                                    f"{_how_to_supply()}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:  # writes a temp file, checks the sha256 prefix, then renames: never a torn file at `dest`
        torch.hub.download_url_to_file(WEIGHTS_URL, str(dest), hash_prefix=WEIGHTS_SHA256_PREFIX, progress=True)
    except Exception as exc:  # offline: URLError/OSError; bad download: RuntimeError from the hash check
        raise InceptionWeightsError(f"Inception weights {WEIGHTS_FILE} not found and the download failed "
                                    f"({type(exc).__name__}): {_how_to_supply()}") from None


def _load(path: Path) -> Weights:
    size = path.stat().st_size
    sha = sha256_file(path)
    if path.name == WEIGHTS_FILE and not sha.startswith(WEIGHTS_SHA256_PREFIX):
        raise InceptionWeightsError(f"{path} is corrupt or truncated ({size:,} bytes, sha256 {sha[:8]}..., "
                                    f"expected {WEIGHTS_SHA256_PREFIX}...): delete it and download "
                                    f"{WEIGHTS_URL} again")
    try:
        with open_input(path) as fh:
            state = torch.load(fh, map_location="cpu", weights_only=True)
    except Exception:  # any failure here means the file is not a readable state dict
        raise InceptionWeightsError(f"{path} ({size:,} bytes) is not a readable PyTorch state dict: "
                                    f"{_how_to_supply()}") from None
    fc = state.get("fc.weight") if isinstance(state, dict) else None
    if fc is None or tuple(fc.shape) != (NUM_LOGITS, FEATURE_DIM):
        raise InceptionWeightsError(f"{path} is not an FID Inception state dict (needs fc.weight of shape "
                                    f"{NUM_LOGITS}x{FEATURE_DIM}): {_how_to_supply()}")
    return Weights(state, path, sha)


def missing_weights(path: str | Path | None = None) -> str | None:
    """Without loading anything: None when `resolve_weights(path)` would find a file (the explicit one, else the hub
    cache), else one line saying what is missing and how to supply it (whether a download will be tried)."""
    if path:
        return None if Path(path).is_file() else (f"Inception weights {path} not found ({WEIGHTS_NAME} weights: "
                                                  f"{WEIGHTS_URL})")
    if hub_weights_path().is_file():
        return None
    offline = os.environ.get("SNGAN_OFFLINE", "") not in ("", "0")
    attempt = "SNGAN_OFFLINE is set, so no download is tried" if offline else "a download will be tried at start"
    return f"Inception weights {WEIGHTS_FILE} not found ({attempt}): {_how_to_supply()}"


def resolve_weights(path: str | Path | None = None) -> Weights:
    """Find, check and load the Inception weights.

    Args:
        path: an explicit weights file; None or "" = the torch hub cache, then a download.

    Returns:
        The loaded weights. Raises InceptionWeightsError (one line naming pt_inception-2015-12-05, the URL and
        where to put the file) when they cannot be had.
    """
    if path:
        path = Path(path)
        if not path.is_file():
            raise InceptionWeightsError(f"--inception-weights {path}: file not found ({WEIGHTS_NAME} weights: "
                                        f"{WEIGHTS_URL})")
        return _load(path)
    cached = hub_weights_path()
    if not cached.is_file():
        _download(cached)
    return _load(cached)


def check_inception_input(name: str) -> str:
    """`name` when it is one of INCEPTION_INPUTS, else a one-line MetricError naming the choices."""
    if name not in INCEPTION_INPUTS:
        raise MetricError(f"Inception input must be one of {'|'.join(INCEPTION_INPUTS)}, got {name!r}")
    return name


def tf1_resize_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) float64 weights of TF1 ResizeBilinear along one axis (align_corners=False,
    half_pixel_centers=False): output i reads source coordinate x = i * (n_in / n_out), in float32 as TF's kernel
    computes it, the pixels floor(x) and min(floor(x) + 1, n_in - 1), weighted 1 - (x - floor(x)) and x - floor(x)."""
    x = torch.arange(n_out, dtype=torch.float32) * torch.tensor(n_in / n_out, dtype=torch.float32)
    low = x.floor().long().clamp(max=n_in - 1)
    high = (low + 1).clamp(max=n_in - 1)
    frac = (x - low.float()).double()
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    m.index_put_((rows, low), 1 - frac, accumulate=True)
    m.index_put_((rows, high), frac, accumulate=True)
    return m


def tf1_resize_bilinear(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) float -> (B, C, size, size) as TF1 `tf.image.resize_bilinear` (align_corners=False), the
    resize inside the inception-2015-12-05 graph: one (size, H) matrix per axis, applied in float32."""
    rows = tf1_resize_matrix(images.shape[-2], size).to(images.device, torch.float32)
    cols = tf1_resize_matrix(images.shape[-1], size).to(images.device, torch.float32)
    return torch.einsum("oh,bchw,pw->bcop", rows, images, cols)  # (B, C, H, W) -> (B, C, size, size)


def inception_input(images: torch.Tensor, how: str) -> torch.Tensor:
    """Images in [0, 1] (B, 3, H, W) -> the network's input (B, 3, 299, 299) by the path `how` names."""
    if check_inception_input(how) == "tf1":
        return (tf1_resize_bilinear(images * 255.0, INCEPTION_SIZE) - 128.0) / 128.0
    resized = F.interpolate(images, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
    return resized * 2.0 - 1.0


def fid_inception_pool3(state: dict[str, torch.Tensor]) -> nn.Sequential:
    """The FID Inception up to its pool3 features, with the weights `state`, from public classes only: torchvision's
    Inception v3 with pytorch-fid's FID blocks in the places pytorch-fid's `fid_inception_v3` puts them, in the
    layer order of pytorch-fid's `InceptionV3` (blocks 0-3). pytorch-fid's own builder downloads the weights
    itself, so its network is assembled here and the state dict that `resolve_weights` found is loaded into it."""
    from pytorch_fid.inception import FIDInceptionA, FIDInceptionC, FIDInceptionE_1, FIDInceptionE_2
    from torchvision.models import inception_v3

    net = inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
    net.Mixed_5b = FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = FIDInceptionE_1(1280)
    net.Mixed_7c = FIDInceptionE_2(2048)
    net.load_state_dict(state)
    return nn.Sequential(  # (B, 3, 299, 299) -> (B, 2048, 1, 1)
        net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, nn.MaxPool2d(kernel_size=3, stride=2),
        net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, nn.MaxPool2d(kernel_size=3, stride=2),
        net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a, net.Mixed_6b, net.Mixed_6c, net.Mixed_6d,
        net.Mixed_6e, net.Mixed_7a, net.Mixed_7b, net.Mixed_7c, nn.AdaptiveAvgPool2d(output_size=(1, 1)))


class InceptionFeatures(nn.Module):
    """pool3 features (B, 2048) and 1008-way logits (B, 1008) of images in [0, 1], through the input path
    `inception_input` (INCEPTION_INPUTS)."""

    def __init__(self, weights: Weights, inception_input: str = DEFAULT_INCEPTION_INPUT):
        super().__init__()
        state = weights.state_dict
        self.net = fid_inception_pool3(state)
        self.register_buffer("fc_weight", state["fc.weight"].float().clone())  # (1008, 2048), no bias: TF's IS
        self.network = weights.network
        self.sha256 = weights.sha256
        self.inception_input = check_inception_input(inception_input)
        self.eval()

    @property
    def features_key(self) -> str:
        """What produced the features: network and input path (`pt_inception-2015-12-05-tf1`); names cached
        reference statistics, so features of one input path are never mixed with another's."""
        return f"{self.network}-{self.inception_input}"

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, H, W) float in [0, 1] -> (pool3 features (B, 2048), logits (B, 1008)), float32."""
        with scoring_precision():
            pool = self.net(inception_input(images.float(), self.inception_input)).flatten(1)  # (B, 2048)
            return pool, pool @ self.fc_weight.T  # (B, 2048) @ (2048, 1008) -> (B, 1008)


def load_inception(path: str | Path | None = None, device: str | torch.device = "cpu",
                   inception_input: str = DEFAULT_INCEPTION_INPUT) -> InceptionFeatures:
    """The FID Inception in eval mode on `device`, with weights from `resolve_weights(path)` and the input path
    `inception_input` (INCEPTION_INPUTS); `.network` and `.inception_input` name them for protocol records."""
    check_inception_input(inception_input)  # before any weights are looked for
    return InceptionFeatures(resolve_weights(path), inception_input).to(device)
