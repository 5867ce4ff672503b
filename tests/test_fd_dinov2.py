"""FD in DINOv2 features (`--fd-network dinov2_vitl14`): loaded through torch.hub from a local hub repository (a tiny
random stand-in for facebookresearch/dinov2; IS on the small stand-in Inception of tests/conftest.py), named and
recorded, equal to the Fréchet distance of features computed here with torch-fidelity's DINOv2 input, cached apart
from the Inception's, and explained in one line offline."""

import importlib.util
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torchvision
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
from typer.testing import CliRunner

from sngan.cli import app
from sngan.config import load_config
from sngan.evaluation.reference import reference_path
from sngan.metrics import frechet_distance, inception_score_from_logits
from sngan.metrics.dinov2 import load_dinov2
from sngan.metrics.inception import load_inception

runner = CliRunner()
DIM = 4  # the stand-in's feature size (ViT-L/14 gives 1024); fewer than the images, so covariances are full rank

HUBCONF = '''"""A tiny stand-in for facebookresearch/dinov2's hub entry: dinov2_vitl14, (B, 3, 224, 224) -> (B, 4)."""
dependencies = ["torch"]

import torch
from torch import nn


class TinyVit(nn.Module):
    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.patch = nn.Conv2d(3, 8, 14, stride=14)  # (B, 3, 224, 224) -> (B, 8, 16, 16), like ViT-/14 patches
        self.head = nn.Linear(8 * 16 * 16, 4)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=gen) * 0.05

    def forward(self, x):
        assert x.shape[1:] == (3, 224, 224), x.shape
        return self.head(torch.tanh(self.patch(x)).flatten(1))


def dinov2_vitl14(pretrained=True):
    return TinyVit().eval()
'''


@pytest.fixture
def hub_repo(tmp_path):
    repo = tmp_path / "dinov2"
    repo.mkdir()
    (repo / "hubconf.py").write_text(HUBCONF)
    return repo


def _images(tmp_path, name, n, seed):
    images = np.random.default_rng(seed).integers(0, 256, (n, 12, 12, 3), dtype=np.uint8)
    np.savez(tmp_path / name, x=images)
    return images


