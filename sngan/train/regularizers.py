"""The discriminator constraints of the paper's comparison (section 4.1) that are not a normalisation layer.

- gradient penalty (WGAN-GP, Gulrajani et al. 2017; "GAN-GP" with the non-saturating loss):
  lambda * E[(||grad_x D(x_hat)||_2 - 1)^2] on x_hat = eps x + (1 - eps) G(z), eps ~ U[0, 1] per sample;
- orthonormal regularisation (Brock et al. 2016, paper eq. 14): gamma * sum_W ||W^T W - I||_F^2 over D's conv and
  linear weights W reshaped to (out, in * k * k) as the paper's W in R^{d_out x d_in}, with D initialised
  orthonormal ("we initialized each weight of D with a randomly selected orthonormal operator");
- weight clipping: the weight of every conv and dense layer of D clamped to [-c, c] after each D update. The paper
  (section 4.1): "For weight clipping, we followed the original work Arjovsky et al. (2017) and set the clipping
  constant c at 0.01 for the convolutional weight of each layer"; biases, BN/LN shifts and embeddings are not
  clipped (Arjovsky et al.'s code clamps every parameter; the paper names the layers' weights). The paper trains
  it with the standard loss of eq. 15 ("For all methods other than WGAN-GP, we used the following standard
  objective function"); the Wasserstein critic with clipping is our extra plan method WGAN-clip.

Pure maths on modules and tensors: `sngan.train.steps` (`regularized_d_loss`, `after_d_update`) applies them as the
config asks, `sngan.train.state` starts D orthonormal with `orthogonal_init`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

GP_EPS = 1e-12  # inside the square root: the norm's gradient stays finite where grad D is exactly 0


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], x_real: torch.Tensor,
                     x_fake: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
    """E[(||grad D(x_hat)||_2 - 1)^2] on random interpolates, differentiable in D's weights (create_graph).

    Args:
        critic: x (B, C, H, W) -> logits (B,).
        x_real, x_fake: two batches of the same shape.
        eps: interpolation weights (B,) in [0, 1]; drawn uniformly when None.
    """
    if eps is None:
        eps = torch.rand(x_real.shape[0], device=x_real.device)
    eps = eps.view(-1, *([1] * (x_real.dim() - 1)))  # (B,) -> (B, 1, 1, 1)
    x_hat = (eps * x_real.detach().float() + (1 - eps) * x_fake.detach().float()).requires_grad_(True)
    logits = critic(x_hat)
    (grad,) = torch.autograd.grad(logits.float().sum(), x_hat, create_graph=True)
    norms = torch.sqrt(grad.flatten(1).pow(2).sum(dim=1) + GP_EPS)  # (B, C * H * W) -> (B,)
    return (norms - 1).pow(2).mean()


def weight_matrices(module: nn.Module) -> list[torch.Tensor]:
    """The weights of every conv and linear layer, each as an (out, -1) matrix."""
    return [m.weight.flatten(1) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def orthonormal_penalty(module: nn.Module) -> torch.Tensor:
    """sum_W ||W^T W - I||_F^2 - max(d_in - d_out, 0) over the conv/linear weights of `module`.

    Computed through the smaller Gram matrix: ||W^T W - I||^2 = ||W W^T||^2 - 2 ||W||^2 + d_in. A wide W
    (d_out < d_in) has rank <= d_out, so the term is at least d_in - d_out; that constant is subtracted, so an
    orthonormal W scores 0 and the logged loss stays readable. The gradient is exactly eq. 14's.
    """
    total = torch.zeros((), device=next(module.parameters()).device)
    for w in weight_matrices(module):
        d_out, d_in = w.shape
        gram = w @ w.T if d_out <= d_in else w.T @ w  # (min, min)
        total = total + gram.pow(2).sum() - 2 * w.pow(2).sum() + min(d_in, d_out)
    return total


def orthogonal_init(module: nn.Module) -> None:
    """Re-initialise every conv/linear weight of `module` as a random orthonormal operator (gain 1)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.orthogonal_(m.weight)


@torch.no_grad()
def clip_weights(module: nn.Module, c: float) -> None:
    """Clamp the weight of every conv and linear layer of `module` to [-c, c] in place (biases untouched)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.weight.clamp_(-c, c)
