"""The paper's comparison methods (section 4.1): each one's maths against a hand computation, and each trains."""

import math

import pytest
import torch
from torch import nn

from sngan.config import ModelConfig, load_config
from sngan.errors import ConfigError
from sngan.models import build_discriminator
from sngan.models.layers import UnitRowNorm, norm_weight
from sngan.train.losses import LOSSES
from sngan.train.regularizers import clip_weights, gradient_penalty, orthonormal_penalty
from tests.helpers import write_config

METHODS = {  # the paper's section 4.1 methods (every one but WGAN-GP on the standard loss), App. E, and ours
    "SN": {"model": {"d_norm": "spectral"}, "loss": {"type": "nonsaturating"}},
    "WC": {"model": {"d_norm": "none"}, "loss": {"type": "nonsaturating"}, "optim": {"d_weight_clip": 0.01}},
    "GAN-GP": {"model": {"d_norm": "none"}, "loss": {"type": "nonsaturating", "gp_weight": 10.0}},
    "WGAN-GP": {"model": {"d_norm": "none"}, "loss": {"type": "wasserstein", "gp_weight": 10.0}},
    "BN": {"model": {"d_norm": "batch"}, "loss": {"type": "nonsaturating"}},
    "LN": {"model": {"d_norm": "layer"}, "loss": {"type": "nonsaturating"}},
    "WN": {"model": {"d_norm": "weight"}, "loss": {"type": "nonsaturating"}},
    "orthonormal": {"model": {"d_norm": "none"}, "loss": {"type": "nonsaturating", "orthonormal_weight": 1e-4}},
    "WGAN-GP+SN": {"model": {"d_norm": "spectral", "d_norm_gamma": True},
                   "loss": {"type": "wasserstein", "gp_weight": 10.0}},
    "WGAN-GP+WN": {"model": {"d_norm": "weight", "d_norm_gamma": True},
                   "loss": {"type": "wasserstein", "gp_weight": 10.0}},
    "WGAN-clip": {"model": {"d_norm": "none"}, "loss": {"type": "wasserstein"}, "optim": {"d_weight_clip": 0.01}},
}


def test_wasserstein_losses_on_hand_logits():
    d_loss, g_loss = LOSSES["wasserstein"]
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-2.0, 0.0, 5.0])
    assert d_loss(real, fake).item() == pytest.approx(1.0 - 2.0)  # E[D(fake)] - E[D(real)]
    assert g_loss(fake).item() == pytest.approx(-1.0)


def test_gradient_penalty_of_a_linear_critic_is_closed_form():
    torch.manual_seed(0)
    w = torch.randn(3 * 4 * 4)
    critic = lambda x: x.flatten(1) @ w  # grad_x D = w everywhere  # noqa: E731
    x_real, x_fake = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    penalty = gradient_penalty(critic, x_real, x_fake)
    assert penalty.item() == pytest.approx((w.norm().item() - 1) ** 2, rel=1e-5)


def test_gradient_penalty_reaches_the_critic_weights():
    lin = nn.Linear(6, 1)
    gradient_penalty(lambda x: lin(x).squeeze(1), torch.randn(4, 6), torch.randn(4, 6)).backward()
    expected = 2 * (lin.weight.norm() - 1) * lin.weight / lin.weight.norm()  # d/dw (||w|| - 1)^2
    assert torch.allclose(lin.weight.grad, expected.detach(), atol=1e-5)


def test_weight_normalisation_divides_each_output_unit_by_its_norm():
    conv = nn.Conv2d(2, 3, 3)
    raw = conv.weight.detach().clone()
    norm_weight(conv, "weight")
    expected = raw / raw.flatten(1).norm(dim=1).view(3, 1, 1, 1)
    assert torch.allclose(conv.weight, expected, atol=1e-6)
    assert torch.allclose(conv.weight.flatten(1).norm(dim=1), torch.ones(3), atol=1e-6)
    assert isinstance(conv.parametrizations.weight[0], UnitRowNorm)


