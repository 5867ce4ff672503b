"""Per-layer spectra of a discriminator and the Lipschitz bounds built from them (`sngan.inspect.spectra` maths).

Two norms per layer, for the weights as trained (W) and as used (W / sigma-hat):
- `matrix`: the largest singular value of W reshaped to (out, -1), what spectral normalization controls;
- `operator`: for convolutions the norm of the convolution as it runs (its input size, stride, zero padding,
  dilation, groups; `sngan.inspect.conv_norm`: a certified lower bound, converged), otherwise the matrix norm. For
  a k x k stride-1 kernel it can exceed the matrix norm by up to a factor k.
Convolutions also carry `sigma_circular_bound`, a certified upper bound of their operator norm (the circular FFT
norm on the zero-padded grid), in the full inspection only; no product uses it.

`upper_bound` multiplies one of them over every layer except class embeddings (which act on the label, not the
image): the paper's bound for a chain of layers with 1-Lipschitz activations, named `*_product` for what it is. It
ignores the architecture's own factors (residual sums add branch norms; 2x2 average pooling has norm 1/2; global
sum pooling over h x w has norm sqrt(h w); the projection's final map is w + embed(y)), so for a ResNet it bounds
nothing. The certified bound of D as it runs is `sngan.inspect.lipschitz.graph_lipschitz_bound`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from sngan.inspect import conv_norm, spectra


@dataclass
class LayerSpectrum:
    name: str
    kind: str  # conv, linear, embedding or the module's class name
    shape: list[int]
    input_size: list[int]  # [H, W] seen in a forward pass at the model resolution ([] for dense layers)
    sigma_hat: float | None  # what eval mode divides by, `spectra.sigma_estimate` (None: not spectrally normalised)
    sigma_matrix: float  # exact largest singular value of W.reshape(out, -1)
    sigma_operator: float  # conv: operator norm as it runs at input_size (conv_norm); else = sigma_matrix
    spectrum: list[float] = field(default_factory=list)  # squared singular values / largest, largest first
    sigma_circular_bound: float | None = None  # conv, full inspection: certified upper bound of sigma_operator
    used_matrix: float | None = None  # the weight as the layer uses it, when that is not W / sigma-hat (WN, gamma)
    used_operator: float | None = None

    @property
    def ratio(self) -> float | None:
        """sigma-hat over the exact matrix sigma: 1 when the power iteration has converged."""
        return None if self.sigma_hat is None else self.sigma_hat / self.sigma_matrix

    def normalised(self, norm: str) -> float:
        """The layer's `norm` (matrix|operator) of the weight it runs with: W / sigma-hat for SN, w_i / ||w_i|| for
        WN, times gamma with a learnt multiplier (App. E); W itself for an unnormalised layer."""
        used = self.used_matrix if norm == "matrix" else self.used_operator
        if used is not None:
            return used
        value = self.sigma_matrix if norm == "matrix" else self.sigma_operator
        return value if self.sigma_hat is None else value / self.sigma_hat


LAYER_KINDS = ((nn.Conv2d, "conv"), (nn.Linear, "linear"), (nn.Embedding, "embedding"))


def kind_of(module: nn.Module) -> str:
    return next((name for cls, name in LAYER_KINDS if isinstance(module, cls)), type(module).__name__)


def probe_inputs(resolution: int, num_classes: int, device: torch.device | str) -> tuple[torch.Tensor, ...]:
    """One zero image (and label 0 when conditional) at the model resolution, for the size-recording forward."""
    x = torch.zeros(1, 3, resolution, resolution, device=device)
    return (x, torch.zeros(1, dtype=torch.long, device=device)) if num_classes else (x,)


def input_sizes(model: nn.Module, resolution: int, num_classes: int) -> dict[str, tuple[int, ...]]:
    """Each weight layer's spatial input size, from one eval-mode forward (no power-iteration update)."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        return spectra.record_input_sizes(model, spectra.weight_layers(model),
                                          *probe_inputs(resolution, num_classes, device))
    finally:
        model.train(was_training)


