"""A certified upper bound of the discriminator's Lipschitz constant in x (for each label), from the graph as it
runs: `graph_lipschitz_bound`.

Each weight layer contributes a certified upper bound of its operator norm with the weight it runs with (W / sigma-hat
for SN, w_i / ||w_i|| for WN, times gamma with App. E's multiplier): convolutions the circular FFT norm on the
zero-padded grid (`conv_norm.circular_bound`, Sedghi et al. 2019), dense layers their matrix norm. They are composed
along the forward pass of each architecture, with these facts:
- ReLU and leaky ReLU (slope 0.1) are 1-Lipschitz, elementwise;
- 2x2 average pooling (stride 2) has norm 1/2: each output averages four disjoint inputs;
- a residual sum f(x) + g(x) has ||f + g||_Lip <= ||f||_Lip + ||g||_Lip; an identity shortcut contributes 1;
- global sum pooling over an h x w map has norm sqrt(h w) (each channel sums h w entries);
- the projection D's logit w.h + <embed(y), h> = (w + embed(y)).h is linear in h with norm ||w + e_y|| for label y,
  so the final map is w + e_y, not w: the bound is taken per class and the worst class is reported;
- the concat D's embedding enters as a constant block of channels: it does not depend on x, so the tail's bound
  (its first convolutions act on the concatenated input) multiplies the head's.
Layers that normalise with batch or layer statistics (the BN and LN comparison runs) are not Lipschitz maps of a
single input with a constant we can certify here: the bound is None for such a D.

Float32 (`exact=False`, `train.inspect_every`) evaluates the same norms in float32 and widens the result by
`FLOAT32_MARGIN` for the rounding and the float32 norm's tolerance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from sngan.inspect import conv_norm, spectra
from sngan.models.cnn import CNNDiscriminator
from sngan.models.layers import DBlock, DBlockOptimized
from sngan.models.resnet import ResNetConcatDiscriminator, ResNetDiscriminator

AVG_POOL_NORM = 0.5  # 2x2 average pooling, stride 2
FLOAT32_MARGIN = 1e-4  # relative widening of a float32 bound (largest_singular_value's rtol is 1e-5)


@dataclass
class LipschitzBound:
    """The bound and, for a class-conditional projection D, the class it is attained for."""

    value: float | None  # None: the D normalises with batch/layer statistics
    worst_class: int | None = None


def used_weight(module: nn.Module) -> torch.Tensor:
    """The weight `module` runs with in eval mode: W / sigma-hat for plain SN, else `spectra.reparametrised_weight`."""
    state = spectra.sn_state(module)
    if state is None:
        raise TypeError(f"{type(module).__name__} has no weight matrix to bound")
    used = spectra.reparametrised_weight(module)
    if used is not None:
        return used
    sigma_hat = spectra.sigma_estimate(state)
    return state.weight if sigma_hat is None else state.weight / sigma_hat


def layer_bound(module: nn.Module, size: tuple[int, ...], exact: bool = True) -> float:
    """A certified upper bound of the operator norm of `module` as it runs (input spatial `size` for convs)."""
    weight = used_weight(module)
    if isinstance(module, nn.Conv2d):
        height, width = size
        return conv_norm.circular_bound(weight, (height, width), conv_norm.ConvGeometry.of(module), exact)
    state = spectra.sn_state(module)
    assert state is not None  # used_weight has raised otherwise
    return spectra.matrix_sigma(weight, state.dim, exact)


def _is_identity(module: nn.Module) -> bool:
    return isinstance(module, nn.Identity)


def _block(block: nn.Module, norm: dict[nn.Module, float]) -> float | None:
    """Bound of one residual block from its layers' bounds (None when it normalises with statistics)."""
    if isinstance(block, DBlockOptimized):  # pool(c2(relu(n1(c1 x)))) + c_sc(pool(x))
        if not _is_identity(block.n1):
            return None
        return AVG_POOL_NORM * norm[block.c2] * norm[block.c1] + norm[block.c_sc] * AVG_POOL_NORM
    if isinstance(block, DBlock):  # [pool] c2(relu(n2(c1(relu(n1 x))))) + [pool] (x or c_sc x)
        if not (_is_identity(block.n1) and _is_identity(block.n2)):
            return None
        pool = AVG_POOL_NORM if block.downsample else 1.0
        shortcut = 1.0 if block.c_sc is None else norm[block.c_sc]
        return pool * (norm[block.c2] * norm[block.c1] + shortcut)
    raise TypeError(f"no Lipschitz rule for {type(block).__name__}")


