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


# --- layouts, the concat discriminator, initialisation, BatchNorm, the standard CNN ------------------------------

# (channels, side) after G's dense layer and each G block, and after each D block, for base widths 2 (g) and 3 (d),
# transcribed from the authors' files: gen_models/resnet_32.py + dis_models/snresnet_32.py (32: every G block ch,
# blocks 2-3 of D without downsampling), resnet_64.py + snresnet_64.py (64), resnet.py + snresnet.py (128); 48 from
# the paper's Table 5 (dense 6x6x512, up-blocks 256-128-64; D down-blocks 64-128-256-512, then 1024 unchanged).
AUTHORS_SHAPES = {
    32: ([(2, 4), (2, 8), (2, 16), (2, 32)], [(3, 16), (3, 8), (3, 8), (3, 8)]),
    48: ([(16, 6), (8, 12), (4, 24), (2, 48)], [(3, 24), (6, 12), (12, 6), (24, 3), (48, 3)]),
    64: ([(32, 4), (16, 8), (8, 16), (4, 32), (2, 64)], [(3, 32), (6, 16), (12, 8), (24, 4), (48, 2)]),
    128: ([(32, 4), (32, 8), (16, 16), (8, 32), (4, 64), (2, 128)],
          [(3, 64), (6, 32), (12, 16), (24, 8), (48, 4), (48, 4)]),
}


def _shapes_after(modules, run):
    seen = []
    hooks = [m.register_forward_hook(lambda mod, args, out: seen.append((out.shape[1], out.shape[-1])))
             for m in modules]
    with torch.no_grad():
        run()
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("resolution", sorted(AUTHORS_SHAPES))
def test_block_widths_and_sides_follow_the_authors_layout_per_resolution(resolution):
    m = ModelConfig(arch="resnet", resolution=resolution, z_dim=4, g_ch=2, d_ch=3)
    g, d = build_generator(m), build_discriminator(m)
    z = torch.randn(2, 4)
    g_shapes = _shapes_after([g.l1, *g.blocks], lambda: g(z))
    g_shapes[0] = (g_shapes[0][1] // g.bottom_width ** 2, g.bottom_width)  # the dense output, as it is reshaped
    d_shapes = _shapes_after(list(d.blocks), lambda: d(torch.randn(1, 3, resolution, resolution)))
    assert (g_shapes, d_shapes) == AUTHORS_SHAPES[resolution]


def test_concat_discriminator_equals_the_authors_forward():
    """Authors' SNResNetConcatDiscriminator.__call__: blocks 1-3, the class embedding broadcast over the feature
    map and concatenated on the channels, blocks 4-6, ReLU, global sum pooling, the final linear; no projection."""
    torch.manual_seed(9)
    m = ModelConfig(arch="resnet", resolution=32, z_dim=8, g_ch=4, d_ch=4, num_classes=3, d_conditioning="concat",
                    d_linear_bias=True)
    x, y = torch.randn(3, 3, 32, 32), torch.tensor([2, 0, 1])
    d = _warm_then_eval(build_discriminator(m), x, y)
    with torch.no_grad():
        h = x
        for block in d.head:
            h = _block_reference(block, h)
        emb = d.embed.weight[y]  # (B, 128)
        h = torch.cat([h, emb[:, :, None, None].expand(-1, -1, h.shape[2], h.shape[3])], dim=1)
        for block in d.tail:
            h = _block_reference(block, h)
        expected = _linear(d, F.relu(h).sum(dim=(2, 3)))
        assert torch.allclose(d(x, y), expected, rtol=1e-5, atol=1e-5)


def _glorot_bound(weight, gain):
    """Glorot-uniform's bound gain * sqrt(6 / (fan_in + fan_out)), with Chainer's fans (initializer.get_fans):
    fan_in = in * k * k, fan_out = out * k * k."""
    receptive = weight[0, 0].numel()
    fan_out, fan_in = weight.shape[0] * receptive, weight.shape[1] * receptive
    return gain * (6 / (fan_in + fan_out)) ** 0.5


def _raw_weight(layer):
    """The weight as initialised: the original under a normalisation's parametrization, else the weight."""
    return layer.parametrizations.weight.original if hasattr(layer, "parametrizations") else layer.weight


def test_resnet_weights_start_as_the_authors_glorot_gains_with_zero_biases():
    """Authors' resblocks.py (G and D): GlorotUniform(sqrt(2)) on the residual 3x3 convs, GlorotUniform() on the
    1x1 shortcuts, and on G's dense layer and output conv, D's final linear and class embedding; Chainer's links
    start every bias at 0. On the raw weights: every |w| within the bound, and, on each tensor of >= 64 entries,
    the largest above 0.9 of it, which a gain 1/sqrt(2) smaller cannot reach (drawn with the right gain, 64 entries
    all fall below 0.9 of the bound with probability 0.9^64 < 0.2%; the seed is fixed)."""
    import math

    torch.manual_seed(10)
    m = ModelConfig(arch="resnet", resolution=32, z_dim=16, g_ch=8, d_ch=8, num_classes=16)
    g, d = build_generator(m), build_discriminator(m)
    expected = [(g.l1.weight, 1.0), (g.out.weight, 1.0), (_raw_weight(d.embed), 1.0)]
    for block in [*g.blocks, *d.blocks]:
        expected += [(_raw_weight(block.c1), math.sqrt(2)), (_raw_weight(block.c2), math.sqrt(2))]
        if block.c_sc is not None:
            expected.append((_raw_weight(block.c_sc), 1.0))
    assert len(expected) == 3 + 3 * 3 + 2 * 4 + 2  # G: 3 blocks with a shortcut; D: 4 blocks, 2 shortcuts
    for w, gain in expected:
        bound = _glorot_bound(w, gain)
        assert w.abs().max().item() <= bound, (tuple(w.shape), gain)
        assert w.numel() < 64 or w.abs().max().item() > 0.9 * bound, (tuple(w.shape), gain)
    assert sum(w.numel() >= 64 for w, gain in expected if gain == 1.0) == 7  # all gain-1 tensors but D's first sc
    w = _raw_weight(d.linear)  # (1, 8): too few entries for the lower check
    assert w.abs().max().item() <= _glorot_bound(w, 1.0)
    biases = [(n, p) for net in (g, d) for n, p in net.named_parameters() if n.endswith("bias")]
    assert len(biases) >= 10 and all(torch.all(p == 0) for _, p in biases), [n for n, p in biases if p.any()]


def test_d_activation_norms_start_with_a_zero_shift():
    for kind in ("batch", "layer"):
        d = build_discriminator(ModelConfig(arch="resnet", d_ch=4, d_norm=kind))
        betas = [p for n, p in d.named_parameters() if n.endswith(".beta")]
        assert len(betas) == 7 and all(torch.all(b == 0) for b in betas)  # 2 per block, 1 in the first block


def _batch_norms(net):
    return [m for m in net.modules() if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d))]


