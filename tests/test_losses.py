"""The adversarial losses on hand-made logits, with the numbers worked out by hand (paper eq. 16-17 for hinge,
Goodfellow et al. 2014 for the non-saturating loss), and the loss registry giving each name its D and G loss."""

import math

import pytest
import torch

from sngan.train.losses import LOSSES, hinge_d, hinge_g, nonsaturating_d, nonsaturating_g

REAL = torch.tensor([2.0, 0.5, -1.0])
FAKE = torch.tensor([-2.0, 0.0, 1.5])
LOG2 = math.log(2.0)


def test_hinge_d_is_mean_relu_one_minus_real_plus_mean_relu_one_plus_fake():
    # real: relu(1-2)=0, relu(1-0.5)=0.5, relu(1+1)=2 -> 2.5/3 ; fake: relu(1-2)=0, relu(1)=1, relu(2.5)=2.5 -> 3.5/3
    assert hinge_d(REAL, FAKE).item() == pytest.approx(2.5 / 3 + 3.5 / 3)


def test_hinge_d_margin_is_one():
    assert hinge_d(torch.tensor([1.0, 3.0]), torch.tensor([-1.0, -4.0])).item() == 0.0  # beyond the margin
    assert hinge_d(torch.tensor([0.9]), torch.tensor([-1.0])).item() == pytest.approx(0.1)
    assert hinge_d(torch.tensor([1.0]), torch.tensor([-0.8])).item() == pytest.approx(0.2)


def test_hinge_d_is_not_symmetric_in_real_and_fake():
    assert hinge_d(FAKE, REAL).item() == pytest.approx((3 + 1 + 0) / 3 + (3 + 1.5 + 0) / 3)
    assert hinge_d(FAKE, REAL).item() != pytest.approx(hinge_d(REAL, FAKE).item())


def test_hinge_g_is_minus_mean_fake_logit():
    assert hinge_g(FAKE).item() == pytest.approx(-(-2.0 + 0.0 + 1.5) / 3)  # = 1/6


def test_nonsaturating_losses_at_zero_logits_are_log_2_per_term():
    zero = torch.zeros(4)
    assert nonsaturating_d(zero, zero).item() == pytest.approx(2 * LOG2)
    assert nonsaturating_g(zero).item() == pytest.approx(LOG2)


def test_nonsaturating_d_is_minus_log_sigmoid_real_minus_log_one_minus_sigmoid_fake():
    # -log sigmoid(2) = log(1 + e^-2) ; -log(1 - sigmoid(-3)) = log(1 + e^-3)
    real, fake = torch.tensor([2.0]), torch.tensor([-3.0])
    assert nonsaturating_d(real, fake).item() == pytest.approx(math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-3)))
    # the swapped call is a different number: the loss knows which side is real
    assert nonsaturating_d(fake, real).item() == pytest.approx(math.log(1 + math.exp(3)) + math.log(1 + math.exp(2)))


def test_nonsaturating_g_is_minus_log_sigmoid_fake_not_the_saturating_log_one_minus_sigmoid():
    fake = torch.tensor([-3.0, 1.0])
    by_hand = (math.log(1 + math.exp(3)) + math.log(1 + math.exp(-1))) / 2  # -log sigmoid(f)
    assert nonsaturating_g(fake).item() == pytest.approx(by_hand)


@pytest.mark.parametrize("name,real,fake,d_value,g_value", [
    ("hinge", [2.0], [0.5], 0.0 + 1.5, -0.5),
    ("nonsaturating", [0.0], [0.0], 2 * LOG2, LOG2),
])
def test_registry_gives_each_loss_name_its_d_and_g_loss(name, real, fake, d_value, g_value):
    d_loss, g_loss = LOSSES[name]
    assert d_loss(torch.tensor(real), torch.tensor(fake)).item() == pytest.approx(d_value)
    assert g_loss(torch.tensor(fake)).item() == pytest.approx(g_value)
