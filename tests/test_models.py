"""The networks: the paper models' parameter counts (and the size check that predicts them), shapes through forward
and backward, SN on every D weight and none in G, the authors' initialisation."""

import pytest
import torch

from sngan.config import ModelConfig, load_config
from sngan.errors import ConfigError
from sngan.models import build_discriminator, build_generator, check_model_size, count_parameters
from tests.helpers import CONFIGS

# Paper-exact counts (issue table for the first three; the others derived from Tables 3 and 5, see docs/reproducing.md).
EXPECTED = {
    "cifar10_resnet": (4_276_739, 1_053_824),
    "imagenet128_projection": (41_996_931, 30_041_857),
    "imagenet128_unconditional": (32_150_787, 29_017_857),
    "cifar10_cnn": (3_828_739, 2_935_873),
    "stl10_cnn": (5_170_179, 2_946_113),
    "stl10_resnet": (4_878_083, 10_141_441),
    "cifar10_resnet_conditional": (4_304_387, 1_055_104),  # authors' sn_cifar10_conditional.yml
    "imagenet64_projection": (17_974_915, 11_165_441),  # authors' resnet_64 / snresnet_64, 1000 classes
    "imagenet128_concat": (41_996_931, 30_538_625),  # authors' sn_concat.yml (SNResNetConcatDiscriminator)
}

TINY_MODELS = [
    ModelConfig(arch="resnet", resolution=32, z_dim=8, g_ch=4, d_ch=4),
    ModelConfig(arch="resnet", resolution=32, z_dim=8, g_ch=4, d_ch=4, num_classes=3),
    ModelConfig(arch="resnet", resolution=48, z_dim=8, g_ch=2, d_ch=2, d_linear_bias=True),
    ModelConfig(arch="resnet", resolution=64, z_dim=8, g_ch=1, d_ch=1, num_classes=5, d_linear_bias=True),
    ModelConfig(arch="resnet", resolution=128, z_dim=8, g_ch=1, d_ch=1, num_classes=5, d_linear_bias=True),
    ModelConfig(arch="resnet", resolution=32, z_dim=8, g_ch=4, d_ch=4, num_classes=3, d_conditioning="concat"),
    ModelConfig(arch="cnn", resolution=32, z_dim=8, g_ch=16, d_ch=4, d_linear_bias=True),
    ModelConfig(arch="cnn", resolution=48, z_dim=8, g_ch=16, d_ch=4, d_linear_bias=True),
]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parameter_counts_match_the_paper(name):
    model = load_config(CONFIGS / f"{name}.yaml").model
    counts = (count_parameters(build_generator(model)), count_parameters(build_discriminator(model)))
    assert counts == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_size_check_counts_the_paper_models_exactly_without_building_them(name):
    """`check_model_size` (the counts it refuses by) fits three tiny builds; at the paper widths it must give
    the paper models' own counts, each network built in full by the test above."""
    assert check_model_size(load_config(CONFIGS / f"{name}.yaml").model) == EXPECTED[name]


@pytest.mark.parametrize("m", [
    ModelConfig(arch="resnet", resolution=48, z_dim=7, g_ch=13, d_ch=21, num_classes=4, d_linear_bias=True),
    ModelConfig(arch="resnet", resolution=32, z_dim=5, g_ch=11, d_ch=9, d_norm="batch"),
    ModelConfig(arch="resnet", resolution=32, z_dim=5, g_ch=6, d_ch=10, d_norm="weight", d_norm_gamma=True),
    ModelConfig(arch="cnn", resolution=32, z_dim=9, g_ch=40, d_ch=5, d_norm="layer"),
], ids=["resnet48-cond", "resnet32-bn", "resnet32-wn-gamma", "cnn32-ln"])
def test_the_size_check_counts_other_widths_exactly(m):
    assert check_model_size(m) == (count_parameters(build_generator(m)), count_parameters(build_discriminator(m)))


def test_the_size_check_bounds_a_cnn_width_not_divisible_by_8_from_above():
    m = ModelConfig(arch="cnn", resolution=32, z_dim=9, g_ch=43, d_ch=5)
    g, d = check_model_size(m)
    assert g >= count_parameters(build_generator(m)) and d == count_parameters(build_discriminator(m))


@pytest.mark.parametrize("m", TINY_MODELS, ids=lambda m: f"{m.arch}{m.resolution}-c{m.num_classes}-{m.d_conditioning}")
def test_forward_backward_shapes(m):
    torch.manual_seed(0)
    g, d = build_generator(m), build_discriminator(m)
    z = torch.randn(3, m.z_dim)
    y = torch.randint(0, m.num_classes, (3,)) if m.num_classes else None
    x = g(z, y)
    assert x.shape == (3, 3, m.resolution, m.resolution)
    assert x.abs().max() <= 1
    logits = d(x, y)
    assert logits.shape == (3,)
    logits.sum().backward()
    assert all(p.grad is not None for p in g.parameters())
    assert all(p.grad is not None for p in d.parameters())


def test_every_discriminator_weight_is_spectrally_normalised_and_generator_has_none():
    for m in TINY_MODELS:
        d = build_discriminator(m)
        for mod in d.modules():
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.Embedding)):
                assert hasattr(mod, "parametrizations") and "weight" in mod.parametrizations
        g = build_generator(m)
        assert not any(hasattr(mod, "parametrizations") for mod in g.modules())


def test_conditional_bn_has_per_class_gamma_and_beta_only():
    m = ModelConfig(arch="resnet", resolution=32, z_dim=8, g_ch=4, d_ch=4, num_classes=7)
    g = build_generator(m)
    cbn = g.blocks[0].b1
    assert cbn.gamma.weight.shape == (7, 4) and torch.all(cbn.gamma.weight == 1) and torch.all(cbn.beta.weight == 0)
    assert cbn.bn.weight is None


def test_glorot_gains_follow_the_authors():
    import math

    torch.manual_seed(0)
    g = build_generator(ModelConfig(arch="resnet", resolution=32, z_dim=128, g_ch=256))
    w = g.blocks[0].c1.weight  # 3x3 residual conv: gain sqrt(2)
    bound = math.sqrt(2) * math.sqrt(6 / (256 * 9 * 2))
    assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound
    w_sc = g.blocks[0].c_sc.weight  # 1x1 shortcut: gain 1
    bound_sc = math.sqrt(6 / (256 * 2))
    assert w_sc.abs().max() <= bound_sc and w_sc.abs().max() > 0.95 * bound_sc


def test_cnn_refuses_classes_and_bad_resolution():
    with pytest.raises(ConfigError, match="num_classes"):
        build_generator(ModelConfig(arch="cnn", num_classes=10))
    with pytest.raises(ConfigError, match="model.resolution"):
        build_discriminator(ModelConfig(arch="cnn", resolution=128))


def test_concat_discriminator_uses_the_label_and_refuses_unconditional_models():
    torch.manual_seed(0)
    m = ModelConfig(arch="resnet", resolution=32, z_dim=8, g_ch=4, d_ch=4, num_classes=3, d_conditioning="concat")
    d = build_discriminator(m).eval()
    x = torch.randn(1, 3, 32, 32)
    assert not torch.allclose(d(x, torch.tensor([0])), d(x, torch.tensor([2])))
    assert d.tail[0].c1.weight.shape[1] == 4 + 128  # block 4 reads the features and the 128-d embedding
    with pytest.raises(ConfigError, match="d_conditioning"):
        build_discriminator(ModelConfig(num_classes=0, d_conditioning="concat"))
