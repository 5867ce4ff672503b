"""The training maths against independent references: the EMA recursion, the losses recomputed by hand from D's
logits on exactly the batches a production step used, the authors' Chainer LinearShift schedule, and the
authors' updater order (one G update, then n_dis D updates) counted on a real run.
"""

import copy
import dataclasses

import pytest
import torch

from sngan.checkpoint import load_checkpoint
from sngan.config import load_config
from sngan.records import read_records
from sngan.train import loop, steps
from sngan.train.ema import ema_update
from sngan.train.losses import LOSSES
from sngan.train.state import build_state
from sngan.train.steps import d_step, g_step, set_lr, update_ema
from tests.helpers import write_config

CPU = torch.device("cpu")


def _state(tmp_path, overrides=()):
    cfg = load_config(write_config(tmp_path / "tiny.yaml"), ["perf.channels_last=off", *overrides])
    return build_state(cfg, CPU, log=lambda s: None)


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


# --- EMA -------------------------------------------------------------------------------------------------------

def test_ema_update_follows_decay_times_old_plus_one_minus_decay_times_live_at_0_9():
    torch.manual_seed(0)
    ema, live = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    e0 = [p.detach().clone().double() for p in ema.parameters()]
    w = [p.detach().clone().double() for p in live.parameters()]
    for _ in range(4):
        ema_update(ema, live, 0.9)
    # closed form after n updates towards a fixed live: e_n = w + 0.9^n (e_0 - w)
    for p, a, b in zip(ema.parameters(), e0, w, strict=True):
        assert torch.allclose(p.double(), b + 0.9 ** 4 * (a - b), atol=1e-6)
    assert not torch.allclose(next(ema.parameters()).double(), w[0] + 0.1 ** 4 * (e0[0] - w[0]), atol=1e-3)


def test_update_ema_copies_before_ema_start_then_averages_at_0_9(tmp_path):
    state = _state(tmp_path, ["train.ema_decay=0.9", "train.ema_start=2"])
    g = torch.Generator().manual_seed(1)
    expected = [p.detach().clone().double() for p in state.generator_ema.parameters()]
    for step in range(1, 6):  # update_ema runs after step G iterations are complete
        with torch.no_grad():
            for p in state.g.module.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
        live = [p.detach().clone().double() for p in state.g.module.parameters()]
        state.step = step
        update_ema(state)
        if step < 2:  # before ema_start: a plain copy
            expected = live
        else:
            expected = [0.9 * e + 0.1 * w for e, w in zip(expected, live, strict=True)]
        for p, e in zip(state.generator_ema.parameters(), expected, strict=True):
            assert torch.allclose(p.double(), e, atol=1e-6), step
    assert not torch.allclose(next(state.generator_ema.parameters()).double(), live[0], atol=1e-2)


# --- one D step, one G step ------------------------------------------------------------------------------------

