import torch

from sngan.train.losses import get_losses, hinge_d, hinge_g, nonsaturating_d, nonsaturating_g

REAL = torch.tensor([2.0, 0.5, -1.0])
FAKE = torch.tensor([-2.0, 0.0, 1.5])


def test_hinge_values_by_hand():
    # real: relu(1-2)=0, relu(0.5)=0.5, relu(2)=2 -> 2.5/3 ; fake: relu(-1)=0, relu(1)=1, relu(2.5)=2.5 -> 3.5/3
    assert torch.isclose(hinge_d(REAL, FAKE), torch.tensor(6.0 / 3))
    assert torch.isclose(hinge_g(FAKE), torch.tensor(-(-2.0 + 0.0 + 1.5) / 3))


def test_nonsaturating_values_by_hand():
    import math

    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    d = sum(sp(-r) for r in REAL.tolist()) / 3 + sum(sp(f) for f in FAKE.tolist()) / 3
    g = sum(sp(-f) for f in FAKE.tolist()) / 3
    assert abs(nonsaturating_d(REAL, FAKE).item() - d) < 1e-6
    assert abs(nonsaturating_g(FAKE).item() - g) < 1e-6


def test_registry_names():
    assert get_losses("hinge") == (hinge_d, hinge_g)
    assert get_losses("nonsaturating") == (nonsaturating_d, nonsaturating_g)
