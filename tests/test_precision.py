"""One precision decision for scoring: whatever TF32/autocast state training leaves, IS/FID run in exact float32."""

import torch

from sngan.config import ModelConfig
from sngan.metrics.precision import scoring_precision, set_tf32
from sngan.models import build_generator
from sngan.train.perf import Perf, set_matmul_precision

ON, OFF = (True, True), (False, False)


def tf32_flags() -> tuple[bool, bool]:
    """(cuDNN float32 convs, CUDA float32 matmuls) may run in TF32 now, read from torch's own flags (the
    `fp32_precision` spelling where this torch has it, else `allow_tf32`), apart from sngan's setter."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if getattr(conv, "fp32_precision", None) is not None:
        return conv.fp32_precision == "tf32", torch.backends.cuda.matmul.fp32_precision == "tf32"
    return bool(torch.backends.cudnn.allow_tf32), bool(torch.backends.cuda.matmul.allow_tf32)


def test_bf16_training_turns_tf32_on_and_scoring_turns_it_off_for_its_duration():
    set_matmul_precision(Perf(precision="bf16"), torch.device("cuda"))  # flags set without a GPU
    try:
        assert tf32_flags() == ON
        with scoring_precision():
            assert tf32_flags() == OFF
        assert tf32_flags() == ON  # training's setting is back
    finally:
        set_tf32(False)


def test_generator_and_inception_forwards_of_a_score_see_no_tf32_and_no_autocast():
    from sngan.evaluation.scoring import _inception_batch

    seen = []

    def record(*_):
        seen.append((*tf32_flags(), torch.is_autocast_enabled("cpu")))

    generator = build_generator(ModelConfig(arch="resnet", resolution=32, z_dim=8, g_ch=4))
    generator.register_forward_hook(record)

    class Net(torch.nn.Module):
        network, inception_input = "probe", "tf1"

        def __init__(self):
            super().__init__()
            self.register_buffer("anchor", torch.zeros(1))

        def forward(self, images):
            record()
            features = images.mean(dim=(2, 3))
            return features, features

    set_tf32(True)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):  # as if called from inside a bf16 training step
            _inception_batch(generator, Net(), torch.randn(3, 8), None, "round")
    finally:
        set_tf32(False)
    assert seen == [(*OFF, False), (*OFF, False)]
