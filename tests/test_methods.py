"""The paper's comparison methods (section 4.1): each one's maths against a hand computation, and each trains."""

import math

import pytest
import torch
from torch import nn

from sngan.config import ModelConfig, load_config
from sngan.errors import ConfigError
from sngan.models import build_discriminator
from sngan.models.norms import UnitRowNorm, norm_weight
from sngan.train.losses import get_losses
from sngan.train.regularizers import clip_weights, gradient_penalty, orthonormal_penalty
from tests.helpers import write_config

METHODS = {
    "SN": {"model": {"d_norm": "spectral"}},
    "WC": {"model": {"d_norm": "none"}, "loss": {"type": "wasserstein"}, "optim": {"d_weight_clip": 0.01}},
    "GAN-GP": {"model": {"d_norm": "none"}, "loss": {"type": "nonsaturating", "gp_weight": 10.0}},
    "WGAN-GP": {"model": {"d_norm": "none"}, "loss": {"type": "wasserstein", "gp_weight": 10.0}},
    "BN": {"model": {"d_norm": "batch"}, "loss": {"type": "nonsaturating"}},
    "LN": {"model": {"d_norm": "layer"}, "loss": {"type": "nonsaturating"}},
    "WN": {"model": {"d_norm": "weight"}, "loss": {"type": "nonsaturating"}},
    "orthonormal": {"model": {"d_norm": "none"}, "loss": {"type": "nonsaturating", "orthonormal_weight": 1e-4}},
}


def test_wasserstein_losses_on_hand_logits():
    d_loss, g_loss = get_losses("wasserstein")
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


def test_orthonormal_penalty_on_a_known_matrix():
    lin = nn.Linear(3, 2, bias=False)  # W (2, 3): wide, so W^T W (3 x 3) has rank <= 2
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 1.0]]))
    w = lin.weight.detach()
    by_hand = ((w.T @ w - torch.eye(3)) ** 2).sum().item() - (3 - 2)  # eq. 14 minus its floor d_in - d_out
    assert by_hand == pytest.approx(26.0 - 1.0)
    assert orthonormal_penalty(lin).item() == pytest.approx(by_hand)
    nn.init.orthogonal_(lin.weight)
    assert orthonormal_penalty(lin).item() == pytest.approx(0.0, abs=1e-5)


def test_clipping_bounds_every_parameter():
    lin = nn.Linear(4, 4)
    with torch.no_grad():
        lin.weight.mul_(100)
        lin.bias.fill_(-3)
    clip_weights(lin, 0.01)
    assert all(p.abs().max().item() <= 0.01 for p in lin.parameters())
    assert lin.weight.abs().max().item() == pytest.approx(0.01)


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
    ({"model": {"d_norm": "batch"}, "loss": {"gp_weight": 10.0}}, "needs model.d_norm none"),
    ({"loss": {"orthonormal_weight": 1.0}}, "needs model.d_norm none"),
    ({"model": {"d_norm": "none"}, "loss": {"type": "wasserstein"}}, "needs a Lipschitz constraint"),
    ({"model": {"d_norm": "none"}, "loss": {"gp_weight": 10.0}, "optim": {"d_weight_clip": 0.01}}, "choose one"),
])
def test_combinations_the_paper_does_not_use_are_refused(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(write_config(tmp_path / "c.yaml", extra))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_trains_the_tiny_config(tmp_path, method):
    from sngan.io import read_jsonl
    from sngan.train.loop import train

    extra = {section: dict(values) for section, values in METHODS[method].items()}
    extra["train"] = {"iterations": 20, "n_dis": 1, "log_every": 10, "sample_every": 0, "ckpt_every": 0}
    cfg = load_config(write_config(tmp_path / "c.yaml", extra))
    last = train(cfg, tmp_path / "run", progress=False, log=lambda _: None)
    records = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records] == [10, 20]
    assert all(math.isfinite(r["d_loss"]) and math.isfinite(r["g_loss"]) for r in records)
    if method == "WC":
        state = torch.load(last, weights_only=True)
        assert max(v.abs().max().item() for v in state["discriminator"].values()) <= 0.01