def _eval(tmp_path, weights, *args):
    out = tmp_path / "records.jsonl"
    result = runner.invoke(app, ["eval", *args, "--num-samples", "10", "--splits", "2", "--device", "cpu",
                                 "--no-progress", "--inception-weights", str(weights), "--json", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text().splitlines()[-1]), result.output


def _features_here(repo, images: np.ndarray) -> np.ndarray:
    """The stand-in's features as torch-fidelity 0.4's FeatureExtractorDinoV2 feeds the hub model: uint8 as float,
    TF1-like bilinear resize to 224, ImageNet mean/std times 255, float32."""
    spec = importlib.util.spec_from_file_location("standin_hubconf", repo / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    model = hubconf.dinov2_vitl14(pretrained=True)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    x = interpolate_bilinear_2d_like_tensorflow1x(x, size=(224, 224), align_corners=False)
    x = torchvision.transforms.functional.normalize(x, (255 * 0.485, 255 * 0.456, 255 * 0.406),
                                                    (255 * 0.229, 255 * 0.224, 255 * 0.225))
    with torch.no_grad():
        return model(x).double().numpy()


def test_fd_dinov2_is_named_recorded_and_equals_the_distance_of_features_computed_here(
        stand_in_inception, hub_repo, tmp_path):
    weights, _ = stand_in_inception
    fake = _images(tmp_path, "fake.npz", 10, 1)
    real = _images(tmp_path, "real.npz", 12, 2)
    dino = ["--fd-network", "dinov2_vitl14", "--dinov2-repo", str(hub_repo)]
    record, printed = _eval(tmp_path, weights, "--images", str(tmp_path / "fake.npz"), "--ref",
                            str(tmp_path / "real.npz"), *dino)
    assert set(record["metrics"]) == {"is10_2splits", "is10_2splits_std", "fd_dinov2_vitl14_10_ref12"}
    assert record["fd_network"] == record["network"] == "dinov2_vitl14"
    assert record["feature_input"] == "dinov2" and "224x224" in record["resize"]
    assert record["is_network"].startswith("custom-") and record["inception_input"] == "tf1"
    assert "FD in dinov2_vitl14 features" in record["protocol"]
    assert "\nFD   " in printed and "fd_dinov2_vitl14_10_ref12" in printed

    f, r = _features_here(hub_repo, fake), _features_here(hub_repo, real)
    expected = frechet_distance(f.mean(0), np.cov(f, rowvar=False), r.mean(0), np.cov(r, rowvar=False))
    assert expected > 1e-3  # the two sets differ: a distance of features of the wrong images would not match
    # float32 features through two resize implementations (one matrix product vs torch-fidelity's gathers) agree
    # to ~1e-6 relative; moments of 10-12 such rows keep that order
    assert record["metrics"]["fd_dinov2_vitl14_10_ref12"] == pytest.approx(expected, rel=1e-4)

    # IS stays on the Inception: its logits of the same images, in the same two splits
    net = load_inception(weights)
    logits = net(torch.from_numpy(fake).permute(0, 3, 1, 2).float() / 255)[1]
    is_mean, is_std = inception_score_from_logits(logits.double().numpy(), 2)
    assert record["metrics"]["is10_2splits"] == pytest.approx(is_mean, rel=1e-6)
    assert record["metrics"]["is10_2splits_std"] == pytest.approx(is_std, rel=1e-4, abs=1e-9)


def test_dinov2_statistics_score_the_same_and_never_mix_with_the_inceptions(stand_in_inception, hub_repo, tmp_path):
    weights, _ = stand_in_inception
    fake = _images(tmp_path, "fake.npz", 10, 1)
    real = _images(tmp_path, "real.npz", 12, 2)
    dino = ["--fd-network", "dinov2_vitl14", "--dinov2-repo", str(hub_repo)]
    result = runner.invoke(app, ["stats", "--images", str(tmp_path / "real.npz"), "--out", str(tmp_path / "s.npz"),
                                 "--device", "cpu", *dino])  # no Inception weights needed: IS is not computed
    assert result.exit_code == 0, result.output
    assert "dinov2_vitl14, dinov2 input" in result.output
    with np.load(tmp_path / "s.npz") as stats:
        record = json.loads(str(stats["protocol"]))
        r = _features_here(hub_repo, real)
        assert stats["mu"] == pytest.approx(r.mean(0), rel=1e-4, abs=1e-6)
        assert stats["sigma"] == pytest.approx(np.cov(r, rowvar=False), rel=1e-3, abs=1e-7)
    assert record["network"] == "dinov2_vitl14" and record["feature_input"] == "dinov2"
    assert "inception_input" not in record  # the Inception played no part
    by_stats, _ = _eval(tmp_path, weights, "--images", str(tmp_path / "fake.npz"), "--stats", str(tmp_path / "s.npz"),
                        *dino)
    f = _features_here(hub_repo, fake)
    expected = frechet_distance(f.mean(0), np.cov(f, rowvar=False), r.mean(0), np.cov(r, rowvar=False))
    assert by_stats["metrics"]["fd_dinov2_vitl14_10_ref12"] == pytest.approx(expected, rel=1e-4)

    result = runner.invoke(app, ["eval", "--images", str(tmp_path / "fake.npz"), "--stats", str(tmp_path / "s.npz"),
                                 "--num-samples", "10", "--splits", "2", "--device", "cpu", "--no-progress",
                                 "--inception-weights", str(weights)])
    assert result.exit_code == 1
    assert "computed with dinov2_vitl14 but this evaluation uses custom-" in result.output

    # the cache: one file per feature network (and weights), so neither is read for the other
    cfg = load_config("configs/demo.yaml")
    inception = SimpleNamespace(features_key="pt_inception-2015-12-05-tf1")  # InceptionFeatures' key for the paper's
    paths = {reference_path(cfg.data, 32, 0, "train", 100, net) for net in (inception, load_dinov2(hub_repo))}
    assert len(paths) == 2 and any("-dinov2_vitl14-" in p.name for p in paths)


def test_offline_without_dinov2_says_where_to_put_it_in_one_line(stand_in_inception, hub_repo, offline_hub,
                                                                  tmp_path):
    import torch.hub

    weights, _ = stand_in_inception
    _images(tmp_path, "fake.npz", 10, 1)
    args = ["eval", "--images", str(tmp_path / "fake.npz"), "--ref", str(tmp_path / "fake.npz"), "--num-samples",
            "10", "--splits", "2", "--device", "cpu", "--no-progress", "--inception-weights", str(weights),
            "--fd-network", "dinov2_vitl14"]
    cached = offline_hub.parent / "facebookresearch_dinov2_main"
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0, result.output
    assert "SNGAN_OFFLINE" in result.output and str(cached) in result.output
    assert str(offline_hub / "dinov2_vitl14_pretrain.pth") in result.output

    shutil.copytree(hub_repo, cached)  # the code in the hub cache, the weights not
    assert torch.hub.get_dir() == str(offline_hub.parent)
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and result.output.strip().count("\n") == 0, result.output
    assert "DINOv2 weights dinov2_vitl14_pretrain.pth not found" in result.output

    offline_hub.mkdir(parents=True)
    (offline_hub / "dinov2_vitl14_pretrain.pth").write_bytes(b"read by hubconf.py")  # the stand-in ignores it
    result = runner.invoke(app, [*args, "--json", str(tmp_path / "r.jsonl")])
    assert result.exit_code == 0, result.output
    assert "fd_dinov2_vitl14_10_ref10" in json.loads((tmp_path / "r.jsonl").read_text())["metrics"]


def test_dinov2_options_are_checked_before_any_work(tmp_path, hub_repo):
    _images(tmp_path, "fake.npz", 10, 1)
    base = ["eval", "--images", str(tmp_path / "fake.npz"), "--ref", str(tmp_path / "fake.npz")]
    cases = {("--fd-network", "dinov3"): "--fd-network must be one of inception|dinov2_vitl14",
             ("--fd-network", "dinov2_vitl14", "--metrics", "is,fid,kid"): "kid are computed on the Inception's",
             ("--dinov2-repo", str(hub_repo)): "--dinov2-repo applies to --fd-network dinov2_vitl14",
             ("--fd-network", "dinov2_vitl14", "--dinov2-repo", str(tmp_path)): "no hubconf.py there"}
    for extra, message in cases.items():
        result = runner.invoke(app, [*base, *extra, "--inception-weights", str(tmp_path / "fake.npz")])
        assert result.exit_code == 1 and message in result.output, (extra, result.output)


def test_a_checkpoint_scores_fd_dinov2_against_cached_dinov2_statistics(tiny_runs, stand_in_inception, hub_repo,
                                                                          tmp_path):
    """`eval --ckpt --fd-network dinov2_vitl14`: reference statistics built from the dataset in DINOv2 features,
    cached under the network's name and read back by the next evaluation."""
    weights, _ = stand_in_inception
    cache = tmp_path / "cache"
    args = ["--ckpt", str(tiny_runs["uncond_ckpt"]), "--protocol", "quick", "--fd-network", "dinov2_vitl14",
            "--dinov2-repo", str(hub_repo), "--set", "data.num_images=12", "--set", f"data.cache_dir={cache}"]
    first, printed = _eval(tmp_path, weights, *args)
    assert set(first["metrics"]) == {"is10_2splits", "is10_2splits_std", "fd_dinov2_vitl14_10_train12"}
    assert "computing reference statistics" in printed
    cached = list(cache.rglob("*.npz"))
    assert len(cached) == 1 and "-dinov2_vitl14-" in cached[0].name and "inception" not in cached[0].name
    second, printed = _eval(tmp_path, weights, *args)
    assert "computing reference statistics" not in printed  # read from the cache
    assert second["metrics"] == first["metrics"]
