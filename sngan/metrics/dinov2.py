"""DINOv2 ViT-L/14 features, the optional network of the Fréchet distance (`sngan eval --fd-network dinov2_vitl14`).

Stein et al. (NeurIPS 2023, "Exposing flaws of generative model evaluation metrics") found the Fréchet distance in
DINOv2 ViT-L/14 features closer to human judgement than FID; EDM2 (Karras et al. 2024) reports it as FD_DINOv2. The
network comes from its authors' torch hub entry (`facebookresearch/dinov2`, `dinov2_vitl14`) through
`torch.hub.load`, the public loader torch-fidelity 0.4's `FeatureExtractorDinoV2` uses, and its input is
torch-fidelity's: the 0..255 images resized to 224×224 by TF1 `ResizeBilinear` (`tf1_resize_bilinear`, the
Inception's `tf1` resize), normalised by ImageNet's mean and std times 255, then the CLS features (B, 1024) the hub
model returns, in float32 (`scoring_precision`).

Where the network comes from, in order: a local checkout given by `--dinov2-repo DIR` (`source='local'`); the torch
hub cache `<torch.hub.get_dir()>/facebookresearch_dinov2_main` (loaded as a local folder, so nothing is asked of
GitHub), whose `hubconf.py` reads the weights from `<torch.hub.get_dir()>/checkpoints/dinov2_vitl14_pretrain.pth`
(downloading them when absent); then a download of the repository (`trust_repo=True`: asking for this network is
trusting its authors' hub code), skipped when the environment sets SNGAN_OFFLINE=1. Scores are stamped with the
sha256 of the loaded state dict, so features of other weights are never mixed in a cache or a comparison.

IS stays on the Inception: DINOv2 has no classifier, so `DinoFeatures` carries the Inception for the logits.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import nn

from sngan.errors import FeatureNetworkError
from sngan.metrics.inception import FEATURE_DIM, INCEPTION_INPUTS, InceptionFeatures, tf1_resize_bilinear
from sngan.metrics.precision import scoring_precision

DINOV2_MODEL = "dinov2_vitl14"  # the torch hub entry, stamped in metric names: fd_dinov2_vitl14_5k_train10k
DINOV2_HUB = "facebookresearch/dinov2"
DINOV2_SIZE = 224
DINOV2_WEIGHTS_FILE = "dinov2_vitl14_pretrain.pth"  # what the hub entry's hubconf.py reads from checkpoints/
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DINOV2_INPUT = ("torch-fidelity's DINOv2 input: 0..255, TF1 ResizeBilinear to 224x224 (align_corners=False), "
                "(x - 255*ImageNet mean) / (255*ImageNet std), CLS features, float32")
FD_NETWORKS = ("inception", DINOV2_MODEL)  # --fd-network: what the Fréchet distance is computed in


def hub_repo_dir() -> Path:
    """Where `torch.hub.load('facebookresearch/dinov2', ...)` keeps the repository's code."""
    return Path(torch.hub.get_dir()) / "facebookresearch_dinov2_main"


def hub_weights_path() -> Path:
    """Where the hub entry's `hubconf.py` reads (and downloads) the ViT-L/14 weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / DINOV2_WEIGHTS_FILE


def _how_to_supply() -> str:
    return (f"clone https://github.com/{DINOV2_HUB} to {hub_repo_dir()} and put "
            f"https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/{DINOV2_WEIGHTS_FILE} at {hub_weights_path()} "
            f"(or pass --dinov2-repo DIR, a checkout whose hubconf.py defines {DINOV2_MODEL})")


def state_sha256(module: nn.Module) -> str:
    """sha256 of a module's state dict (names, dtypes, shapes and bytes, in name order): which weights made a
    feature, whatever file or repository they came from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy())  # raw bytes
    return digest.hexdigest()


def load_dinov2_model(repo: str | Path | None = None) -> nn.Module:
    """The hub's `dinov2_vitl14` (pretrained), from `repo`, the hub cache or a download (the module docstring's
    order); FeatureNetworkError, one line saying where to put the files, when it cannot be had."""
    offline = os.environ.get("SNGAN_OFFLINE", "") not in ("", "0")
    if repo:
        if not (Path(repo) / "hubconf.py").is_file():
            raise FeatureNetworkError(f"--dinov2-repo {repo}: no hubconf.py there (a checkout of "
                                      f"https://github.com/{DINOV2_HUB})")
        where, source = str(repo), "local"
    elif (hub_repo_dir() / "hubconf.py").is_file():
        if offline and not hub_weights_path().is_file():
            raise FeatureNetworkError(f"DINOv2 weights {DINOV2_WEIGHTS_FILE} not found and SNGAN_OFFLINE is set: "
                                      f"{_how_to_supply()}")
        where, source = str(hub_repo_dir()), "local"
    elif offline:
        raise FeatureNetworkError(f"DINOv2 ({DINOV2_HUB}) not in the torch hub cache and SNGAN_OFFLINE is set: "
                                  f"{_how_to_supply()}")
    else:
        where, source = f"{DINOV2_HUB}:main", "github"
    try:
        kwargs = {"trust_repo": True} if source == "github" else {}
        model = torch.hub.load(where, DINOV2_MODEL, source=source, pretrained=True, **kwargs)
    except Exception as exc:  # the hub code's own failures (network, a missing file, an import) end in one line
        raise FeatureNetworkError(f"cannot load {DINOV2_MODEL} from {where} ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else ''}): {_how_to_supply()}") from None
    if not isinstance(model, nn.Module):
        raise FeatureNetworkError(f"{where}: {DINOV2_MODEL}() returned a {type(model).__name__}, not a torch module")
    return model