@pytest.mark.parametrize("arch", ["resnet", "cnn"])
def test_generator_batch_norms_use_chainers_eps_and_decay(arch):
    """Every BN of G as Chainer's BatchNormalization (eps 2e-5, decay 0.9): on a batch of variance ~1e-6, where the
    eps matters (1e-5 instead would scale the output by about 1.4), the output is (x - mean) / sqrt(var + 2e-5)
    with the biased batch variance; the running mean and variance move 0.1 of the way to the batch mean and the
    unbiased batch variance."""
    g = build_generator(ModelConfig(arch=arch, resolution=32, z_dim=4, g_ch=16, num_classes=3 if arch == "resnet"
                                    else 0))
    norms = _batch_norms(g)
    assert len(norms) == (7 if arch == "resnet" else 4)
    gen = torch.Generator().manual_seed(11)
    for bn in norms:
        shape = (6, bn.num_features, 3, 3) if isinstance(bn, torch.nn.BatchNorm2d) else (54, bn.num_features)
        x = (torch.randn(shape, generator=gen) * 1e-3 + torch.randn(shape[1], generator=gen).view(
            1, -1, *[1] * (len(shape) - 2))).double()
        axes = (0, 2, 3) if x.dim() == 4 else (0,)
        bn = bn.double().train()
        r_mean, r_var = torch.rand(bn.num_features, generator=gen).double(), 1 + torch.rand(
            bn.num_features, generator=gen).double()
        bn.running_mean.copy_(r_mean)
        bn.running_var.copy_(r_var)
        mean, var = x.mean(dim=axes, keepdim=True), x.var(dim=axes, unbiased=False, keepdim=True)
        assert var.max() < 3e-6  # well under the eps: the eps sets the output's scale
        with torch.no_grad():
            out = bn(x)
        assert torch.allclose(out, (x - mean) / torch.sqrt(var + 2e-5), rtol=1e-6, atol=1e-9)
        n = x.numel() // bn.num_features
        assert torch.allclose(bn.running_mean, 0.9 * r_mean + 0.1 * mean.flatten(), rtol=1e-9, atol=1e-12)
        assert torch.allclose(bn.running_var, 0.9 * r_var + 0.1 * var.flatten() * n / (n - 1), rtol=1e-9, atol=1e-12)


CNN_G = ModelConfig(arch="cnn", resolution=32, z_dim=8, g_ch=16)


