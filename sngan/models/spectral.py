"""Spectral normalization, the paper's core algorithm (Miyato et al. 2018, Algorithm 1): W / sigma(W), sigma by one
power iteration per training forward with a persistent vector.

`FP32SpectralNorm` runs in float32 with autocast off (under CUDA autocast the power iteration's `mv` would
otherwise run in bf16/fp16, and sigma, a norm of the whole matrix, loses about three significant digits), and it
can be trained under torch.compile (see `FP32SpectralNorm`). It is registered through `torch.nn.utils.parametrize`,
so the state-dict keys are those of torch's `spectral_norm` (`_u`, `_v`), and checkpoints of every version load.

One power-iteration step, two orders. Which vector a layer keeps between forwards (`FP32SpectralNorm.keeps`) is
set from `model.sn_algorithm` by `build_discriminator` (`STEP_OF_ALGORITHM`):
- keeps "u", the authors' step (`source/functions/max_sv.py` of pfnet-research/sngan_projection, called by their
  `SNConvolution2D.W_bar` / `SNLinear.W_bar` at every forward): v = normalize(W^T u), u = normalize(W v),
  sigma-hat = u^T W v. Their `SNConvolution2D` stores u in training mode only ("if chainer.config.train:
  self.u[:] = _u"); their `SNLinear` and `SNEmbedID` store it in every mode (`self.u[:] = _u` unconditionally in
  `W_bar`), so each of their sampling or evaluation forwards also moves those two layers' u one step. We store in
  training mode only, for every layer, as their `SNConvolution2D`. It does not matter for training: a D forward
  in eval mode happens only outside the training steps (the authors' D is never run in eval mode during training;
  their G holds no SN layer), and the next training forward runs the step anyway, from a u that is one more
  step along the same power iteration, which converges to the same vector. Their normalize is x / (||x|| + 1e-12),
  ours x / max(||x||, 1e-12): equal for every non-negligible vector. We store this forward's v in `_v` too (a
  record; the step never reads it).
- keeps "v", torch's `parametrizations.spectral_norm`: u = normalize(W v), v = normalize(W^T u), sigma-hat =
  u^T W v, both stored in training mode; in eval mode u and v are used as stored.
With W fixed the two orders walk the same alternating sequence; once an optimizer step changes W they differ: the
next forward starts from the old u (authors) or the old v (torch).

Where the power iteration starts (`model.sn_algorithm`, applied by `start_sn` when a run starts fresh), in those terms:
- `random`, the authors' start and step (Algorithm 1: "Initialize u_l with a random vector (sampled from isotropic
  distribution)"; their `SNConvolution2D`: `self.u = np.random.normal(size=(1, out_channels))`, no iteration at
  construction): u ~ N(0, I) normalised, keeps u. The stored u and sigma-hat equal the authors' at every forward
  of a training run (a test replays their code in float64 while Adam changes W).
- `svd` (ours): u (and v) at the exact top singular vectors of W, so sigma-hat = sigma from the first step; then
  the authors' step (keeps u).
- `torch`: torch's `spectral_norm` whole: u, v after 15 power iterations from random vectors at construction
  (drawing torch's random numbers), then torch's step (keeps v).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

SN_EPS = 1e-12
KEEPS = ("u", "v")  # the vector a layer carries between forwards: the authors' u, or torch's v
STEP_OF_ALGORITHM = {"random": "u", "svd": "u", "torch": "v"}  # model.sn_algorithm -> FP32SpectralNorm.keeps


class FP32SpectralNorm(nn.Module):
    """Spectral-norm parametrization (weight / sigma) that torch.compile can train; float32 with autocast off.

    The state is that of torch's `parametrizations.spectral_norm` (buffers `_u`, `_v`; 15 iterations at
    construction, drawing the same random numbers; eps 1e-12). The step is the authors' (`keeps="u"`) or torch's
    (`keeps="v"`), see the module docstring. How the training-mode update is written differs from torch's. torch
    updates the buffers in place and then reads clones of them; compiled, AOTAutograd's partitioner drops those
    clones and recomputes u and v in backward from the buffers, which by then hold the next forward's values (two D
    forwards, real and fake, share one backward): a version-counter error in backward. Here the power iteration is
    an opaque custom op (`power_iteration`) whose fresh output tensors sigma = u^T W v is computed from and backward
    saves; they are copied into the buffers and never mutated. As in torch and the authors' code, u and v are
    constants for autograd: the gradient of sigma flows through W only.
    """

    _u: torch.Tensor  # (out,) buffers, registered in __init__
    _v: torch.Tensor  # (in * kh * kw,)

    def __init__(self, weight: torch.Tensor, n_power_iterations: int = 1, dim: int = 0, eps: float = SN_EPS,
                 keeps: str = "u"):
        super().__init__()
        if weight.ndim < 2 or n_power_iterations < 1 or keeps not in KEEPS:
            raise ValueError(f"spectral norm needs a weight of 2 or more dimensions, n_power_iterations >= 1 and "
                             f"keeps in {KEEPS}, got shape {tuple(weight.shape)}, {n_power_iterations}, {keeps!r}")
        self.dim, self.eps, self.n_power_iterations, self.keeps = dim, eps, n_power_iterations, keeps
        with torch.no_grad():
            weight_mat = weight.movedim(self.dim, 0).flatten(1)  # (out, in * kh * kw)
            h, w = weight_mat.shape
            u = F.normalize(weight_mat.new_empty(h).normal_(0, 1), dim=0, eps=eps)  # drawn as torch does
            v = F.normalize(weight_mat.new_empty(w).normal_(0, 1), dim=0, eps=eps)
            u, v = power_iteration(weight_mat, v, 15, eps)  # start near the top singular vectors, as torch
        self.register_buffer("_u", u)
        self.register_buffer("_v", v)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=weight.device.type, enabled=False):
            weight = weight.float()
            weight_mat = weight.movedim(self.dim, 0).flatten(1)  # (out, in * kh * kw)
            if self.keeps == "u":  # the authors': v from the kept u, then u from v; the step runs in eval mode too
                with torch.no_grad():
                    v, u = power_iteration(weight_mat.detach().T, self._u, self.n_power_iterations, self.eps)
                    if self.training:
                        self._u.copy_(u)
                        self._v.copy_(v)
            elif self.training:  # torch's: u from the kept v, then v from u
                with torch.no_grad():
                    u, v = power_iteration(weight_mat.detach(), self._v, self.n_power_iterations, self.eps)
                    self._u.copy_(u)
                    self._v.copy_(v)
            else:
                u, v = self._u.clone(), self._v.clone()  # what backward saves must not be a buffer
            sigma = torch.vdot(u, torch.mv(weight_mat, v))  # grad through W only: u, v carry no graph
            return weight / sigma


@torch.library.custom_op("sngan::power_iteration", mutates_args=())
def power_iteration(weight_mat: torch.Tensor, v: torch.Tensor, n: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` >= 1 steps of u <- normalize(W v), v <- normalize(W^T u) from `v`, returned as new tensors (u, v).
    Called with W^T and the kept u it is the authors' step: (v, u) with v = normalize(W^T u), u = normalize(W v).

    A custom op, opaque to torch.compile, on purpose: compiled, the partitioner would otherwise recompute u and v
    in backward from the buffers' values at graph entry, after the buffers had been overwritten (by this forward's
    update, or by the second D forward that shares the backward) — a version-counter error, or wrong gradients.
    """
    for _ in range(n):
        u = F.normalize(torch.mv(weight_mat, v), dim=0, eps=eps)
        v = F.normalize(torch.mv(weight_mat.H, u), dim=0, eps=eps)
    return u, v