def layer_spectra(model: nn.Module, sizes: dict[str, tuple[int, ...]], exact: bool = True,
                  full: bool = True) -> list[LayerSpectrum]:
    """One LayerSpectrum per weight layer of `model`, on the weights' device: float64 when `exact`, else float32
    (`spectra.largest_singular_value`, `conv_norm` at its looser tolerance). `full` adds each layer's spectrum
    and the convolutions' circular upper bounds, which the training record does without."""
    rows = []
    with torch.no_grad():
        for name, module in spectra.weight_layers(model).items():
            state = spectra.sn_state(module)
            assert state is not None  # weight_layers keeps the modules that have a weight matrix
            size = tuple(sizes.get(name, ()))
            sigma = spectra.matrix_sigma(state.weight, state.dim, exact)
            row = LayerSpectrum(name=name, kind=kind_of(module), shape=list(state.weight.shape),
                                input_size=list(size), sigma_hat=spectra.sigma_estimate(state), sigma_matrix=sigma,
                                sigma_operator=sigma,
                                spectrum=spectra.normalised_spectrum(state.weight, state.dim) if full else [])
            used = spectra.reparametrised_weight(module)
            if used is not None:
                row.used_matrix = row.used_operator = spectra.matrix_sigma(used, state.dim, exact)
            if isinstance(module, nn.Conv2d) and len(size) == 2:
                geometry = conv_norm.ConvGeometry.of(module)
                row.sigma_operator = conv_norm.conv_operator_norm(state.weight, size, geometry, exact)
                if full:
                    row.sigma_circular_bound = conv_norm.circular_bound(state.weight, size, geometry, exact)
                if used is not None:
                    row.used_operator = conv_norm.conv_operator_norm(used, size, geometry, exact)
            rows.append(row)
    return rows


def upper_bound(rows: list[LayerSpectrum], norm: str, normalised: bool) -> float:
    """Product over the non-embedding layers of their `norm`, as trained or divided by sigma-hat."""
    values = [r.normalised(norm) if normalised else (r.sigma_matrix if norm == "matrix" else r.sigma_operator)
              for r in rows if r.kind != "embedding"]
    return math.prod(values)


def bounds(rows: list[LayerSpectrum]) -> dict[str, float]:
    """The four per-layer products: {matrix, operator} x {as trained, normalised}."""
    return {f"{norm}_{which}": upper_bound(rows, norm, which == "normalised")
            for norm in ("matrix", "operator") for which in ("trained", "normalised")}


def spectral_record(model: nn.Module, resolution: int, num_classes: int) -> dict[str, float]:
    """What `train.inspect_every` logs: sigma-hat / exact ratios (min, max, per layer under `sn_ratio/`), the
    certified graph bound `lipschitz_bound` (`graph_lipschitz_bound`, worst class; absent for a D with BN/LN) and
    the per-layer `operator_norm_product` of the normalised weights; float32 on the model's device. The layers'
    input sizes come from one eval-mode forward of a probe at `resolution` (no power-iteration update)."""
    from sngan.inspect.lipschitz import graph_lipschitz_bound

    sizes = input_sizes(model, resolution, num_classes)
    inputs = probe_inputs(resolution, num_classes, next(model.parameters()).device)
    rows = layer_spectra(model, sizes, exact=False, full=False)
    ratios = {f"sn_ratio/{r.name}": r.ratio for r in rows if r.ratio is not None}
    summary = {"operator_norm_product": upper_bound(rows, "operator", normalised=True)}
    bound = graph_lipschitz_bound(model, sizes, inputs, exact=False).value
    if bound is not None:
        summary["lipschitz_bound"] = bound
    if ratios:
        summary.update(sn_ratio_min=min(ratios.values()), sn_ratio_max=max(ratios.values()))
    return {**summary, **ratios}


def gradient_norm_max(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor | None]],
                      device: torch.device | str) -> float:
    """Largest ||grad_x D(x, y)||_2 over the (x, y) batches (y None when unconditional): a lower bound of the
    Lipschitz constant. D has no batch statistics, so the gradient of the summed logits is per-sample."""
    was_training = model.training
    model.eval()
    best = 0.0
    try:
        for x, y in batches:
            x = x.to(device).requires_grad_(True)
            logits = model(x, y.to(device)) if y is not None else model(x)
            (grad,) = torch.autograd.grad(logits.sum(), x)
            best = max(best, float(grad.flatten(1).norm(dim=1).max()))
    finally:
        model.train(was_training)
    return best