class _ChosenBatches:
    """Stands in for the data: hands out exactly the given images and labels."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def next(self, n):
        assert n == len(self.x)
        return self.x.clone(), self.y.clone()

    def close(self):
        pass


def _hinge_d_by_hand(real, fake):
    return sum(max(0.0, 1.0 - r) for r in real) / len(real) + sum(max(0.0, 1.0 + f) for f in fake) / len(fake)


def _nonsaturating_d_by_hand(real, fake):
    import math

    return (sum(math.log1p(math.exp(-r)) for r in real) / len(real)
            + sum(math.log1p(math.exp(f)) for f in fake) / len(fake))


D_LOSS_BY_HAND = {"hinge": _hinge_d_by_hand, "nonsaturating": _nonsaturating_d_by_hand}


def _d_step_and_reference(state, x_real, y_real, seed):
    """Run the production d_step on (x_real, y_real) with SGD lr 1; recompute its loss by hand on copies."""
    g_copy, d_copy = copy.deepcopy(state.g.module), copy.deepcopy(state.d.module)
    state.batches = _ChosenBatches(x_real, y_real)
    state.opt_d = torch.optim.SGD(state.d.module.parameters(), lr=1.0)  # update = -gradient
    before = _params(state.d.module)
    torch.manual_seed(seed)
    loss = d_step(state, LOSSES[state.cfg.loss.type][0]).item()

    k = state.cfg.model.num_classes
    torch.manual_seed(seed)  # the same latents (and fake labels) as the step drew
    z = torch.randn(len(x_real), state.cfg.model.z_dim)
    y_fake = torch.randint(0, k, (len(x_real),)) if k else None
    with torch.no_grad():
        x_fake = g_copy(z, y_fake)
    real_logits = d_copy(x_real, y_real if k else None)  # real pass first, then fake: same power iterations
    fake_logits = d_copy(x_fake, y_fake)
    hand = D_LOSS_BY_HAND[state.cfg.loss.type](real_logits.tolist(), fake_logits.tolist())
    LOSSES[state.cfg.loss.type][0](real_logits, fake_logits).backward()
    grads = [p.grad for p in d_copy.parameters()]
    deltas = [a - b for a, b in zip(_params(state.d.module), before, strict=True)]
    return loss, hand, deltas, grads


@pytest.mark.parametrize("loss_type,num_classes", [("hinge", 0), ("nonsaturating", 0), ("hinge", 3)])
def test_d_step_loss_is_the_loss_by_hand_on_the_real_batch_given_and_its_gradient(tmp_path, loss_type,
                                                                                   num_classes):
    state = _state(tmp_path, [f"loss.type={loss_type}", f"model.num_classes={num_classes}"])
    g = torch.Generator().manual_seed(2)
    batch_a = (torch.rand(8, 3, 32, 32, generator=g) * 2 - 1, torch.randint(0, max(num_classes, 1), (8,),
                                                                             generator=g))
    batch_b = (-batch_a[0].flip(0), batch_a[1].flip(0))
    snapshot = copy.deepcopy((state.g.module.state_dict(), state.d.module.state_dict()))
    loss_a, hand_a, deltas, grads = _d_step_and_reference(state, *batch_a, seed=3)
    assert loss_a == pytest.approx(hand_a, rel=1e-5, abs=1e-6)
    for delta, grad in zip(deltas, grads, strict=True):
        assert torch.allclose(delta, -grad, atol=1e-6)
    assert any(grad.abs().max() > 0 for grad in grads)

    state.g.module.load_state_dict(snapshot[0])
    state.d.module.load_state_dict(snapshot[1])
    loss_b, hand_b, _, _ = _d_step_and_reference(state, *batch_b, seed=3)  # same fakes, another real batch
    assert loss_b == pytest.approx(hand_b, rel=1e-5, abs=1e-6)
    assert abs(loss_a - loss_b) > 1e-4


def test_g_step_loss_is_minus_mean_d_of_g_z_and_only_g_moves_even_with_stale_d_gradients(tmp_path):
    """The G step draws train.g_batch_size latents (the authors' n_gen_samples, here unlike the D batch), its update
    is its own loss's gradient (stale G gradients cleared first), and D is frozen: its weights and its leftover
    gradients stay as they were."""
    state = _state(tmp_path, ["model.num_classes=3", "train.g_batch_size=5"])
    assert (state.g_batch, state.d_batch) == (5, 8)
    g_copy, d_copy = copy.deepcopy(state.g.module), copy.deepcopy(state.d.module)
    state.opt_g = torch.optim.SGD(state.g.module.parameters(), lr=1.0)
    for p in state.d.module.parameters():
        p.grad = torch.ones_like(p)  # as left by the last D step: a G step must not apply it
    for p in state.g.module.parameters():
        p.grad = torch.full_like(p, 0.5)  # stale: the step must not add them to its own
    g_before, d_before = _params(state.g.module), _params(state.d.module)
    u_before = [b.clone() for b in state.d.module.buffers()]  # the SN vectors (D has no other buffer)
    torch.manual_seed(4)
    loss = g_step(state, LOSSES["hinge"][1]).item()
    torch.manual_seed(4)
    z = torch.randn(5, state.cfg.model.z_dim)
    y = torch.randint(0, 3, (5,))
    logits = d_copy(g_copy(z, y), y)
    assert loss == pytest.approx(-sum(logits.tolist()) / len(logits), rel=1e-5, abs=1e-6)
    (-logits.mean()).backward()
    for after, before, p in zip(_params(state.g.module), g_before, g_copy.parameters(), strict=True):
        assert torch.allclose(after - before, -p.grad, atol=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(_params(state.d.module), d_before, strict=True))
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in state.d.module.parameters())  # D got no gradient
    # D ran in training mode, as the authors' updater: its power iterations took their step and stored u, v
    moved = [(a, b, c) for a, b, c in zip(state.d.module.buffers(), d_copy.buffers(), u_before, strict=True)]
    assert len(moved) > 3 and all(torch.allclose(a, b, atol=1e-6) for a, b, _ in moved)
    assert any(not torch.allclose(a, c, atol=1e-4) for a, _, c in moved)


# --- learning rate ---------------------------------------------------------------------------------------------

def chainer_linear_shift(v1, t1, t2, k):
    """The lr of update k (1-based) under the authors' LinearShift('alpha', (v1, 0), (t1, t2)) extension:
    the extension runs after each update, so update k sees its value at t = k - 1."""
    t = k - 1
    if t <= t1:
        return v1
    if t >= t2:
        return 0.0
    return v1 + (t - t1) / (t2 - t1) * (0.0 - v1)


def test_set_lr_matches_the_authors_linear_shift_at_chosen_steps(tmp_path):
    state = _state(tmp_path)

    def lr_at(base_lr, decay, decay_start, iterations, step):  # set_lr's rate under these settings at `step`
        state.cfg = dataclasses.replace(state.cfg, train=dataclasses.replace(state.cfg.train, iterations=iterations),
                                        optim=dataclasses.replace(state.cfg.optim, lr=base_lr, lr_decay=decay,
                                                                  lr_decay_start=decay_start))
        state.step = step
        return set_lr(state)

    for step in (0, 1, 49, 50, 51, 75, 99):
        assert lr_at(2e-4, "linear", 50, 100, step) == pytest.approx(chainer_linear_shift(2e-4, 50, 100, step + 1))
    assert lr_at(2e-4, "linear", 50, 100, 75) == pytest.approx(1e-4)  # halfway through the decay, by hand
    assert lr_at(1.0, "linear", 0, 4, 3) == pytest.approx(0.25)
    assert [lr_at(3e-4, "none", 0, 10, s) for s in (0, 5, 9)] == [3e-4] * 3


def test_set_lr_sets_both_optimisers_to_the_schedule_of_the_state_step(tmp_path):
    state = _state(tmp_path, ["optim.lr=0.001", "optim.lr_decay_start=1", "train.iterations=5"])
    for step, expected in ((0, 1e-3), (1, 1e-3), (2, 0.75e-3), (4, 0.25e-3)):
        state.step = step
        assert set_lr(state) == pytest.approx(expected)
        for opt in (state.opt_g, state.opt_d):
            assert all(group["lr"] == pytest.approx(expected) for group in opt.param_groups)


# --- a real run, instrumented -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def instrumented_run(tmp_path_factory):
    """4 G iterations, n_dis 3, linear decay from iteration 1; every g_step/d_step call recorded with the lr its
    optimiser held."""
    base = tmp_path_factory.mktemp("instrumented")
    cfg = load_config(write_config(base / "tiny.yaml"), [
        "train.iterations=4", "train.n_dis=3", "train.sample_every=0", "train.ckpt_every=0",
        "optim.lr=0.001", "optim.lr_decay_start=1"])
    calls, losses = [], []
    real_g, real_d = steps.g_step, steps.d_step  # what `steps.iteration`, the loop's body, calls

    def g_spy(state, fn):
        calls.append(("G", state.step, state.opt_g.param_groups[0]["lr"]))
        loss = real_g(state, fn)
        losses.append(("G", loss.item()))
        return loss

    def d_spy(state, fn):
        calls.append(("D", state.step, state.opt_d.param_groups[0]["lr"]))
        loss = real_d(state, fn)
        losses.append(("D", loss.item()))
        return loss

    mp = pytest.MonkeyPatch()
    mp.setattr(steps, "g_step", g_spy)
    mp.setattr(steps, "d_step", d_spy)
    try:
        last = loop.train(cfg, base / "run", progress=False, log=lambda s: None)
    finally:
        mp.undo()
    return calls, base / "run", last, losses


def test_each_iteration_is_one_g_update_then_n_dis_d_updates(instrumented_run):
    calls, _, _, _ = instrumented_run
    assert [name for name, _, _ in calls] == ["G", "D", "D", "D"] * 4
    assert [step for _, step, _ in calls] == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4


def test_optimisers_stepped_once_per_g_update_and_n_dis_times_for_d(instrumented_run):
    _, _, last, _ = instrumented_run
    state = load_checkpoint(last)
    g_steps = {float(s["step"]) for s in state["opt_g"]["state"].values()}
    d_steps = {float(s["step"]) for s in state["opt_d"]["state"].values()}
    assert g_steps == {4.0} and d_steps == {12.0}


def test_lr_used_and_logged_per_iteration_follows_the_authors_linear_shift(instrumented_run):
    calls, run, _, _ = instrumented_run
    expected = [chainer_linear_shift(1e-3, 1, 4, k) for k in (1, 2, 3, 4)]  # 1e-3, 1e-3, 2/3e-3, 1/3e-3
    assert expected == pytest.approx([1e-3, 1e-3, 2e-3 / 3, 1e-3 / 3])
    assert [lr for _, _, lr in calls] == pytest.approx([lr for lr in expected for _ in range(4)])
    assert [r["lr"] for r in read_records(run) if "lr" in r] == pytest.approx(expected)


def test_constant_lr_when_decay_is_none(tmp_path):
    state = _state(tmp_path, ["optim.lr=0.0003", "optim.lr_decay=none", "train.iterations=5"])
    for step in (0, 2, 4):
        state.step = step
        assert set_lr(state) == pytest.approx(3e-4)
        assert state.opt_d.param_groups[0]["lr"] == pytest.approx(3e-4)


def test_each_log_line_holds_the_mean_of_its_n_dis_d_losses_and_its_g_loss(instrumented_run):
    """log_every 1: step k's record has the G loss of iteration k and the mean of its 3 D-step losses."""
    _, run, _, losses = instrumented_run
    assert [name for name, _ in losses] == ["G", "D", "D", "D"] * 4
    records = [r for r in read_records(run) if "d_loss" in r]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for k, record in enumerate(records):
        (_, g), *ds = losses[4 * k:4 * k + 4]
        assert record["g_loss"] == pytest.approx(g, rel=1e-6)
        assert record["d_loss"] == pytest.approx(sum(d for _, d in ds) / 3, rel=1e-6)
    assert len({round(d, 6) for name, d in losses if name == "D"}) > 3  # the D losses differ: the mean shows


def test_iteration_copies_g_into_the_ema_until_ema_start_iterations_are_done_then_averages(tmp_path, monkeypatch):
    """EMA after the G and D steps of each iteration, with the completed-iteration count: ema_start 2 means the
    first iteration's G is copied, from the second on e <- 0.9 e + 0.1 g (the steps are stubbed: G is set to known
    values, so the recursion is computed by hand)."""
    from types import SimpleNamespace

    cfg = load_config(write_config(tmp_path / "tiny.yaml"), ["train.ema_decay=0.9", "train.ema_start=2",
                                                               "train.n_dis=1"])
    live = torch.nn.Linear(3, 2)  # the recursion is per parameter: any module stands for G here
    state = SimpleNamespace(cfg=cfg, step=0, g=SimpleNamespace(module=live), generator_ema=copy.deepcopy(live),
                            opt_g=SimpleNamespace(param_groups=[{}]), opt_d=SimpleNamespace(param_groups=[{}]))
    gen = torch.Generator().manual_seed(5)

    def set_g(state, fn):
        with torch.no_grad():
            for p in state.g.module.parameters():
                p.copy_(torch.randn(p.shape, generator=gen))
        return torch.zeros(())

    monkeypatch.setattr(steps, "g_step", set_g)
    monkeypatch.setattr(steps, "d_step", lambda state, fn: torch.zeros(()))
    expected = None
    for k in (1, 2, 3):
        steps.iteration(state, LOSSES["hinge"])
        live = [p.detach().clone().double() for p in state.g.module.parameters()]
        expected = live if k < 2 else [0.9 * e + 0.1 * w for e, w in zip(expected, live, strict=True)]
        assert state.step == k
        for p, e in zip(state.generator_ema.parameters(), expected, strict=True):
            assert torch.allclose(p.double(), e, atol=1e-6), k


def test_ema_batchnorm_statistics_are_the_plain_average_over_the_seeded_batches():
    """recalibrate_batchnorm: every BN's running mean and variance become the average, over the batches of seeded
    latents run in training mode, of each batch's mean and unbiased variance (hooks read each BN's input)."""
    from sngan.config import ModelConfig
    from sngan.models import build_generator
    from sngan.train.ema import recalibrate_batchnorm

    torch.manual_seed(6)
    g = build_generator(ModelConfig(arch="resnet", resolution=32, z_dim=8, g_ch=4))
    norms = [m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    seen = {id(m): [] for m in norms}
    for m in norms:
        m.register_forward_hook(lambda mod, args, out: seen[id(mod)].append(args[0].detach().double()))
        m.momentum = 0.3  # restored afterwards
    g.eval()
    recalibrate_batchnorm(g, 8, 0, batch_size=4, num_samples=12)
    assert not g.training and len(norms) == 7
    for m in norms:
        xs = seen[id(m)]
        assert len(xs) == 3 and m.momentum == 0.3
        mean = torch.stack([x.mean(dim=(0, 2, 3)) for x in xs]).mean(0)
        var = torch.stack([x.var(dim=(0, 2, 3), unbiased=True) for x in xs]).mean(0)
        assert torch.allclose(m.running_mean.double(), mean, rtol=1e-4, atol=1e-6)
        assert torch.allclose(m.running_var.double(), var, rtol=1e-4, atol=1e-6)
