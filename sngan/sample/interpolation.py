"""Interpolation maths: paths through latent space (slerp, lerp) and between classes (class weights).

Latent paths are spherical (slerp) by default. z ~ N(0, I) in d = z_dim dimensions lies close to the sphere of
radius sqrt(d); the straight line between two independent draws cuts through the inside (its midpoint has norm
about sqrt(d / 2), a region the generator never saw in training), while slerp stays at the endpoints' radius
(T. White, "Sampling Generative Networks", 2016). `lerp` is offered for comparison.

Class paths follow the authors' `evaluations/gen_interpolated_images.py`: a fixed z per row and class weights
that blend linearly from one class to the next, fed to the conditional BatchNorm, which mixes the classes'
scales and shifts (`sngan.models.layers.ConditionalBatchNorm2d`).
"""

from __future__ import annotations

import torch

METHODS = ("slerp", "lerp")


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Straight-line points between rows of a and b.

    Args:
        a: start points (R, D).
        b: end points (R, D).
        t: fractions in [0, 1], (T,).

    Returns:
        (R, T, D): row r, step s is (1 - t_s) a_r + t_s b_r.
    """
    t = t[None, :, None]  # (1, T, 1)
    return (1 - t) * a[:, None] + t * b[:, None]


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical points between rows of a and b (along the great circle; lerp where a and b are parallel).

    Args:
        a: start points (R, D).
        b: end points (R, D).
        t: fractions in [0, 1], (T,).

    Returns:
        (R, T, D): sin((1 - t) w) / sin(w) a + sin(t w) / sin(w) b, with w the angle between a_r and b_r.
    """
    cos = torch.nn.functional.cosine_similarity(a, b, dim=1).clamp(-1, 1)  # (R,)
    omega = torch.arccos(cos)[:, None, None]  # (R, 1, 1)
    sin = torch.sin(omega)
    tt = t[None, :, None]  # (1, T, 1)
    safe = sin.abs() > 1e-6
    sin = torch.where(safe, sin, torch.ones_like(sin))
    spherical = (torch.sin((1 - tt) * omega) * a[:, None] + torch.sin(tt * omega) * b[:, None]) / sin
    return torch.where(safe, spherical, lerp(a, b, t))


def latent_path(a: torch.Tensor, b: torch.Tensor, steps: int, method: str = "slerp") -> torch.Tensor:
    """`steps` evenly spaced points from a to b (both ends included), flattened row-major.

    Args:
        a: start latents (R, D).
        b: end latents (R, D).
        steps: points per path, >= 2.
        method: "slerp" or "lerp".

    Returns:
        (R * steps, D) latents: path 0's steps, then path 1's, ...
    """
    t = torch.linspace(0, 1, steps)
    points = slerp(a, b, t) if method == "slerp" else lerp(a, b, t)
    return points.reshape(-1, a.shape[1])


def class_path(classes: list[int], steps: int, num_classes: int) -> torch.Tensor:
    """Class weights that move linearly through `classes` in `steps` evenly spaced points.

    Args:
        classes: the classes visited, in order (at least 2).
        steps: points on the whole path, >= 2.
        num_classes: the model's class count.

    Returns:
        (steps, num_classes) float weights; each row sums to 1 and holds at most two non-zero entries.
    """
    position = torch.linspace(0, len(classes) - 1, steps)  # where each step is along the keyframes
    weights = torch.zeros(steps, num_classes)
    for s, p in enumerate(position.tolist()):
        i = min(int(p), len(classes) - 2)
        f = p - i
        weights[s, classes[i]] += 1 - f
        weights[s, classes[i + 1]] += f
    return weights
