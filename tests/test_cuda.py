"""The CUDA paths, run where a GPU exists (skipped on CPU-only machines such as CI; scripts/dev/gpu_check.sh runs them).

Each test names one CUDA-only mechanism: the fast-path defaults, bf16 autocast with fp32 spectral norm, the
GPU-resident uint8 dataset and its index gather, the pinned-memory prefetch path, TF32 switching around evaluation,
and the CUDA random state in checkpoints.
"""

import pytest
import torch

from sngan.checkpoint import load_checkpoint
from sngan.config import load_config
from sngan.data import Batches, StreamBatches
from sngan.metrics.precision import scoring_precision
from sngan.train.loop import train
from sngan.train.losses import LOSSES
from sngan.train.perf import Perf, set_matmul_precision
from sngan.train.state import build_state
from sngan.train.steps import d_step, g_step
from tests.helpers import train_until

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")
QUIET = {"progress": False, "log": lambda s: None}


def cuda_config(path, *extra):
    return load_config(path, ["train.device=cuda", *extra])


def flat(module):
    return torch.cat([p.detach().flatten().float().clone() for p in module.parameters()])


def test_auto_perf_on_cuda_is_bf16_channels_last_and_fused_adam(tiny_config):
    state = build_state(cuda_config(tiny_config), CUDA, log=lambda s: None)
    assert (state.perf.precision, state.perf.channels_last, state.perf.fused_adam) == ("bf16", True, True)
    assert state.opt_d.defaults["fused"] and state.opt_g.defaults["fused"]
    conv = next(m for m in state.g.module.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert all(p.dtype == torch.float32 and p.is_cuda for p in state.d.module.parameters())


def test_bf16_step_keeps_weights_and_sn_vectors_fp32_and_follows_the_fp32_gradient(tiny_config):
    updates = {}
    for name, perf in (("fp32", ["perf.precision=fp32", "perf.channels_last=off", "perf.fused_adam=off"]),
                       ("bf16", ["perf.precision=bf16", "perf.channels_last=on", "perf.fused_adam=off"])):
        cfg = cuda_config(tiny_config, "model.g_ch=16", "model.d_ch=16", "train.batch_size=16", *perf)
        state = build_state(cfg, CUDA, log=lambda s: None)
        state.opt_d = torch.optim.SGD(state.d.module.parameters(), lr=1.0)  # update = -gradient
        d_loss_fn, _ = LOSSES[cfg.loss.type]
        before = flat(state.d.module)
        loss = d_step(state, d_loss_fn)
        updates[name] = flat(state.d.module) - before
        assert loss.dtype == torch.float32
        vectors = [b for n, b in state.d.module.named_buffers() if n.rsplit(".", 1)[-1] in ("_u", "_v", "u", "v")]
        assert vectors and all(v.dtype == torch.float32 for v in vectors)
    cosine = torch.nn.functional.cosine_similarity(updates["fp32"], updates["bf16"], dim=0)
    assert cosine > 0.99, cosine


def test_resident_uint8_dataset_lives_on_the_gpu_and_batches_are_dataset_images(tiny_config):
    state = build_state(cuda_config(tiny_config, "data.dequantize=false"), CUDA, log=lambda s: None)
    assert isinstance(state.batches, Batches)
    x, y = state.batches.next(8)
    assert x.is_cuda and y.is_cuda and x.dtype == torch.float32 and x.shape == (8, 3, 32, 32)
    assert state.batches.images.is_cuda and state.batches.images.dtype == torch.uint8
    pixels = ((x + 1) * 127.5).round().to(torch.uint8)  # dequantize off: x = p / 127.5 - 1 exactly
    dataset = state.batches.images.flatten(1)  # (N, 3 * H * W)
    assert all((dataset == p.flatten()).all(1).any() for p in pixels)


def test_streamed_batches_with_pinned_prefetch_equal_the_resident_ones(tiny_config):
    resident = build_state(cuda_config(tiny_config, "data.dequantize=false"), CUDA, log=lambda s: None).batches
    streamed = build_state(cuda_config(tiny_config, "data.dequantize=false", "data.device_budget_mb=0"), CUDA,
                           log=lambda s: None).batches
    assert isinstance(streamed, StreamBatches)
    try:
        for _ in range(3):
            (xr, yr), (xs, ys) = resident.next(8), streamed.next(8)
            assert xs.is_cuda and torch.equal(xr, xs) and torch.equal(yr, ys)
    finally:
        streamed.close()


def test_tf32_is_off_during_evaluation_and_restored_afterwards():
    set_matmul_precision(Perf(precision="bf16"), torch.device("cuda"))
    assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    with scoring_precision():
        assert torch.backends.cuda.matmul.fp32_precision == "ieee"
        assert torch.backends.cudnn.conv.fp32_precision == "ieee"
    assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    set_matmul_precision(Perf(precision="fp32"), torch.device("cuda"))


def test_cuda_rng_state_is_checkpointed_and_restored_on_resume(tiny_config, tmp_path):
    # Weights after a resume are not compared bitwise on CUDA: cuDNN's backward kernels are not deterministic, and
    # Adam turns those last-bit differences into O(lr) steps on near-zero gradients (seen on an H100: 5e-5 on
    # biases of size 1e-4). What resume must restore exactly is the random state, checked here.
    cfg = cuda_config(tiny_config, "train.iterations=4", "train.ckpt_every=0", "train.sample_every=0")
    half = train_until(cfg, tmp_path / "split", 2, **QUIET)
    saved = load_checkpoint(half)
    assert saved["rng"]["cuda"].dtype == torch.uint8
    state = build_state(cfg, CUDA, log=lambda s: None)
    torch.cuda.manual_seed(12345)  # move the CUDA stream away from the saved one
    state.restore(saved, log=lambda s: None)
    assert torch.equal(torch.cuda.get_rng_state(CUDA), saved["rng"]["cuda"])
    assert state.step == 2 and torch.equal(state.batches.state_dict()["order"].cpu(), saved["rng"]["data"]["order"])
    resumed = load_checkpoint(train(cfg, tmp_path / "split", resume=half, **QUIET))
    assert resumed["step"] == 4


def test_one_fp32_iteration_on_cuda_moves_both_networks(tiny_config):
    cfg = cuda_config(tiny_config)
    state = build_state(cfg, CUDA, log=lambda s: None)
    d_loss_fn, g_loss_fn = LOSSES[cfg.loss.type]
    g0, d0 = flat(state.g.module), flat(state.d.module)
    assert torch.isfinite(g_step(state, g_loss_fn)) and torch.isfinite(d_step(state, d_loss_fn))
    assert not torch.equal(g0, flat(state.g.module)) and not torch.equal(d0, flat(state.d.module))


def test_a_cuda_record_carries_the_peak_allocated_since_the_previous_record():
    """issue 30 section 6: cuda_mem_gb is torch.cuda.max_memory_allocated in GiB, reset after each record."""
    from sngan.train.steps import LossWindow

    device = torch.device("cuda")
    window = LossWindow(device, 0)
    big = torch.ones(256 * 2 ** 20, dtype=torch.uint8, device=device)  # 0.25 GiB
    window.add(torch.tensor(1.0, device=device), torch.tensor(2.0, device=device))
    del big  # freed before the record: only the peak remembers it
    first = window.record(1, 2e-4)
    window.add(torch.tensor(1.0, device=device), torch.tensor(2.0, device=device))
    second = window.record(2, 2e-4)
    # the peak restarts at each record, from what is allocated then (a reset does not go below the live tensors)
    assert first["cuda_mem_gb"] >= 0.25 and second["cuda_mem_gb"] < first["cuda_mem_gb"] - 0.2
