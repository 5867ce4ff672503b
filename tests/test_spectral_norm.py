"""FP32SpectralNorm computes the authors' power iteration (keeps u, `sn_algorithm` random and svd) and torch's
spectral_norm (keeps v, `sn_algorithm` torch) exactly, and loads checkpoints written before it existed."""

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from sngan.checkpoint import load_checkpoint
from sngan.config import load_config
from sngan.errors import CheckpointError
from sngan.models import build_discriminator
from sngan.models.spectral import sn
from sngan.train.loop import train
from tests.helpers import REPO, write_config

# written by the code before FP32SpectralNorm (torch's _SpectralNorm subclass): TINY config, 2 iterations
FORMAT1_CKPT = REPO / "tests" / "fixtures" / "tiny-format1-step2.pt"
# that code's discriminator logits on torch.manual_seed(0); randn(2, 3, 32, 32), eval mode, then training mode
FORMAT1_LOGITS_EVAL = [-6.081501007080078, -5.6118083000183105]
FORMAT1_LOGITS_TRAIN = [-6.067060470581055, -5.599287033081055]


def twins(layer: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(ours with torch's step, torch's) spectral norm around copies of `layer`, with the same u and v."""
    torch.manual_seed(0)
    plain = copy.deepcopy(layer)
    ours, ref = sn(layer, keeps="v"), spectral_norm(plain, eps=1e-12)
    ref.parametrizations.weight[0]._u.copy_(ours.parametrizations.weight[0]._u)
    ref.parametrizations.weight[0]._v.copy_(ours.parametrizations.weight[0]._v)
    return ours, ref


LAYERS = [lambda: nn.Conv2d(6, 10, 3), lambda: nn.Linear(12, 1), lambda: nn.Embedding(5, 12),
          lambda: nn.ConvTranspose2d(6, 4, 3)]  # a transposed conv's output units are its weight's dim 1, as torch


@pytest.mark.parametrize("make", LAYERS)
def test_sigma_and_updates_equal_torch_spectral_norm(make):
    ours, ref = twins(make())
    assert ours.state_dict().keys() == ref.state_dict().keys()
    for mode in ("train", "train", "eval", "train"):  # eval leaves u, v alone; training updates them once
        ours.train(mode == "train")
        ref.train(mode == "train")
        w_ours, w_ref = ours.weight, ref.weight
        assert torch.allclose(w_ours, w_ref, rtol=1e-6, atol=0), mode
        for key, value in ref.state_dict().items():
            assert torch.allclose(ours.state_dict()[key], value, rtol=1e-6, atol=1e-7), key


@pytest.mark.parametrize("keeps", ["u", "v"])
def test_eval_mode_leaves_u_and_v_unchanged_and_training_updates_them(keeps):
    layer = sn(nn.Linear(8, 4), keeps=keeps)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    layer.eval()
    layer(torch.randn(2, 8))
    assert all(torch.equal(before[k], v) for k, v in layer.state_dict().items())
    with torch.no_grad():
        layer.parametrizations.weight.original.add_(torch.randn(4, 8))  # u, v are now off the top singular pair
    layer.train()
    layer(torch.randn(2, 8))
    assert not torch.equal(before["parametrizations.weight.0._u"], layer.parametrizations.weight[0]._u)


def test_gradient_treats_u_and_v_as_constants_as_torch():
    ours, ref = twins(nn.Conv2d(4, 6, 3))
    x = torch.randn(2, 4, 7, 7)
    for net in (ours, ref):
        (net(x) ** 2).sum().backward()
    g_ours = ours.parametrizations.weight.original.grad
    g_ref = ref.parametrizations.weight.original.grad
    assert torch.allclose(g_ours, g_ref, rtol=1e-5, atol=1e-7)


@pytest.mark.slow  # a torchrun/compile/subprocess job: in CI's slow step
@pytest.mark.parametrize("keeps", ["u", "v"])
def test_two_forwards_share_one_backward_when_compiled(keeps):
    torch.manual_seed(0)
    layer = sn(nn.Conv2d(3, 8, 1), keeps=keeps)
    twin = sn(nn.Conv2d(3, 8, 1), keeps=keeps)
    twin.load_state_dict(layer.state_dict())
    x = torch.randn(2, 3, 4, 4)
    compiled = torch.compile(layer)
    for net in (compiled, twin):
        (net(x).sum() - net(x * 0.5).sum()).backward()  # the second forward updates u, v before backward
    assert torch.allclose(layer.parametrizations.weight.original.grad, twin.parametrizations.weight.original.grad,
                          rtol=1e-5, atol=1e-6)
    assert torch.allclose(layer.parametrizations.weight[0]._u, twin.parametrizations.weight[0]._u, atol=1e-6)


def test_checkpoint_written_before_the_rewrite_loads_and_a_resume_names_the_format(tmp_path):
    """With torch's step (sn_algorithm torch) the old checkpoint computes exactly what the code that wrote it
    computed; resuming it is refused in one line naming checkpoint format 1, which records a run id this
    pre-release file lacks (one checkpoint format, issue 39), before anything is written."""
    state = load_checkpoint(FORMAT1_CKPT)
    cfg = load_config(write_config(tmp_path / "tiny.yaml"))
    assert cfg.model.sn_algorithm == "random"
    torch_cfg = load_config(write_config(tmp_path / "torch.yaml", {"model": {"sn_algorithm": "torch"}}))
    d = build_discriminator(torch_cfg.model)
    d.load_state_dict(state["discriminator"])  # strict: same keys
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(d.eval()(x).flatten(), torch.tensor(FORMAT1_LOGITS_EVAL), rtol=1e-6)
        assert torch.allclose(d.train()(x).flatten(), torch.tensor(FORMAT1_LOGITS_TRAIN), rtol=1e-6)
    with pytest.raises(CheckpointError, match=r"its 'run_id' must be 32 hex digits, got 'None' \(checkpoint format 1"):
        train(cfg, tmp_path / "run", resume=FORMAT1_CKPT, progress=False, log=lambda _: None)
    assert not (tmp_path / "run").exists()


def test_build_state_starts_the_power_iteration_as_model_sn_algorithm_says(tiny_config):
    """svd: u, v are the top singular vectors, so u^T W v is sigma to float32 precision before the first step and
    nothing else changes (weights equal torch's start); torch: the 15-iteration start, visibly short of sigma."""
    from sngan.inspect.spectra import sigma_estimate, sn_state, weight_layers
    from sngan.train.state import build_state

    worst, weights = {}, {}
    for init in ("svd", "torch", "random"):
        cfg = load_config(tiny_config, [f"model.sn_algorithm={init}", "model.d_ch=16"])
        d = build_state(cfg, torch.device("cpu"), log=lambda s: None).d.module
        errors = []
        for module in weight_layers(d).values():
            state = sn_state(module)
            exact = torch.linalg.svdvals(state.weight.double().flatten(1))[0].item()
            errors.append(abs(sigma_estimate(state) / exact - 1))
        worst[init] = max(errors)
        weights[init] = {k: v for k, v in d.state_dict().items() if not k.endswith(("_u", "_v"))}
    assert worst["svd"] < 1e-6 and worst["torch"] > 1e-4 and worst["random"] > 1e-3
    assert all(torch.equal(weights["svd"][k], weights[other][k]) for other in ("torch", "random")
               for k in weights["torch"])


def chainer_max_singular_value(w: np.ndarray, u: np.ndarray, ip: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The authors' `_max_singular_value` (sngan_projection, source/links/sn_convolution_2d.py) in numpy: v from
    u, then u from v; returns (u, v)."""
    for _ in range(ip):
        v = u @ w
        v = v / (np.linalg.norm(v) + 1e-12)
        u = v @ w.T
        u = u / (np.linalg.norm(u) + 1e-12)
    return u, v


def test_random_start_is_the_authors_start_and_follows_their_power_iteration(tiny_config):
    """sn_algorithm random: u random, v = W^T u normalised, no iteration at construction (Algorithm 1, the authors'
    `self.u = np.random.normal(...)`); then, with W fixed, the stored u after each training forward is the u the
    authors' code computes from the same start."""
    from sngan.models.spectral import sn_layers
    from sngan.train.state import build_state

    cfg = load_config(tiny_config, ["model.sn_algorithm=random", "model.d_ch=16"])
    d = build_state(cfg, torch.device("cpu"), log=lambda s: None).d.module.train()
    modules = [m for m in d.modules() if hasattr(m, "parametrizations")]
    assert len(modules) == len(sn_layers(d)) > 3
    for module in modules:
        norm = module.parametrizations.weight[0]
        w = module.parametrizations.weight.original.detach().double().flatten(1).numpy()
        u = norm._u.double().numpy()
        v0 = w.T @ u / np.linalg.norm(w.T @ u)
        assert np.allclose(norm._v.double().numpy(), v0, atol=1e-6)  # derived from u, no iteration
        if w.shape[0] > 1:  # (a 1-row W has only one unit u)
            assert abs(abs(u @ np.linalg.svd(w)[0][:, 0]) - 1) > 1e-3  # random, not the top singular vector
        for _ in range(3):
            _ = module.weight  # one training-mode forward of the parametrization: one power iteration
            u = chainer_max_singular_value(w, u)[0]
            assert np.allclose(norm._u.double().numpy(), u, atol=1e-5)


@pytest.mark.parametrize("iterations", [1, 3])
@pytest.mark.parametrize("keeps", ["u", "v"])
def test_power_iterations_per_forward_follow_the_hand_written_loop(iterations, keeps):
    """model.sn_power_iterations > 1: each training forward runs that many steps, and sigma-hat is u^T W v of the
    last ones; torch's step: u <- Wv/|Wv|, v <- W^T u/|W^T u| from the kept v; the authors' (max_sv.py, Ip
    iterations): v <- W^T u/|W^T u|, u <- Wv/|Wv| from the kept u."""
    torch.manual_seed(1)
    layer = sn(nn.Linear(7, 5), power_iterations=iterations, keeps=keeps)
    norm = layer.parametrizations.weight[0]
    w = layer.parametrizations.weight.original.detach().double()
    u, v = norm._u.double().clone(), norm._v.double().clone()
    for _ in range(iterations):
        if keeps == "v":
            u = w @ v
            u = u / u.norm()
        v = w.T @ u
        v = v / v.norm()
        if keeps == "u":
            u = w @ v
            u = u / u.norm()
    weight = layer.weight  # training mode: the update runs
    assert torch.allclose(norm._u.double(), u, atol=1e-6) and torch.allclose(norm._v.double(), v, atol=1e-6)
    assert torch.allclose(weight.double(), w / (u @ w @ v), atol=1e-6)


def authors_max_singular_value(w: np.ndarray, u: np.ndarray, ip: int = 1) -> tuple[float, np.ndarray]:
    """The authors' `max_singular_value` (sngan_projection, source/functions/max_sv.py), rewritten in float64 numpy:
    from the kept u, v <- normalize(u W), u <- normalize(v W^T), eps added to the norm; sigma = u W v^T.
    Returns (sigma, the u their `W_bar` stores in training mode)."""
    for _ in range(ip):
        v = u @ w
        v = v / (np.linalg.norm(v) + 1e-12)
        u = v @ w.T
        u = u / (np.linalg.norm(u) + 1e-12)
    return float(u @ w @ v), u


def torch_order_step(w: np.ndarray, v: np.ndarray) -> tuple[float, np.ndarray]:
    """torch's spectral_norm step in float64 (u from the kept v, then v): (sigma, the v it keeps)."""
    u = w @ v
    u = u / np.linalg.norm(u)
    v = w.T @ u
    v = v / np.linalg.norm(v)
    return float(u @ w @ v), v


@pytest.mark.parametrize("arch,classes", [("resnet", 3), ("cnn", 0)], ids=["resnet-projection", "cnn"])
def test_random_start_stores_the_authors_u_and_sigma_at_every_forward_while_adam_trains(tmp_path, arch, classes):
    """`sn_algorithm: random` during training: every SN layer's stored u after each training forward, and the sigma-hat
    the forward divided by, equal a float64 replay of the authors' max_singular_value from the same start, while
    Adam changes W between forwards (two D forwards per step, real and fake, one backward, as a D step). torch's
    order from the same start misses the replayed sigma-hat by far more than the tolerance, so the test tells the
    two apart."""
    from sngan.models.spectral import FP32SpectralNorm, start_sn

    cfg = load_config(write_config(tmp_path / "t.yaml", {"model": {"arch": arch, "num_classes": classes,
                                                                   "d_ch": 16, "sn_algorithm": "random"}}))
    torch.manual_seed(3)
    d = build_discriminator(cfg.model).train()
    start_sn(d, "random")
    norms = [m for m in d.modules() if isinstance(m, FP32SpectralNorm)]
    assert len(norms) > 3 and all(n.keeps == "u" for n in norms)
    seen: dict[int, list[tuple[np.ndarray, float, np.ndarray]]] = {i: [] for i in range(len(norms))}

    def record(i):
        def hook(module, args, out):  # W as it entered, the sigma-hat it divided by, the u it stored
            w = args[0].detach().double().movedim(module.dim, 0).flatten(1).numpy()
            seen[i].append((w, float(args[0].detach().double().norm() / out.detach().double().norm()),
                            module._u.double().numpy().copy()))
        return hook

    for i, n in enumerate(norms):
        n.register_forward_hook(record(i))
    start_u = [n._u.double().numpy().copy() for n in norms]
    start_v = [n._v.double().numpy().copy() for n in norms]
    opt = torch.optim.Adam(d.parameters(), lr=2e-2, betas=(0.0, 0.9))
    y = torch.tensor([0, 2]) if classes else None
    for _ in range(6):
        opt.zero_grad()
        loss = nn.functional.softplus(-d(torch.randn(2, 3, 32, 32), y)).mean() \
            + nn.functional.softplus(d(torch.randn(2, 3, 32, 32), y)).mean()
        loss.backward()
        opt.step()
    worst_torch_order = 0.0
    for i in range(len(norms)):
        assert len(seen[i]) == 12  # one step per training forward
        u, v = start_u[i], start_v[i]
        for w, sigma_hat, stored_u in seen[i]:
            sigma, u = authors_max_singular_value(w, u)
            assert sigma_hat == pytest.approx(sigma, rel=2e-5)
            assert np.abs(stored_u - u).max() < 2e-5
            sigma_torch, v = torch_order_step(w, v)
            worst_torch_order = max(worst_torch_order, abs(sigma_torch / sigma - 1))
    assert worst_torch_order > 1e-3


def test_authors_step_in_eval_mode_divides_by_their_sigma_and_stores_nothing():
    """Their `W_bar` runs max_singular_value in eval mode too and stores u only in training mode; inspect's
    sigma-hat of such a layer is that same number."""
    from sngan.inspect.spectra import sigma_estimate, sn_state

    torch.manual_seed(2)
    layer = sn(nn.Conv2d(4, 6, 3), keeps="u").eval()
    norm = layer.parametrizations.weight[0]
    with torch.no_grad():
        layer.parametrizations.weight.original.add_(torch.randn(6, 4, 3, 3))  # u now far from the top vector
    w = layer.parametrizations.weight.original.detach().double()
    u = norm._u.clone()
    sigma, _ = authors_max_singular_value(w.flatten(1).numpy(), u.double().numpy())
    assert float(w.norm() / layer.weight.detach().double().norm()) == pytest.approx(sigma, rel=1e-6)
    assert torch.equal(norm._u, u)
    assert sigma_estimate(sn_state(layer)) == pytest.approx(sigma, rel=1e-6)


@pytest.mark.parametrize("make", LAYERS)
def test_construction_starts_u_and_v_where_torch_spectral_norm_does(make):
    """`sn_algorithm: torch` keeps the start made at construction: the same random draws and 15 power iterations
    as torch's `spectral_norm`, so from the same seed the buffers are torch's."""
    layer = make()
    plain = copy.deepcopy(layer)
    torch.manual_seed(7)
    ours = sn(layer, keeps="v").parametrizations.weight[0]
    torch.manual_seed(7)
    ref = spectral_norm(plain, eps=1e-12).parametrizations.weight[0]
    assert torch.allclose(ours._u, ref._u, atol=1e-6) and torch.allclose(ours._v, ref._v, atol=1e-6)


@pytest.mark.parametrize("keeps", ["u", "v"])
def test_normalised_weight_does_not_depend_on_the_scale_of_w(keeps):
    """sigma is homogeneous (sigma(cW) = c sigma(W)), so W / sigma(W) is the same for W and 1e-4 W: the power
    iteration must normalise its vectors however small W v and W^T u are."""
    torch.manual_seed(8)
    big = sn(nn.Linear(12, 5), keeps=keeps)
    small = copy.deepcopy(big)
    with torch.no_grad():
        small.parametrizations.weight.original.mul_(1e-4)
    for _ in range(2):  # training mode: each read runs one step and stores u, v
        assert torch.allclose(small.weight, big.weight, rtol=1e-4, atol=1e-6)
    for name in ("_u", "_v"):
        a, b = getattr(small.parametrizations.weight[0], name), getattr(big.parametrizations.weight[0], name)
        assert torch.allclose(a, b, atol=1e-5) and a.norm().item() == pytest.approx(1.0, abs=1e-6)


def _perturbed_sn_discriminator(how: str):
    """A small SN discriminator built for `sn_algorithm` = `how`, started by `start_sn`, with every raw weight then
    moved off the start (so the step's order shows), in training mode."""
    from sngan.config import ModelConfig
    from sngan.models.spectral import sn_layers, start_sn

    torch.manual_seed(9)
    d = build_discriminator(ModelConfig(arch="cnn", d_ch=2, sn_algorithm=how)).train()
    start_sn(d, how)
    layers = sn_layers(d)
    with torch.no_grad():
        for weight, _ in layers:
            weight.add_(torch.randn_like(weight) * weight.std())
    return d, layers


@pytest.mark.parametrize("how", ["random", "svd", "torch"])
def test_each_sn_algorithm_takes_its_own_power_iteration_step(how):
    """random and svd: the authors' step from the kept u (max_sv.py); torch: torch's from the kept v. One training
    read of each weight against float64 replays of both orders; the replays differ far more than the tolerance."""
    from sngan.models.spectral import sn_layers

    d, layers = _perturbed_sn_discriminator(how)
    assert len(layers) == 8
    apart = 0.0
    for module in [m for m in d.modules() if hasattr(m, "parametrizations")]:
        norm = module.parametrizations.weight[0]
        w = module.parametrizations.weight.original.detach().double().flatten(1).numpy()
        u0, v0 = norm._u.double().numpy().copy(), norm._v.double().numpy().copy()
        authors, _ = authors_max_singular_value(w, u0)
        torch_sigma, _ = torch_order_step(w, v0)
        used = float(np.linalg.norm(w) / module.weight.detach().double().norm())  # the sigma-hat divided by
        assert used == pytest.approx(authors if how in ("random", "svd") else torch_sigma, rel=1e-5)
        apart = max(apart, abs(authors / torch_sigma - 1))
    assert apart > 1e-3
    assert len(sn_layers(d)) == 8


def test_random_start_stores_unit_u_and_torch_start_keeps_the_construction_vectors():
    """The buffers always hold unit vectors (what every reader of u^T W v assumes); `start_sn(.., "torch")` changes
    nothing: the construction start is torch's start."""
    from sngan.config import ModelConfig
    from sngan.models.spectral import sn_layers, start_sn

    torch.manual_seed(10)
    d = build_discriminator(ModelConfig(arch="cnn", d_ch=2, sn_algorithm="torch"))
    before = {k: v.clone() for k, v in d.state_dict().items()}
    assert start_sn(d, "torch") == 8
    assert all(torch.equal(before[k], v) for k, v in d.state_dict().items())
    assert start_sn(d, "random") == 8
    for _, norm in sn_layers(d):
        assert norm._u.norm().item() == pytest.approx(1.0, abs=1e-6)
        assert norm._v.norm().item() == pytest.approx(1.0, abs=1e-6)