def _normalised_inputs_and_outputs(kind: str, arch: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(input, output) of every activation normalisation of a `kind` D on one training batch."""
    from sngan.models.layers import ShiftedNorm

    torch.manual_seed(0)
    d = build_discriminator(ModelConfig(arch=arch, d_ch=4, d_norm=kind)).train()
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    norms = [m for m in d.modules() if isinstance(m, ShiftedNorm)]
    for m in norms:
        with torch.no_grad():
            m.beta.uniform_(-1, 1)  # a shift to find in the output, not only the zeros it starts at
        m.register_forward_hook(lambda mod, args, out: seen.append((args[0].detach(), out.detach() - mod.beta.view(
            1, -1, 1, 1).detach())))
    d(torch.randn(5, 3, 32, 32))
    assert len(seen) == len(norms) > 0
    return seen


@pytest.mark.parametrize("arch", ["resnet", "cnn"])
def test_layer_norm_normalises_each_sample_over_all_its_channels_and_pixels(arch):
    """LN (Ba et al. 2016, the paper's LN rows): per sample, one mean and variance over (C, H, W); an instance norm
    (per sample and channel) or a batch norm would fail here."""
    for x, out in _normalised_inputs_and_outputs("layer", arch):
        x = x.double()
        mean = x.mean(dim=(1, 2, 3), keepdim=True)  # (N, 1, 1, 1)
        var = x.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
        expected = (x - mean) / torch.sqrt(var + 2e-5)  # BN_EPS, Chainer's default
        assert torch.allclose(out.double(), expected, atol=1e-4)


@pytest.mark.parametrize("arch", ["resnet", "cnn"])
def test_batch_norm_normalises_each_channel_over_the_batch_and_pixels(arch):
    """BN in training mode (Ioffe & Szegedy 2015): per channel, one mean and (biased) variance over (N, H, W)."""
    for x, out in _normalised_inputs_and_outputs("batch", arch):
        x = x.double()
        mean = x.mean(dim=(0, 2, 3), keepdim=True)  # (1, C, 1, 1)
        var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        expected = (x - mean) / torch.sqrt(var + 2e-5)
        assert torch.allclose(out.double(), expected, atol=1e-4)


@pytest.mark.parametrize("arch", ["resnet", "cnn"])
def test_batch_norm_discriminator_in_eval_mode_scores_each_image_alone(arch):
    """BN keeps running statistics, as torch's and Chainer's BatchNormalization: after training forwards, an
    eval-mode D normalises with them, so an image's logit does not depend on the batch it comes in."""
    torch.manual_seed(1)
    d = build_discriminator(ModelConfig(arch=arch, d_ch=4, d_norm="batch")).train()
    with torch.no_grad():
        for _ in range(2):
            d(torch.randn(6, 3, 32, 32))
        x = torch.randn(3, 3, 32, 32)
        d.eval()
        alone = torch.cat([d(x[i:i + 1]) for i in range(3)])
        assert torch.allclose(d(x), alone, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(d.train()(x), alone, atol=1e-3)  # in training mode the batch matters


def test_weight_normalisation_in_the_built_discriminator_has_unit_rows():
    """WN (Salimans & Kingma 2016, without its multiplier): every conv and dense weight of D, as (out, in * k * k),
    has rows of norm 1 that point where the raw weight's rows point."""
    d = build_discriminator(ModelConfig(arch="cnn", d_ch=4, d_norm="weight"))
    layers = [m for m in d.modules() if hasattr(m, "parametrizations")]
    assert len(layers) == 8  # Table 3b: 7 convs and the dense layer
    for m in layers:
        raw = m.parametrizations.weight.original.detach().double().flatten(1)
        used = m.weight.detach().double().flatten(1)
        assert torch.allclose(used, raw / torch.linalg.norm(raw, dim=1, keepdim=True), atol=1e-6)


def test_orthonormal_penalty_on_a_known_matrix():
    lin = nn.Linear(3, 2, bias=False)  # W (2, 3): wide, so W^T W (3 x 3) has rank <= 2
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 1.0]]))
    w = lin.weight.detach()
    by_hand = ((w.T @ w - torch.eye(3)) ** 2).sum().item() - (3 - 2)  # eq. 14 minus its floor d_in - d_out
    assert by_hand == pytest.approx(26.0 - 1.0)
    assert orthonormal_penalty(lin).item() == pytest.approx(by_hand)
    tall = nn.Linear(2, 3, bias=False)  # W (3, 2): W^T W (2 x 2), no floor
    with torch.no_grad():
        tall.weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]]))
    # W^T W = [[2, 1], [1, 5]]; minus I: [[1, 1], [1, 4]]; squared entries 1 + 1 + 1 + 16
    assert orthonormal_penalty(tall).item() == pytest.approx(19.0)
    nn.init.orthogonal_(lin.weight)
    assert orthonormal_penalty(lin).item() == pytest.approx(0.0, abs=1e-5)


