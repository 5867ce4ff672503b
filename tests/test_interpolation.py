"""Interpolation maths and the generator's class-weight input (the conditional BatchNorm's own maths, mixing
class affines, is checked against a hand-made BN in test_maths_models.py)."""

import pytest
import torch

from sngan.models.resnet import ResNetGenerator
from sngan.sample.interpolation import class_path, latent_path, lerp, slerp


def test_slerp_keeps_the_radius_and_hits_both_ends():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 128, generator=g), torch.randn(3, 128, generator=g)
    b = b / b.norm(dim=1, keepdim=True) * a.norm(dim=1, keepdim=True)  # equal radii
    t = torch.linspace(0, 1, 9)
    path = slerp(a, b, t)  # (3, 9, 128)
    torch.testing.assert_close(path[:, 0], a)
    torch.testing.assert_close(path[:, -1], b)
    torch.testing.assert_close(path.norm(dim=2), a.norm(dim=1, keepdim=True).expand(3, 9))
    # equal angular steps along the great circle
    cos = torch.nn.functional.cosine_similarity(path[:, 1:], path[:, :-1], dim=2)
    torch.testing.assert_close(cos, cos[:, :1].expand_as(cos))


def test_lerp_midpoint_shrinks_gaussian_latents_and_slerp_does_not():
    """Why slerp is the default: the straight-line midpoint of two N(0, I) draws has norm ~sqrt(d / 2)."""
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(256, 128, generator=g), torch.randn(256, 128, generator=g)
    half = torch.tensor([0.5])
    ratio_lerp = (lerp(a, b, half)[:, 0].norm(dim=1) / a.norm(dim=1)).mean()
    ratio_slerp = (slerp(a, b, half)[:, 0].norm(dim=1) / a.norm(dim=1)).mean()
    assert abs(ratio_lerp - 0.5 ** 0.5) < 0.05
    assert abs(ratio_slerp - 1.0) < 0.05


def test_slerp_of_parallel_vectors_falls_back_to_lerp():
    a = torch.ones(1, 4)
    path = slerp(a, 2 * a, torch.tensor([0.0, 0.5, 1.0]))
    assert torch.isfinite(path).all()
    torch.testing.assert_close(path, lerp(a, 2 * a, torch.tensor([0.0, 0.5, 1.0])))


def test_latent_path_is_path_major():
    a, b = torch.zeros(2, 3), torch.ones(2, 3)
    a[1] += 10
    path = latent_path(a, b, 4, "lerp")  # (2 * 4, 3)
    assert path.shape == (8, 3)
    torch.testing.assert_close(path[0], a[0])
    torch.testing.assert_close(path[3], b[0])
    torch.testing.assert_close(path[4], a[1])


def test_class_path_moves_linearly_through_the_classes():
    weights = class_path([2, 0, 1], steps=5, num_classes=4)
    expected = torch.tensor([[0, 0, 1, 0], [0.5, 0, 0.5, 0], [1, 0, 0, 0], [0.5, 0.5, 0, 0], [0, 1, 0, 0]])
    torch.testing.assert_close(weights, expected)


def _randomised(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return module.eval()


@pytest.mark.parametrize("resolution", [32, 48])
def test_generator_accepts_class_weights_as_well_as_labels(resolution):
    generator = _randomised(ResNetGenerator(z_dim=8, resolution=resolution, g_ch=4, num_classes=3))
    z = torch.randn(3, 8)
    labels = torch.tensor([1, 0, 2])
    with torch.no_grad():
        by_label = generator(z, labels)
        by_weight = generator(z, torch.nn.functional.one_hot(labels, 3).float())
        mixed = generator(z, torch.full((3, 3), 1 / 3))
    torch.testing.assert_close(by_weight, by_label, rtol=0, atol=0)
    assert mixed.shape == by_label.shape and not torch.allclose(mixed, by_label)