def dinov2_input(images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] (B, 3, H, W) -> the DINOv2 input (B, 3, 224, 224), as torch-fidelity feeds it."""
    resized = tf1_resize_bilinear(images * 255.0, DINOV2_SIZE)  # (B, 3, H, W) -> (B, 3, 224, 224), 0..255
    mean, std = (torch.tensor(v, device=images.device).view(1, 3, 1, 1) * 255.0 for v in (IMAGENET_MEAN, IMAGENET_STD))
    return (resized - mean) / std


class DinoFeatures(nn.Module):
    """DINOv2 CLS features (B, D) for the Fréchet distance and, when `inception` is given, the Inception's logits
    (B, 1008) for IS: the same `(features, logits)` pair `InceptionFeatures` returns, so scoring runs unchanged."""

    fd_network = DINOV2_MODEL
    feature_input = "dinov2"
    probe: torch.Tensor  # (1, 3, 8, 8) buffer, registered in __init__

    def __init__(self, model: nn.Module, inception: InceptionFeatures | None = None):
        super().__init__()
        self.model = model.float().eval().requires_grad_(False)
        self.inception = inception
        self.network = DINOV2_MODEL
        self.sha256 = state_sha256(self.model)
        self.inception_input = inception.inception_input if inception is not None else None
        # where the features are computed (scoring reads a network's device from its first buffer)
        self.register_buffer("probe", torch.full((1, 3, 8, 8), 0.5, device=next(self.model.parameters()).device))
        self.feature_dim = int(self.features(self.probe).shape[1])  # (1, D): D = 1024 for ViT-L/14
        self.eval()

    @property
    def features_key(self) -> str:
        """Names cached reference statistics: the network and its weights (`dinov2_vitl14-<sha256 prefix>`)."""
        return f"{self.network}-{self.sha256[:8]}"

    def stats_record(self) -> dict[str, str]:
        """What a statistics record says of the features."""
        return {"network": self.network, "weights_sha256": self.sha256, "feature_input": self.feature_input,
                "resize": DINOV2_INPUT}

    def score_record(self) -> dict[str, str | None]:
        """What a score record says of the networks: DINOv2 for FD, the Inception for IS."""
        inception = self.inception
        return {**self.stats_record(), "is_network": None if inception is None else inception.network,
                "is_weights_sha256": None if inception is None else inception.sha256,
                "inception_input": self.inception_input,
                "inception_resize": None if inception is None else INCEPTION_INPUTS[inception.inception_input]}

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) float in [0, 1] -> CLS features (B, D), float32."""
        with scoring_precision():
            return self.model(dinov2_input(images.float())).float()  # (B, 3, 224, 224) -> (B, D)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, H, W) float in [0, 1] -> (DINOv2 features (B, D), Inception logits (B, 1008); (B, 0)
        without the Inception)."""
        features = self.features(images)
        if self.inception is None:  # statistics of real images need no IS
            return features, features.new_empty(len(features), 0)
        return features, self.inception(images)[1]


ScoringNetwork = InceptionFeatures | DinoFeatures  # net(images) -> (FD features (B, D), IS logits (B, 1008))


def fd_network_of(net: ScoringNetwork) -> str:
    """What `net`'s features are (FD_NETWORKS): `dinov2_vitl14` for DinoFeatures, else the Inception's."""
    return net.fd_network if isinstance(net, DinoFeatures) else "inception"


def feature_input_of(net: ScoringNetwork) -> str:
    """How `net` feeds images for its features: `dinov2`, or the Inception input path."""
    return net.feature_input if isinstance(net, DinoFeatures) else net.inception_input


def feature_dim_of(net: ScoringNetwork) -> int:
    """The dimension of `net`'s features."""
    return net.feature_dim if isinstance(net, DinoFeatures) else FEATURE_DIM


def features_of(net: ScoringNetwork, images: torch.Tensor) -> torch.Tensor:
    """The Fréchet distance's features (B, D) of images in [0, 1], without IS's logits (DINOv2: no Inception pass)."""
    return net.features(images) if isinstance(net, DinoFeatures) else net(images)[0]


def stats_record(net: ScoringNetwork) -> dict[str, str]:
    """What a statistics record says of the features' network."""
    if isinstance(net, DinoFeatures):
        return net.stats_record()
    return {"network": net.network, "weights_sha256": net.sha256, "inception_input": net.inception_input,
            "resize": INCEPTION_INPUTS[net.inception_input]}


def score_record(net: ScoringNetwork) -> dict[str, str | None]:
    """What a score record says of the networks (DINOv2 for FD and the Inception for IS, or the Inception)."""
    return net.score_record() if isinstance(net, DinoFeatures) else dict(stats_record(net))


def load_dinov2(repo: str | Path | None = None, device: str | torch.device = "cpu",
                inception: InceptionFeatures | None = None) -> DinoFeatures:
    """DINOv2 ViT-L/14 in eval mode on `device` (from `load_dinov2_model(repo)`), with `inception` for IS."""
    return DinoFeatures(load_dinov2_model(repo).to(device), inception)