def test_clipping_bounds_the_layers_weights_and_leaves_biases():
    """Paper section 4.1: "set the clipping constant c at 0.01 for the convolutional weight of each layer"."""
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Linear(4, 4))
    with torch.no_grad():
        for m in net:
            m.weight.mul_(100)
            m.bias.fill_(-3)
    clip_weights(net, 0.01)
    for m in net:
        assert m.weight.abs().max().item() == pytest.approx(0.01)
        assert torch.all(m.bias == -3)


def test_clipping_clamps_each_weight_entry_to_minus_c_c():
    """Arjovsky et al.'s clamp(-c, c), entry by entry: inside values stay, outside ones go to the nearer bound."""
    lin = nn.Linear(3, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[-3.0, -0.005, 0.004], [2.0, -0.01, 0.0]]))
    clip_weights(lin, 0.01)
    expected = torch.tensor([[-0.01, -0.005, 0.004], [0.01, -0.01, 0.0]])
    assert torch.allclose(lin.weight, expected, rtol=0, atol=1e-9)


def test_learnt_gamma_starts_at_sigma_of_w_and_scales_the_normalised_weight():
    """App. E eq. 32: W~ = gamma W / sigma(W), gamma learnt, started (as the authors' use_gamma) at the largest
    singular value of the initial W; for WN at sigma(W) / sigma(W_WN). Checked against float64 SVDs."""
    for kind in ("spectral", "weight"):
        torch.manual_seed(0)
        d = build_discriminator(ModelConfig(arch="cnn", d_ch=2, d_norm=kind, d_norm_gamma=True))
        if kind == "spectral":
            from sngan.models.spectral import start_sn_exact

            start_sn_exact(d)
        layers = [m for m in d.modules() if hasattr(m, "parametrizations")]
        assert len(layers) == 8  # 7 convs and the dense layer (Table 3b)
        for m in layers:
            raw = m.parametrizations.weight.original.detach().double().flatten(1)
            sigma = torch.linalg.svdvals(raw)[0]
            gamma = m.parametrizations.weight[1].gamma
            rows = raw / raw.norm(dim=1, keepdim=True)
            start = sigma if kind == "spectral" else sigma / torch.linalg.svdvals(rows)[0]
            assert gamma.item() == pytest.approx(start.item(), rel=1e-6)
            used = m.weight.detach().double().flatten(1)
            expected = gamma.item() * (raw / sigma if kind == "spectral" else rows)
            assert torch.allclose(used, expected, rtol=1e-5, atol=1e-7)
        d.eval()(torch.randn(2, 3, 32, 32)).sum().backward()
        assert all(m.parametrizations.weight[1].gamma.grad is not None for m in layers)  # gamma is trained


@pytest.mark.parametrize("arch", ["resnet", "cnn"])
@pytest.mark.parametrize("kind", ["spectral", "weight", "batch", "layer", "none"])
def test_every_normalisation_builds_and_gives_logits(arch, kind):
    d = build_discriminator(ModelConfig(arch=arch, d_ch=4, d_norm=kind))
    assert d(torch.randn(3, 3, 32, 32)).shape == (3,)
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in d.modules())
    has_ln = any(isinstance(m, nn.GroupNorm) for m in d.modules())
    assert (has_bn, has_ln) == (kind == "batch", kind == "layer")
    assert all(not (isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.affine) for m in d.modules())  # no gamma


def test_spectral_default_keeps_the_state_dict_keys():
    keys = set(build_discriminator(ModelConfig(arch="cnn", d_ch=4)).state_dict())
    assert "body.2.parametrizations.weight.original" in keys and not any("beta" in k for k in keys)