def _chain(blocks: nn.Sequential, norm: dict[nn.Module, float]) -> float | None:
    bounds = [_block(b, norm) for b in blocks]
    known = [b for b in bounds if b is not None]
    return math.prod(known) if len(known) == len(bounds) else None


def _final_map_size(model: nn.Module, trunk: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[int, int]:
    shape: list[int] = []
    handle = trunk.register_forward_hook(lambda m, a, out: shape.extend(out.shape[2:]))
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        handle.remove()
    return shape[0], shape[1]


def graph_lipschitz_bound(model: nn.Module, sizes: dict[str, tuple[int, ...]], inputs: tuple[torch.Tensor, ...],
                          exact: bool = True) -> LipschitzBound:
    """Certified upper bound of ||D(x, y) - D(x', y)|| / ||x - x'|| over x, x' (and, projection D, the worst y).

    Args:
        model: a discriminator of this package (resnet, resnet concat, cnn).
        sizes: each weight layer's spatial input size (`summary.input_sizes`).
        inputs: one probe input at the model's resolution (`summary.probe_inputs`), to read the final map's size.
        exact: float64 norms (`sngan inspect`) or float32 ones widened by FLOAT32_MARGIN (training record).
    """
    was_training = model.training
    model.eval()  # no power-iteration update; sigma-hat as the layers would use it now
    try:
        with torch.no_grad():
            layers = spectra.weight_layers(model)
            norm = {m: layer_bound(m, sizes.get(name, ()), exact) for name, m in layers.items()
                    if not isinstance(m, nn.Embedding)}
            result = _bound(model, norm, inputs)
    finally:
        model.train(was_training)
    if result.value is not None and not exact:
        result.value *= 1 + FLOAT32_MARGIN
    return result


def _bound(model: nn.Module, norm: dict[nn.Module, float], inputs: tuple[torch.Tensor, ...]) -> LipschitzBound:
    if isinstance(model, CNNDiscriminator):  # convs with leaky ReLU (and BN/LN in the comparison runs), then dense
        if any(not isinstance(m, (nn.Conv2d, nn.LeakyReLU)) for m in model.body):
            return LipschitzBound(None)
        return LipschitzBound(math.prod(norm[m] for m in model.body if isinstance(m, nn.Conv2d))
                              * norm[model.linear])
    if isinstance(model, ResNetConcatDiscriminator):
        head, tail = _chain(model.head, norm), _chain(model.tail, norm)
        if head is None or tail is None:
            return LipschitzBound(None)
        h, w = _final_map_size(model, model.tail, inputs)
        return LipschitzBound(head * tail * math.sqrt(h * w) * norm[model.linear])
    if isinstance(model, ResNetDiscriminator):
        trunk = _chain(model.blocks, norm)
        if trunk is None:
            return LipschitzBound(None)
        h, w = _final_map_size(model, model.blocks, inputs)
        if model.embed is None:
            return LipschitzBound(trunk * math.sqrt(h * w) * norm[model.linear])
        final = used_weight(model.linear).double().reshape(1, -1) + used_weight(model.embed).double()  # (K, C)
        per_class = final.norm(dim=1)  # ||w + e_y|| for each label y
        worst = int(per_class.argmax())
        return LipschitzBound(trunk * math.sqrt(h * w) * float(per_class[worst]), worst)
    raise TypeError(f"no Lipschitz rule for {type(model).__name__}")