@power_iteration.register_fake
def _(weight_mat: torch.Tensor, v: torch.Tensor, n: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    return weight_mat.new_empty(weight_mat.shape[0]), torch.empty_like(v)


def sn_layers(model: nn.Module) -> list[tuple[torch.Tensor, FP32SpectralNorm]]:
    """(raw weight, its FP32SpectralNorm) for every spectrally normalised weight of `model`, in module order."""
    return [(chain.original, norm) for chain in model.modules() if isinstance(chain, parametrize.ParametrizationList)
            for norm in chain if isinstance(norm, FP32SpectralNorm)]


def start_sn(model: nn.Module, how: str) -> int:
    """Start every spectral-norm layer's power iteration as `model.sn_algorithm` = `how` says; returns how many layers.

    - random (the authors'): u ~ N(0, I) normalised, drawn from torch's global RNG layer by layer in module order;
      v = normalize(W^T u), a record; no power iteration.
    - svd (ours): u, v at the exact top singular vectors of W (float64 eigh of the smaller Gram matrix, on the
      weight's device). From random vectors (torch: 15 power iterations at construction; the authors' Chainer code:
      none) one power iteration per forward converges slowly, because the top singular values of a random matrix
      are close: sigma-hat stays below sigma for hundreds of steps (paper App. C.1, Figure 9). Started exact,
      W / sigma-hat has spectral norm 1 from the first step.
    - torch: left as `FP32SpectralNorm` made it at construction (15 power iterations from random vectors).
    """
    if how not in STEP_OF_ALGORITHM:
        raise ValueError(f"unknown spectral-norm start {how!r}; choose one of {'|'.join(STEP_OF_ALGORITHM)}")
    layers = sn_layers(model)
    if how == "torch":
        return len(layers)
    with torch.no_grad():
        for weight, norm in layers:
            w = weight.float().movedim(norm.dim, 0).flatten(1)  # (out, in * kh * kw)
            if how == "random":
                u = F.normalize(torch.randn(w.shape[0], dtype=torch.float32).to(w.device), dim=0, eps=norm.eps)
                v = F.normalize(w.T @ u, dim=0, eps=norm.eps)
            else:  # svd: the top eigenvector of the smaller Gram matrix, then the other side from it
                wide = w.shape[0] <= w.shape[1]
                top = torch.linalg.eigh((w @ w.T if wide else w.T @ w).double()).eigenvectors[:, -1].float()
                other = F.normalize(w.T @ top if wide else w @ top, dim=0, eps=norm.eps)
                u, v = (top, other) if wide else (other, top)
            norm._u.copy_(u)
            norm._v.copy_(v)
    return len(layers)


def sn(module: nn.Module, power_iterations: int = 1, keeps: str = "u") -> nn.Module:
    """Wrap `module.weight` in spectral normalization (weight / sigma(weight)); `keeps` names the step (module
    docstring): "u" the authors', "v" torch's `spectral_norm(module)`.

    Registered through `torch.nn.utils.parametrize`, so the state-dict keys are those of torch's `spectral_norm`
    (`...parametrizations.weight.original`, `...parametrizations.weight.0._u`, `._v`).
    """
    dim = 1 if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)) else 0
    weight = module.weight
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"spectral norm needs a module with a weight tensor, got {type(module).__name__}")
    parametrize.register_parametrization(module, "weight", FP32SpectralNorm(weight, power_iterations, dim,
                                                                            eps=SN_EPS, keeps=keeps))
    return module