@pytest.mark.parametrize("extra, message", [
    ({"optim": {"d_weight_clip": 0.01}}, "needs model.d_norm none"),
    ({"model": {"d_norm": "batch"}, "loss": {"gp_weight": 10.0}}, "needs model.d_norm none, spectral or weight"),
    ({"loss": {"orthonormal_weight": 1.0}}, "needs model.d_norm none"),
    ({"model": {"d_norm": "none"}, "loss": {"type": "wasserstein"}}, "needs a Lipschitz constraint"),
    ({"model": {"d_norm": "none"}, "loss": {"gp_weight": 10.0}, "optim": {"d_weight_clip": 0.01}}, "choose one"),
    ({"model": {"d_norm_gamma": True}}, "d_norm_gamma' needs"),
    ({"model": {"d_norm": "weight", "d_norm_gamma": True}}, "d_norm_gamma. needs"),
])
def test_combinations_the_paper_does_not_use_are_refused(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(write_config(tmp_path / "c.yaml", extra))
    assert "\n" not in str(info.value)


def _d_losses(method: str, tmp_path, seed: int = 3):
    """(configured D loss, plain adversarial D loss, state, batches) of one D step's inputs for `method`."""
    from sngan.train.state import build_state
    from sngan.train.steps import regularized_d_loss

    cfg = load_config(write_config(tmp_path / f"{method}.yaml", METHODS[method]), ["model.sn_algorithm=svd"])
    state = build_state(cfg, torch.device("cpu"), log=lambda _: None)
    x_real = torch.randn(4, 3, 32, 32)
    x_fake = torch.randn(4, 3, 32, 32)
    d_loss, _ = LOSSES[cfg.loss.type]
    plain = d_loss(state.d.module(x_real), state.d.module(x_fake))
    torch.manual_seed(seed)
    total = regularized_d_loss(state, plain, x_real, x_fake, None)
    return total, plain, state, (x_real, x_fake)


@pytest.mark.parametrize("method", ["GAN-GP", "WGAN-GP", "WGAN-GP+SN"])
def test_configured_d_loss_adds_lambda_times_the_penalty_computed_sample_by_sample(method, tmp_path):
    total, plain, state, (x_real, x_fake) = _d_losses(method, tmp_path)
    torch.manual_seed(3)
    eps = torch.rand(4)  # the interpolation weights the step drew
    penalties = []
    for i in range(4):  # one sample at a time: grad of D at x_hat_i = eps_i x_i + (1 - eps_i) G(z)_i
        x_hat = (eps[i] * x_real[i:i + 1] + (1 - eps[i]) * x_fake[i:i + 1]).requires_grad_(True)
        (grad,) = torch.autograd.grad(state.d.module(x_hat).sum(), x_hat)
        penalties.append((grad.norm() - 1) ** 2)
    expected = plain + 10.0 * torch.stack(penalties).mean()
    assert total.item() == pytest.approx(expected.item(), rel=1e-4)


def test_configured_d_loss_adds_the_orthonormal_term_of_eq_14(tmp_path):
    """Also the start (section 4.1: "we initialized each weight of D with a randomly selected orthonormal
    operator"): every conv/dense weight as (d_out, d_in) has orthonormal rows (wide) or columns (tall)."""
    total, plain, state, _ = _d_losses("orthonormal", tmp_path)
    term = 0.0
    for m in state.d.module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = m.weight.detach().double().flatten(1)  # (d_out, d_in)
            d_out, d_in = w.shape
            gram = w @ w.T if d_out <= d_in else w.T @ w
            assert torch.allclose(gram, torch.eye(min(d_out, d_in), dtype=w.dtype), atol=1e-5)
            term += ((w.T @ w - torch.eye(d_in, dtype=w.dtype)) ** 2).sum().item() - max(d_in - d_out, 0)
    assert (total - plain).item() == pytest.approx(1e-4 * term, rel=1e-4)


@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_trains_with_its_effect_in_place(tmp_path, method):
    """Two iterations per method, then the method's own mark on the trained D: clipped weights <= c, the learnt
    gamma present and moved, orthonormal start, normalisation layers present."""
    from sngan.io import read_jsonl
    from sngan.train.loop import train

    extra = {section: dict(values) for section, values in METHODS[method].items()}
    extra["train"] = {"iterations": 2, "n_dis": 1, "log_every": 1, "sample_every": 0, "ckpt_every": 0}
    cfg = load_config(write_config(tmp_path / "c.yaml", extra))
    last = train(cfg, tmp_path / "run", progress=False, log=lambda _: None)
    records = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records if "d_loss" in r] == [1, 2]
    assert all(math.isfinite(r["d_loss"]) and math.isfinite(r["g_loss"]) for r in records if "d_loss" in r)
    weights = torch.load(last, weights_only=True)["discriminator"]
    if "clip" in method or method == "WC":
        clipped = [v for k, v in weights.items() if k.endswith("weight") and v.dim() > 1]
        assert clipped and max(v.abs().max().item() for v in clipped) <= 0.01
    gammas = [v for k, v in weights.items() if k.endswith(".gamma")]
    assert bool(gammas) == ("+" in method)
    if method in ("BN", "LN"):
        assert any(k.endswith(".beta") for k in weights)
