"""`graph_lipschitz_bound` bounds D: it is >= the norm of D's input gradient at random inputs (every class), and >=
the same graph composed by hand in this file from each layer's dense matrix as it runs (basis images pushed
through it), with the pooling, residual and global-sum factors written out here."""

import math

import pytest
import torch
from torch import nn

from sngan.config import ModelConfig
from sngan.inspect.lipschitz import graph_lipschitz_bound
from sngan.inspect.summary import input_sizes, probe_inputs
from sngan.models import build_discriminator

MODELS = {
    "resnet": ModelConfig(resolution=32, d_ch=2),
    "projection": ModelConfig(resolution=32, d_ch=2, num_classes=3),
    "concat": ModelConfig(resolution=32, d_ch=2, num_classes=3, d_conditioning="concat"),
    "cnn": ModelConfig(arch="cnn", resolution=32, d_ch=2, d_linear_bias=True),
}


def trained_a_little(m: ModelConfig, seed: int = 0) -> nn.Module:
    """A D whose sigma-hat has moved (20 training forwards) and whose weights are off their start."""
    torch.manual_seed(seed)
    d = build_discriminator(m)
    y = torch.tensor([0, 1]) if m.num_classes else None
    with torch.no_grad():
        for p in d.parameters():
            p.add_(0.05 * torch.randn_like(p))
        for _ in range(20):
            d(torch.randn(2, 3, 32, 32), y)
    return d.eval()


def bound_of(d: nn.Module, m: ModelConfig):
    return graph_lipschitz_bound(d, input_sizes(d, 32, m.num_classes), probe_inputs(32, m.num_classes, "cpu"))


def gradient_norms(d: nn.Module, m: ModelConfig, n: int = 8) -> list[float]:
    """||grad_x D(x, y)|| at n random inputs, for every class y of a conditional D."""
    norms = []
    for y in range(max(1, m.num_classes)):
        x = torch.randn(n, 3, 32, 32, requires_grad=True)
        labels = torch.full((n,), y) if m.num_classes else None
        (grad,) = torch.autograd.grad(d(x, labels).sum(), x)  # no batch statistics: per-sample gradients
        norms += grad.flatten(1).norm(dim=1).tolist()
    return norms


@pytest.mark.parametrize("name", list(MODELS))
def test_bound_is_at_least_the_input_gradient_norm_at_random_inputs(name):
    m = MODELS[name]
    d = trained_a_little(m)
    bound = bound_of(d, m)
    assert bound.value is not None and bound.value >= max(gradient_norms(d, m))
    assert (bound.worst_class is not None) == (name == "projection")


def dense_norms(d: nn.Module, y: torch.Tensor | None) -> dict[nn.Module, float]:
    """Each conv/linear layer's exact operator norm as it runs: its dense matrix from basis images, float64."""
    shapes = {}

    def record(module, args):  # returns None: a pre-hook's return value would replace the input
        shapes.setdefault(module, args[0].shape[1:])

    hooks = [m.register_forward_pre_hook(record) for m in d.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        d(torch.zeros(1, 3, 32, 32), y)
    for hook in hooks:
        hook.remove()
    norms = {}
    with torch.no_grad():
        for layer, shape in shapes.items():
            basis = torch.eye(shape.numel()).reshape(-1, *shape)
            images = (layer(basis) - layer(torch.zeros(1, *shape))).flatten(1).double()  # (in, out)
            small = images.t() @ images if images.shape[1] < images.shape[0] else images @ images.t()
            norms[layer] = torch.linalg.eigvalsh(small)[-1].item() ** 0.5
    return norms


def test_bound_is_at_least_the_hand_composed_dense_graph_of_a_projection_resnet():
    """The 32x32 ResNet D: optimized block (pool(c2 relu c1) + c_sc pool: 1/2 ||c2|| ||c1|| + 1/2 ||c_sc||), a
    downsampling block (1/2 (||c2|| ||c1|| + ||c_sc||)), two plain blocks (||c2|| ||c1|| + 1), ReLU, global sum
    over the 8x8 map (sqrt 64), then the projection's final map w + e_y (worst class)."""
    m = MODELS["projection"]
    d = trained_a_little(m, seed=1)
    with torch.no_grad():  # make one class's embedding point along w, so ||w + e_y|| is far from ||w||
        w = d.linear.parametrizations.weight.original
        d.embed.parametrizations.weight.original[2] = 3 * w[0]
    norm = dense_norms(d, torch.tensor([0]))
    b = d.blocks
    trunk = (0.5 * norm[b[0].c2] * norm[b[0].c1] + 0.5 * norm[b[0].c_sc]) \
        * 0.5 * (norm[b[1].c2] * norm[b[1].c1] + norm[b[1].c_sc]) \
        * (norm[b[2].c2] * norm[b[2].c1] + 1) * (norm[b[3].c2] * norm[b[3].c1] + 1)
    with torch.no_grad():
        w_used = d.linear.weight.double()  # (1, C), eval mode: as it runs
        e_used = d.embed.weight.double()  # (3, C)
    per_class = (w_used + e_used).norm(dim=1)
    composed = trunk * math.sqrt(8 * 8) * per_class.max().item()
    bound = bound_of(d, m)
    assert bound.worst_class == int(per_class.argmax()) == 2
    assert per_class.max() > 1.5 * w_used.norm()  # the class term matters here
    assert bound.value >= composed * (1 - 1e-9)
    assert bound.value <= 2 * composed  # circular bounds of 3x3 stride-1 convs are close to the exact norms
    assert composed >= max(gradient_norms(d, m))


def test_bound_is_at_least_the_dense_product_of_a_cnn_and_none_with_batch_norm():
    m = MODELS["cnn"]
    d = trained_a_little(m, seed=2)
    composed = math.prod(dense_norms(d, None).values())  # convs, leaky ReLU (1-Lipschitz), dense
    assert bound_of(d, m).value >= composed * (1 - 1e-9)
    bn = ModelConfig(arch="cnn", resolution=32, d_ch=2, d_norm="batch")
    assert bound_of(build_discriminator(bn).eval(), bn).value is None
