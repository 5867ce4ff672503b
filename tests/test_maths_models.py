"""The models' maths against independent references: the authors' Chainer forward passes rewritten here with
functional ops on the modules' (spectrally normalised) weights, torch.linalg for sigma, and hand-made BN.

Every reference reads weights only; nothing here calls a block's `forward`. Discriminators are put in eval mode
before a reference is compared, so spectral norm does not run a power iteration between the two computations.
"""

import pytest
import torch
import torch.nn.functional as F

from sngan.config import ModelConfig
from sngan.models import build_discriminator, build_generator
from sngan.models.layers import ConditionalBatchNorm2d, DBlock, DBlockOptimized

RESNET_D = ModelConfig(arch="resnet", resolution=32, z_dim=8, g_ch=4, d_ch=4)
PROJECTION_D = ModelConfig(arch="resnet", resolution=32, z_dim=8, g_ch=4, d_ch=4, num_classes=3,
                           d_linear_bias=True)
CNN_D = ModelConfig(arch="cnn", resolution=32, z_dim=8, g_ch=16, d_ch=2, d_linear_bias=True)

CHAINER_BN_EPS = 2e-5  # chainer.links.BatchNormalization's default eps, the authors' BN


def _conv(x, m):
    return F.conv2d(x, m.weight, m.bias, stride=m.stride, padding=m.padding)


def _block_reference(block, x):
    """Authors' dis_models/resblocks.py: OptimizedBlock and Block (residual + shortcut)."""
    if isinstance(block, DBlockOptimized):
        h = F.avg_pool2d(_conv(F.relu(_conv(x, block.c1)), block.c2), 2)
        return h + _conv(F.avg_pool2d(x, 2), block.c_sc)
    assert isinstance(block, DBlock)
    h = _conv(F.relu(_conv(F.relu(x), block.c1)), block.c2)
    sc = x if block.c_sc is None else _conv(x, block.c_sc)
    if block.downsample:
        h, sc = F.avg_pool2d(h, 2), F.avg_pool2d(sc, 2)
    return h + sc


def _phi(d, x):
    """phi(x): the blocks, then ReLU and global SUM pooling (authors' SNResNetProjectionDiscriminator)."""
    h = x
    for block in d.blocks:
        h = _block_reference(block, h)
    return F.relu(h).sum(dim=(2, 3))  # (B, C)


def _linear(d, h):
    return h @ d.linear.weight.t().squeeze(1) + (d.linear.bias if d.linear.bias is not None else 0.0)


def _warm_then_eval(d, *args):
    for _ in range(3):
        d(*args)  # some power iterations, so u/v are not the init ones
    return d.eval()


def test_projection_discriminator_equals_linear_phi_plus_embedding_inner_product():
    torch.manual_seed(0)
    d = build_discriminator(PROJECTION_D)
    x, y = torch.randn(5, 3, 32, 32), torch.tensor([0, 1, 2, 1, 0])
    d = _warm_then_eval(d, x, y)
    with torch.no_grad():
        phi = _phi(d, x)
        expected = _linear(d, phi) + (d.embed.weight[y] * phi).sum(dim=1)  # linear(phi) + <embed(y), phi>
        out = d(x, y)
    assert out.shape == (5,)
    assert torch.allclose(out, expected, rtol=1e-5, atol=1e-5)
    # the projection term is not negligible here, so dropping it (or ignoring phi) would fail the check above
    assert (expected - _linear(d, phi)).abs().max() > 1e-2


def test_unconditional_resnet_discriminator_equals_linear_of_phi():
    torch.manual_seed(2)
    d = _warm_then_eval(build_discriminator(RESNET_D), torch.randn(2, 3, 32, 32))
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(d(x), _linear(d, _phi(d, x)), rtol=1e-5, atol=1e-5)


def test_cnn_discriminator_equals_paper_table3_layers_by_hand():
    torch.manual_seed(3)
    d = _warm_then_eval(build_discriminator(CNN_D), torch.randn(2, 3, 32, 32))
    convs = [m for m in d.body if isinstance(m, torch.nn.Conv2d)]
    # Table 3: 3x3 s1, 4x4 s2, 3x3 s1, 4x4 s2, 3x3 s1, 4x4 s2, 3x3 s1; lReLU 0.1 after each; dense to 1
    assert [(c.kernel_size[0], c.stride[0]) for c in convs] == [(3, 1), (4, 2)] * 3 + [(3, 1)]
    x = torch.randn(3, 3, 32, 32)
    h = x
    with torch.no_grad():
        for c in convs:
            h = F.leaky_relu(F.conv2d(h, c.weight, c.bias, stride=c.stride, padding=1), 0.1)
        expected = h.flatten(1) @ d.linear.weight[0] + d.linear.bias
        assert torch.allclose(d(x), expected, rtol=1e-5, atol=1e-5)


def _sn_layers(d):
    return [m for m in d.modules() if hasattr(m, "parametrizations")]


@pytest.mark.parametrize("m", [PROJECTION_D, CNN_D], ids=["resnet-projection", "cnn"])
def test_every_sn_sigma_equals_the_top_singular_value_after_power_iterations(m):
    torch.manual_seed(4)
    d = build_discriminator(m)
    x, y = torch.randn(1, 3, 32, 32), (torch.tensor([1]) if m.num_classes else None)
    with torch.no_grad():
        for _ in range(50):  # one power iteration per training-mode forward
            d(x, y)
    d.eval()
    layers = _sn_layers(d)
    assert len(layers) >= 8
    for layer in layers:
        raw = layer.parametrizations.weight.original.detach()
        true_sigma = torch.linalg.svdvals(raw.reshape(raw.shape[0], -1))[0]  # W as (out, in * kh * kw)
        sigma = raw.norm() / layer.weight.norm()  # the sigma the module divides by
        assert sigma.item() == pytest.approx(true_sigma.item(), rel=1e-3), layer
        top = torch.linalg.svdvals(layer.weight.detach().reshape(raw.shape[0], -1))[0]
        assert top.item() == pytest.approx(1.0, abs=1e-3), layer


