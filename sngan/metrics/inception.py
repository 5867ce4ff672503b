"""The FID Inception network (pytorch-fid's port of TF `inception-2015-12-05`) and where its weights come from.

The architecture is pytorch-fid's own `InceptionV3` (FID variant, `resize_input=True`, `normalize_input=True`):
images in [0, 1] are bilinearly resized to 299×299 with `F.interpolate(align_corners=False)` and scaled to
[-1, 1]. pytorch-fid builds that network and downloads its weights in one call; we hand it the state dict that
`resolve_weights` found instead, so nothing touches the network unless a download is really needed.

Weights, in order: an explicit path (`--inception-weights`), the torch hub cache
(`<torch.hub.get_dir()>/checkpoints/pt_inception-2015-12-05-6726825d.pth`), then a download through torch hub
(skipped when the environment sets SNGAN_OFFLINE=1). The hub file must have a sha256 starting with 6726825d (the
suffix of its name); any other file is accepted but stamped `custom-<sha256 prefix>`, never as the paper network.

Precision: float32 in eval mode, with TF32 switched off for convolutions and matmuls while features are
extracted, so scores do not depend on the GPU generation (TF32 changes FID in the second decimal).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import torch
from torch import nn

from sngan.errors import InceptionWeightsError
from sngan.metrics.precision import scoring_precision

WEIGHTS_NAME = "pt_inception-2015-12-05"
WEIGHTS_FILE = f"{WEIGHTS_NAME}-6726825d.pth"
WEIGHTS_SHA256_PREFIX = "6726825d"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_FILE}"
FEATURE_DIM = 2048
NUM_LOGITS = 1008



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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    sha = _sha256(path)
    if path.name == WEIGHTS_FILE and not sha.startswith(WEIGHTS_SHA256_PREFIX):
        raise InceptionWeightsError(f"{path} is corrupt or truncated ({size:,} bytes, sha256 {sha[:8]}..., "
                                    f"expected {WEIGHTS_SHA256_PREFIX}...): delete it and download "
                                    f"{WEIGHTS_URL} again")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # any failure here means the file is not a readable state dict
        raise InceptionWeightsError(f"{path} ({size:,} bytes) is not a readable PyTorch state dict: "
                                    f"{_how_to_supply()}") from None
    fc = state.get("fc.weight") if isinstance(state, dict) else None
    if fc is None or tuple(fc.shape) != (NUM_LOGITS, FEATURE_DIM):
        raise InceptionWeightsError(f"{path} is not an FID Inception state dict (needs fc.weight of shape "
                                    f"{NUM_LOGITS}x{FEATURE_DIM}): {_how_to_supply()}")
    return Weights(state, path, sha)


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


class InceptionFeatures(nn.Module):
    """pool3 features (B, 2048) and 1008-way logits (B, 1008) of images in [0, 1]."""

    def __init__(self, weights: Weights):
        super().__init__()
        from pytorch_fid import inception as pf

        state = weights.state_dict
        with mock.patch.object(pf, "load_state_dict_from_url", lambda *args, **kwargs: state):
            self.net = pf.InceptionV3([pf.InceptionV3.BLOCK_INDEX_BY_DIM[FEATURE_DIM]], resize_input=True,
                                      normalize_input=True, use_fid_inception=True)
        self.register_buffer("fc_weight", state["fc.weight"].float().clone())  # (1008, 2048), no bias: TF's IS
        self.network = weights.network
        self.sha256 = weights.sha256
        self.eval()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, H, W) float in [0, 1] -> (pool3 features (B, 2048), logits (B, 1008)), float32."""
        with scoring_precision():
            pool = self.net(images.float())[0].flatten(1)  # (B, 2048, 1, 1) -> (B, 2048)
            return pool, pool @ self.fc_weight.T  # (B, 2048) @ (2048, 1008) -> (B, 1008)


def load_inception(path: str | Path | None = None, device: str | torch.device = "cpu") -> InceptionFeatures:
    """The FID Inception in eval mode on `device`, with weights from `resolve_weights(path)`.

    Args:
        path: explicit weights file, or None for the hub cache / download.
        device: where the network runs.

    Returns:
        The network; `.network` names it for protocol records.
    """
    return InceptionFeatures(resolve_weights(path)).to(device)
