#!/usr/bin/env bash
# One GPU session's checks for benchmarks/RESULTS.md: the training-speed table of cifar10_resnet.yaml at full
# width (every variant, eager fp32 first), the spectral-norm cost, and eager-vs-fast loss curves of a short run.
# Run from the repository root on a CUDA machine; writes everything to ${OUT:-gpu-results}/.
#   bash scripts/gpu_check.sh
set -uo pipefail
out=${OUT:-gpu-results}
mkdir -p "$out"
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$out/gpu.txt"
python3 -m pytest -q tests/test_perf.py tests/test_models.py tests/test_spectral_norm.py -x 2>&1 | tail -3 \
    | tee "$out/tests.txt"
# the slow compiled-vs-eager, compiled<->eager resume and torchrun+compile tests (CPU, inductor C++: 16 cores there)
python3 -m pytest -q -m slow tests/test_perf.py tests/test_distributed.py -k compiled -x 2>&1 | tail -5 \
    | tee "$out/tests_compiled.txt"
python3 scripts/bench_train.py --config configs/cifar10_resnet.yaml --iters 50 --warmup 20 --sn-cost \
    2>&1 | tee "$out/bench_train.txt"
python3 scripts/compare_fast_eager.py --config configs/cifar10_resnet.yaml --iterations 1000 --out /tmp/cmp \
    2>&1 | tail -30 | tee "$out/fast_vs_eager.txt"