def test_cnn_generator_equals_paper_table3_layers_by_hand():
    """Table 3a: z -> dense (M_g x M_g x 512) -> [4x4 stride-2 deconv, BN, ReLU] x 3 (halving the width) -> 3x3
    stride-1 conv to 3 -> tanh, with a BN and ReLU after the dense layer (PFN's SN-DCGAN: 1-d BN before the
    reshape). BN by hand in training mode."""
    torch.manual_seed(12)
    g = build_generator(CNN_G)

    def bn(h, m):
        axes = (0, 2, 3) if h.dim() == 4 else (0,)
        mean, var = h.mean(dim=axes, keepdim=True), h.var(dim=axes, unbiased=False, keepdim=True)
        shape = (1, -1, 1, 1) if h.dim() == 4 else (1, -1)
        return (h - mean) / torch.sqrt(var + CHAINER_BN_EPS) * m.weight.view(shape) + m.bias.view(shape)

    with torch.no_grad():
        for m in _batch_norms(g):  # a visible affine, not the 1 and 0 they start at
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.5, 0.5)
        z = torch.randn(5, 8)
        h = F.relu(bn(F.linear(z, g.l0.weight, g.l0.bias), g.bn0)).view(5, 16, 4, 4)
        deconvs = [m for m in g.body if isinstance(m, torch.nn.ConvTranspose2d)]
        assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0]) for c in deconvs] == [
            (16, 8, 4, 2), (8, 4, 4, 2), (4, 2, 4, 2)]
        for c, m in zip(deconvs, _batch_norms(g)[1:], strict=True):
            h = F.relu(bn(F.conv_transpose2d(h, c.weight, c.bias, stride=2, padding=1), m))
        last = g.body[-2]
        expected = torch.tanh(F.conv2d(h, last.weight, last.bias, padding=1))
        assert expected.shape == (5, 3, 32, 32)
        assert torch.allclose(g(z), expected, atol=1e-5)


def test_cnn_weights_start_from_normal_0_02_with_zero_biases():
    """PFN's SN-DCGAN (chainer-gan-lib): every weight of the standard CNN drawn from N(0, 0.02^2), biases 0. The
    sample standard deviation of n >= 2048 normal draws is within 10% of sigma with overwhelming probability
    (its relative sd is about 1 / sqrt(2n) < 1.6%)."""
    torch.manual_seed(13)
    g, d = build_generator(CNN_G), build_discriminator(ModelConfig(arch="cnn", resolution=32, d_ch=8))
    weights = [m.weight for m in g.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d,
                                                               torch.nn.ConvTranspose2d))]
    weights += [m.parametrizations.weight.original for m in d.modules() if hasattr(m, "parametrizations")]
    assert len(weights) == 5 + 8
    big = [w for w in weights if w.numel() >= 2048]
    assert len(big) >= 6
    for w in big:
        assert w.std().item() == pytest.approx(0.02, rel=0.1) and abs(w.mean().item()) < 0.002
    biases = [m.bias for net in (g, d) for m in net.modules()
              if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and m.bias is not None]
    assert len(biases) == 12 and all(torch.all(b == 0) for b in biases)


@pytest.mark.parametrize("kind", ["batch", "layer"])
def test_cnn_discriminator_norms_follow_every_conv_but_the_first(kind):
    """Our placement (DCGAN's, documented in sngan.models.layers): conv1 -> lReLU, then for convs 2-7 conv ->
    BN/LN (no gamma, learnt beta) -> lReLU(0.1); the dense layer reads the flattened features. By hand."""
    torch.manual_seed(14)
    d = build_discriminator(ModelConfig(arch="cnn", resolution=32, d_ch=2, d_norm=kind, d_linear_bias=True))
    with torch.no_grad():
        for n, p in d.named_parameters():
            if n.endswith(".beta"):
                p.uniform_(-1, 1)
    convs = [m for m in d.body if isinstance(m, torch.nn.Conv2d)]
    betas = [p for n, p in d.named_parameters() if n.endswith(".beta")]
    assert len(betas) == 6
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        h = F.leaky_relu(F.conv2d(x, convs[0].weight, convs[0].bias, stride=1, padding=1), 0.1)
        for c, beta in zip(convs[1:], betas, strict=True):
            h = F.conv2d(h, c.weight, c.bias, stride=c.stride, padding=1)
            axes = (0, 2, 3) if kind == "batch" else (1, 2, 3)
            mean, var = h.mean(dim=axes, keepdim=True), h.var(dim=axes, unbiased=False, keepdim=True)
            h = F.leaky_relu((h - mean) / torch.sqrt(var + CHAINER_BN_EPS) + beta.view(1, -1, 1, 1), 0.1)
        expected = h.flatten(1) @ d.linear.weight[0] + d.linear.bias
        assert torch.allclose(d.train()(x), expected, rtol=1e-4, atol=1e-4)
