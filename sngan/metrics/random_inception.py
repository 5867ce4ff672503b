"""A randomly initialised FID-Inception state dict: the network's exact shapes without the downloaded weights.

For what does not depend on the weights' values: the tests (offline, no 96 MB download) and timing runs on a machine
that cannot fetch the real weights (scripts/bench_eval.py, scripts/dev/gpu_check.sh). Scores computed with it mean
nothing; they are stamped `custom-<sha256 prefix>`, never `pt_inception-2015-12-05`.
"""

from __future__ import annotations

import torch


def random_inception_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A randomly initialised FID-Inception state dict (same keys and shapes as pt_inception-2015-12-05).

    torchvision's Inception3 with 1008 classes and no aux head has exactly the FID Inception's parameters; convs
    get He init and BatchNorm random affine/running statistics, so activations stay O(1) through the network.
    """
    import torchvision

    torch.manual_seed(seed)
    net = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        elif isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
            assert m.running_mean is not None and m.running_var is not None  # track_running_stats, as built
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
        elif isinstance(m, torch.nn.Linear):
            torch.nn.init.normal_(m.weight, std=2048 ** -0.5)
    return net.state_dict()
