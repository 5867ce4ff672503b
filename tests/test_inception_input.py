"""The Inception input paths: tf1 is the TF inception-2015-12-05 graph's resize and scaling (checked against
torch-fidelity's TF1 resize and a hand-computed case), pytorch-fid is pytorch-fid's; statistics of one path are
never used with the other."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

from sngan.config import DataConfig
from sngan.errors import MetricError
from sngan.evaluation.protocols import make_protocol, metric_names
from sngan.evaluation.reference import check_reference, reference_stats
from sngan.metrics.inception import inception_input, load_inception, tf1_resize_bilinear
from sngan.metrics.stats import ReferenceStats

SIZES = [(32, 32), (48, 48), (64, 64), (128, 128), (17, 40), (400, 350)]  # up and down, square and not


@pytest.mark.parametrize("size", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_tf1_input_equals_torch_fidelity_tf1_resize_then_x_minus_128_over_128(size):
    """torch-fidelity's `interpolate_bilinear_2d_like_tensorflow1x` (its FeatureExtractorInceptionV3 then computes
    (x - 128) / 128) on random uint8 images: equal to float32 rounding (a few ulp of 255)."""
    g = torch.Generator().manual_seed(sum(size))
    images = torch.randint(0, 256, (2, 3, *size), generator=g, dtype=torch.uint8).float()
    expected = interpolate_bilinear_2d_like_tensorflow1x(images, size=(299, 299), align_corners=False)
    assert (tf1_resize_bilinear(images, 299) - expected).abs().max() <= 8e-5  # 255 has an ulp of 1.5e-5
    ours = inception_input(images / 255, "tf1")
    assert (ours - (expected - 128) / 128).abs().max() <= 2e-6
    pytorch_fid = F.interpolate(images / 255, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
    assert (inception_input(images / 255, "pytorch-fid") - pytorch_fid).abs().max() <= 1e-6
    assert (ours - pytorch_fid).abs().mean() > 1e-2  # the two paths really differ (half a pixel of shift)


def test_tf1_resize_by_hand_two_pixels_to_four():
    """TF1 ResizeBilinear, align_corners=False, no half-pixel centres: output i reads x = i * in/out = i/2, so
    [a, b] -> [a, (a+b)/2, b, b] (the last reads x = 1.5, clamped to the last pixel); pytorch's half-pixel
    interpolation gives [a, a + (b-a)/4, a + 3(b-a)/4, b] instead."""
    row = torch.tensor([[[[10.0, 30.0]]]])  # (1, 1, 1, 2)
    assert tf1_resize_bilinear(row.expand(1, 1, 2, 2), 4)[0, 0, 0].tolist() == [10.0, 20.0, 30.0, 30.0]
    half_pixel = F.interpolate(row.expand(1, 1, 2, 2), size=(4, 4), mode="bilinear", align_corners=False)
    assert half_pixel[0, 0, 0].tolist() == [10.0, 15.0, 25.0, 30.0]
    assert inception_input(torch.full((1, 3, 5, 7), 128 / 255), "tf1").abs().max() <= 1e-6  # 128 -> 0
    assert inception_input(torch.zeros(1, 3, 5, 7), "tf1").eq(-1).all()


def test_tf1_network_features_are_pytorch_fid_blocks_on_the_tf1_input(inception_weights):
    from pytorch_fid.inception import InceptionV3

    from tests.helpers import pytorch_fid_reference_net

    path, state = inception_weights
    ours = load_inception(path)  # the default is tf1
    assert ours.inception_input == "tf1" and ours.features_key.endswith("-tf1")
    reference = pytorch_fid_reference_net(state)
    reference.resize_input = reference.normalize_input = False  # pytorch-fid's blocks, our input
    assert isinstance(reference, InceptionV3)
    images = torch.randint(0, 256, (2, 3, 32, 32), generator=torch.Generator().manual_seed(1)).float()
    tf_input = (interpolate_bilinear_2d_like_tensorflow1x(images, size=(299, 299), align_corners=False) - 128) / 128
    with torch.no_grad():
        expected = reference(tf_input)[0].flatten(1)
    assert (ours(images / 255)[0] - expected).abs().max() <= 1e-4


class KeyedNet:
    """A cheap network with the InceptionFeatures interface, for the cache key."""

    network, sha256 = "fake-net", "0" * 64

    def __init__(self, how):
        self.inception_input, self.features_key, self._buffer = how, f"fake-net-{how}", torch.zeros(1)

    def buffers(self):
        return iter([self._buffer])

    def __call__(self, images):
        features = inception_input(images, self.inception_input).mean(dim=(2, 3))
        return features, features


def test_cached_statistics_are_keyed_by_input_path_and_never_mixed(tmp_path):
    data = DataConfig(name="synthetic", num_images=6, root=str(tmp_path / "data"))
    tf1 = reference_stats(data, 32, 0, "train", None, KeyedNet("tf1"), 3, log=lambda s: None)
    pt = reference_stats(data, 32, 0, "train", None, KeyedNet("pytorch-fid"), 3, log=lambda s: None)
    assert tf1.path != pt.path and tf1.path.name.endswith("-fake-net-tf1.npz")
    assert (tf1.protocol["inception_input"], pt.protocol["inception_input"]) == ("tf1", "pytorch-fid")
    assert not np.allclose(tf1.mu, pt.mu)
    with pytest.raises(MetricError, match="pytorch-fid Inception input but this evaluation uses tf1"):
        check_reference(pt, KeyedNet("tf1"))
    old = ReferenceStats(pt.mu, pt.sigma, {"network": "fake-net", "resize": "bilinear"})  # written before paths
    with pytest.raises(MetricError, match="pytorch-fid Inception input"):
        check_reference(old, KeyedNet("tf1"))
    check_reference(old, KeyedNet("pytorch-fid"))
    check_reference(ReferenceStats(pt.mu, pt.sigma, None), KeyedNet("tf1"))  # a foreign file: no record


def test_protocols_default_to_tf1_and_the_other_path_is_named():
    paper = make_protocol("paper")
    assert paper.inception_input == "tf1" and paper.name == "paper"
    other = make_protocol("paper", inception_input="pytorch-fid")
    assert other.name == "paper (pytorch-fid input)" and "F.interpolate" in other.description
    real = {"split": "train", "num_real": 10000}
    assert metric_names(paper, real) == ("is50k", "fid5k_train10k")
    assert metric_names(other, real) == ("is50k_pytorchfid", "fid5k_train10k_pytorchfid")
    with pytest.raises(MetricError, match="Inception input must be one of tf1|pytorch-fid, got 'tf2'"):
        make_protocol("paper", inception_input="tf2")


def test_uint8_images_reach_the_network_as_rgb_nchw_over_255():
    """uint8 (B, H, W, 3) with pixel (h, w, c) = 100 c + 10 h + w, typed by hand on a 2x3 image: the network's
    input (B, 3, H, W) holds that value / 255 at [c, h, w]: channels in RGB order, rows and columns not swapped,
    [0, 1] (the Inception path then maps it to [-1, 1] itself)."""
    from sngan.metrics.stats import uint8_to_unit

    image = np.zeros((1, 2, 3, 3), dtype=np.uint8)
    for h in range(2):
        for w in range(3):
            for c in range(3):
                image[0, h, w, c] = 100 * c + 10 * h + w
    unit = uint8_to_unit(torch.from_numpy(image))
    assert unit.shape == (1, 3, 2, 3) and unit.dtype == torch.float32 and unit.is_contiguous()
    for h in range(2):
        for w in range(3):
            for c in range(3):
                assert unit[0, c, h, w].item() == pytest.approx((100 * c + 10 * h + w) / 255, abs=1e-7)