def test_one_power_iteration_step_matches_the_hand_written_one():
    """The paper configs' step (sn_algorithm random) is the authors' (Chainer max_singular_value): v <- normalize(u W),
    u <- normalize(v W^T) from the kept u, sigma = u^T W v, u stored."""
    torch.manual_seed(5)
    layer = build_discriminator(RESNET_D).blocks[1].c1  # a 3x3 conv, W as (out, in * 9)
    assert RESNET_D.sn_algorithm == "random"
    sn = layer.parametrizations.weight[0]
    w = layer.parametrizations.weight.original.detach().reshape(layer.out_channels, -1)
    u0 = sn._u.clone()
    normalised = layer.weight.detach()  # training mode: one power iteration, updating u and v in place

    v1 = F.normalize(u0 @ w, dim=0, eps=1e-12)  # v <- normalize(W^T u)
    u1 = F.normalize(w @ v1, dim=0, eps=1e-12)  # u <- normalize(W v)
    sigma = u1 @ w @ v1  # sigma = u^T W v
    assert torch.allclose(sn._u, u1, atol=1e-6) and torch.allclose(sn._v, v1, atol=1e-6)
    assert torch.allclose(normalised.reshape(w.shape), w / sigma, atol=1e-6)
    assert not torch.allclose(u0, u1, atol=1e-4)  # the step really moved u


def _bn_by_hand(x, gamma, beta):
    """Training-mode BatchNorm with biased batch variance and eps 2e-5, then per-sample (B, C) gamma/beta."""
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    return gamma[:, :, None, None] * (x - mean) / torch.sqrt(var + CHAINER_BN_EPS) + beta[:, :, None, None]


def _distinct_class_affines(cbn, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        cbn.gamma.weight.copy_(torch.rand(cbn.gamma.weight.shape, generator=g) * 2 + 0.5)
        cbn.beta.weight.copy_(torch.randn(cbn.beta.weight.shape, generator=g))


def test_conditional_batchnorm_applies_class_y_gamma_and_beta():
    torch.manual_seed(6)
    cbn = ConditionalBatchNorm2d(4, num_classes=3)
    _distinct_class_affines(cbn, seed=0)
    x, y = torch.randn(6, 4, 5, 5), torch.tensor([2, 0, 1, 1, 2, 0])
    expected = _bn_by_hand(x, cbn.gamma.weight[y], cbn.beta.weight[y])
    assert torch.allclose(cbn(x, y), expected, atol=1e-5)


def test_conditional_batchnorm_class_weights_mix_gammas_and_one_hot_equals_labels():
    torch.manual_seed(7)
    cbn = ConditionalBatchNorm2d(4, num_classes=3)
    _distinct_class_affines(cbn, seed=1)
    x, y = torch.randn(4, 4, 3, 3), torch.tensor([1, 2, 0, 1])
    assert torch.allclose(cbn(x, F.one_hot(y, 3).float()), cbn(x, y), atol=1e-6)
    w = torch.tensor([[0.25, 0.75, 0.0]] * 4)  # sum_k w_k gamma_k, sum_k w_k beta_k
    gamma = 0.25 * cbn.gamma.weight[0] + 0.75 * cbn.gamma.weight[1]
    beta = 0.25 * cbn.beta.weight[0] + 0.75 * cbn.beta.weight[1]
    expected = _bn_by_hand(x, gamma.expand(4, -1), beta.expand(4, -1))
    assert torch.allclose(cbn(x, w), expected, atol=1e-5)


def _generator_reference(g, z, y):
    """Authors' gen_models/resnet.py + resblocks.py: l1 -> blocks (CBN-ReLU-up-conv-CBN-ReLU-conv + up-conv
    shortcut) -> BN-ReLU-conv3x3-tanh, with the per-class affine of class y."""
    h = F.linear(z, g.l1.weight, g.l1.bias).view(len(z), -1, g.bottom_width, g.bottom_width)
    for block in g.blocks:
        up = lambda t: F.interpolate(t, scale_factor=2, mode="nearest")  # noqa: E731
        r = F.relu(_bn_by_hand(h, block.b1.gamma.weight[y], block.b1.beta.weight[y]))
        r = _conv(up(r), block.c1)
        r = _conv(F.relu(_bn_by_hand(r, block.b2.gamma.weight[y], block.b2.beta.weight[y])), block.c2)
        h = r + _conv(up(h), block.c_sc)
    n = len(z)
    h = F.relu(_bn_by_hand(h, g.bn.weight.expand(n, -1), g.bn.bias.expand(n, -1)))
    return torch.tanh(_conv(h, g.out))


def test_conditional_generator_equals_the_authors_forward_with_class_affines():
    torch.manual_seed(8)
    g = build_generator(PROJECTION_D)
    for i, block in enumerate(g.blocks):
        _distinct_class_affines(block.b1, seed=10 + i)
        _distinct_class_affines(block.b2, seed=20 + i)
    z, y = torch.randn(6, 8), torch.tensor([0, 1, 2, 2, 1, 0])
    with torch.no_grad():
        out, expected = g(z, y), _generator_reference(g, z, y)
        assert torch.allclose(out, expected, atol=1e-5)
        assert not torch.allclose(g(z, (y + 1) % 3), expected, atol=1e-3)  # the classes matter here
