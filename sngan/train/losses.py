"""Adversarial losses as pure functions of discriminator logits (shape (B,)).

hinge (paper eq. 16-17, authors' `updater.py`):
    D: mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))      G: -mean(D(G(z)))
nonsaturating (the "standard" GAN loss of the paper's CNN rows, Goodfellow et al. 2014):
    D: mean(softplus(-D(x))) + mean(softplus(D(G(z))))     G: mean(softplus(-D(G(z))))
wasserstein (WGAN, Arjovsky et al. 2017; the paper's WGAN-GP rows):
    D: mean(D(G(z))) - mean(D(x))                           G: -mean(D(G(z)))
The paper trains every other method, weight clipping included, with the standard loss (section 4: "For all methods
other than WGAN-GP, we used the following standard objective function", eq. 15): nonsaturating here. The
Lipschitz constraint a Wasserstein critic needs (clipping, gradient penalty) is in `sngan.train.regularizers`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def hinge_d(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss.

    Args:
        real_logits: D(x) for real images, (B,).
        fake_logits: D(G(z)) for generated images, (B',).

    Returns:
        Scalar loss.
    """
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def hinge_g(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator hinge loss -mean(D(G(z))).

    Args:
        fake_logits: D(G(z)), (B,).

    Returns:
        Scalar loss.
    """
    return -fake_logits.mean()


def nonsaturating_d(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator cross-entropy loss -log sigmoid(D(x)) - log(1 - sigmoid(D(G(z)))).

    Args:
        real_logits: D(x), (B,).
        fake_logits: D(G(z)), (B',).

    Returns:
        Scalar loss.
    """
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def nonsaturating_g(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss -log sigmoid(D(G(z))).

    Args:
        fake_logits: D(G(z)), (B,).

    Returns:
        Scalar loss.
    """
    return F.softplus(-fake_logits).mean()


def wasserstein_d(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Critic loss E[D(G(z))] - E[D(x)] (the negated Wasserstein-1 estimate)."""
    return fake_logits.mean() - real_logits.mean()


# loss.type -> (d_loss(real_logits, fake_logits), g_loss(fake_logits))
LOSSES: dict[str, tuple[Callable, Callable]] = {
    "hinge": (hinge_d, hinge_g),
    "nonsaturating": (nonsaturating_d, nonsaturating_g),
    "wasserstein": (wasserstein_d, hinge_g),  # the generator's -E[D(G(z))] is the hinge generator loss
}

