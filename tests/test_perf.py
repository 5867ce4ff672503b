"""The fast path (bf16 autocast, channels_last, fused Adam, compile) computes the same step as eager fp32; each
option is compared on its own where the others would hide it."""

import pytest
import torch

from sngan.config import PerfConfig, load_config
from sngan.models.layers import FP32SpectralNorm, sn
from sngan.train.build import build_state
from sngan.train.losses import get_losses
from sngan.train.perf import Perf, adam, resolve_perf
from sngan.train.steps import d_step, g_step

FAST = ["perf.precision=bf16", "perf.channels_last=on"]  # fused Adam: compared on its own below
EAGER = ["perf.precision=fp32", "perf.channels_last=off", "perf.fused_adam=off"]


def flat_params(module):
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])


def one_iteration(config, overrides):
    cfg = load_config(config, ["model.g_ch=16", "model.d_ch=16", "train.batch_size=16", "train.g_batch_size=16",
                               *overrides])
    state = build_state(cfg, torch.device("cpu"), log=lambda s: None)
    # SGD with lr 1 makes each update the negative gradient: Adam's first step (~ lr * sign(g)) would hide
    # how close the gradients are; fused Adam is compared on its own below
    state.opt_g = torch.optim.SGD(state.generator.parameters(), lr=1.0)
    state.opt_d = torch.optim.SGD(state.discriminator.parameters(), lr=1.0)
    d_loss_fn, g_loss_fn = get_losses(cfg.loss.type)
    g0, d0 = flat_params(state.generator), flat_params(state.discriminator)
    g_loss = g_step(state, g_loss_fn)
    d_loss = d_step(state, d_loss_fn)
    return g_loss, d_loss, flat_params(state.generator) - g0, flat_params(state.discriminator) - d0


def test_bf16_channels_last_step_matches_eager_fp32_within_bf16_tolerance(tiny_config):
    g_e, d_e, dg_e, dd_e = one_iteration(tiny_config, EAGER)
    g_f, d_f, dg_f, dd_f = one_iteration(tiny_config, FAST)
    assert g_f.dtype == d_f.dtype == torch.float32
    assert torch.allclose(g_f, g_e, rtol=2e-2, atol=2e-2) and torch.allclose(d_f, d_e, rtol=2e-2, atol=2e-2)
    for fast, eager in ((dg_f, dg_e), (dd_f, dd_e)):
        assert torch.cosine_similarity(fast, eager, dim=0) > 0.99
    # and a different step (another seed) is clearly not "the same": the check has teeth
    _, _, dg_other, _ = one_iteration(tiny_config, [*EAGER, "train.seed=1"])
    assert torch.cosine_similarity(dg_other[: len(dg_e)], dg_e, dim=0) < 0.9


def test_build_state_gives_fused_adam_only_when_asked(tiny_config):
    for setting, fused in (("on", True), ("off", False)):
        state = build_state(load_config(tiny_config, [f"perf.fused_adam={setting}"]), torch.device("cpu"),
                            log=lambda s: None)
        assert bool(state.opt_g.defaults["fused"]) is fused and bool(state.opt_d.defaults["fused"]) is fused
        assert isinstance(state.opt_g, torch.optim.Adam)


def test_fused_adam_matches_plain_adam():
    torch.manual_seed(0)
    params = [torch.randn(64, 32, requires_grad=True), torch.randn(7, requires_grad=True)]
    twins = [p.detach().clone().requires_grad_(True) for p in params]
    fused = adam(params, 1e-3, (0, 0.9), Perf(fused_adam=True))
    plain = adam(twins, 1e-3, (0, 0.9), Perf(fused_adam=False))
    assert fused.defaults["fused"] and not plain.defaults["fused"] and fused.defaults["betas"] == (0.0, 0.9)
    for _ in range(3):
        grads = [torch.randn_like(p) for p in params]
        for p, q, g in zip(params, twins, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        fused.step()
        plain.step()
    for p, q in zip(params, twins, strict=True):
        assert torch.allclose(p, q, atol=1e-6)


def test_spectral_norm_runs_in_fp32_with_autocast_off(monkeypatch):
    seen = []
    original = FP32SpectralNorm.forward

    def spy(self, weight):
        out = original(self, weight)
        seen.append((torch.is_autocast_enabled("cpu"), out.dtype))
        return out

    layer = sn(torch.nn.Linear(8, 8))
    x = torch.randn(2, 8)
    monkeypatch.setattr(FP32SpectralNorm, "forward", spy)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16  # the matmul itself is bf16 ...
    assert seen and all(dtype == torch.float32 for _, dtype in seen)  # ... the normalised weight is fp32

    inside = []
    monkeypatch.setattr(torch, "mv", lambda *a: inside.append(torch.is_autocast_enabled("cpu")) or
                        torch.matmul(*a))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        layer(x)
    assert inside and not any(inside)  # the power iteration saw autocast disabled


def test_auto_is_bf16_channels_last_fused_on_cuda_and_fp32_channels_last_unfused_on_cpu():
    cpu = resolve_perf(PerfConfig(), torch.device("cpu"))
    assert (cpu.precision, cpu.channels_last, cpu.fused_adam, cpu.compile) == ("fp32", True, False, "off")
    cuda = resolve_perf(PerfConfig(), torch.device("cuda"))
    assert (cuda.precision, cuda.channels_last, cuda.fused_adam) == ("bf16", True, True)
    assert resolve_perf(PerfConfig(precision="fp32", channels_last="off", fused_adam="off"),
                        torch.device("cuda")).precision == "fp32"


@pytest.mark.slow
def test_compiled_step_matches_eager(tiny_config):
    g_e, d_e, dg_e, dd_e = one_iteration(tiny_config, EAGER)
    g_c, d_c, dg_c, dd_c = one_iteration(tiny_config, [*EAGER, "perf.compile=default"])
    assert torch.allclose(g_c, g_e, rtol=1e-4, atol=1e-5) and torch.allclose(d_c, d_e, rtol=1e-4, atol=1e-5)
    assert torch.cosine_similarity(dd_c, dd_e, dim=0) > 0.999
