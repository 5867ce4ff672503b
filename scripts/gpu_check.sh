#!/usr/bin/env bash
# One GPU session's checks for benchmarks/RESULTS.md, in stages chosen by STAGES (default: bench fidelity smoke
# eval, about 7 minutes on an H100; costs and compiled run when named):
#   smoke     CUDA tests (tests/test_cuda.py + the fast-path tests), a 200-iteration full-width cifar10_resnet run on
#             packed CIFAR-10 resident on the GPU, SIGTERM + --resume auto, sngan sample to npz, 1-process torchrun
#             (nccl) of the demo;
#   bench     scripts/bench_train.py rows (BENCH_VARIANTS) on a quiet GPU (first), then a profiler table of the default;
#   fidelity  cifar10_resnet at full width, 1,500 iterations, eager fp32 and the default fast path, same seed (and
#             a second fp32 seed FIDELITY_SEEDS), each scored by the ResNet-20 probe (scripts/fidelity.py); the runs
#             go side by side on the GPU while the smoke stage runs, so their wall time is not a speed number;
#   eval      Inception images/s at batch 500 and IS + FID of 50,000 samples end to end (scripts/bench_eval.py);
#   costs     each method's step time for the paper's comparison plan (scripts/bench_study.py) and the cost of one
#             train.inspect_every check (scripts/bench_inspect.py, CIFAR-10 ResNet and unconditional ImageNet 128);
#   compiled  a 30-iteration demo run with perf.compile=reduce-overhead (CUDA graphs) on CUDA, then --resume auto
#             in eager mode to iteration 40.
# BENCH_TIMEOUT bounds the bench stage's benchmark (seconds, default 330) so later stages still run.
# Needs, beside the repository: .devdata/cifar5k/{train,test} (class-folder trees: 500 + 200 images per class) and
# .devdata/resnet20-12fca82f.th (see ../shared/data), and pytorch-fid as a wheel in .whl/ if not installed.
# Run from the repository root on a CUDA machine; writes everything to ${OUT:-gpu-results}/.
#   STAGES="bench fidelity smoke eval" bash scripts/gpu_check.sh
set -uo pipefail
out=${OUT:-gpu-results}
mkdir -p "$out"
data=${DEVDATA:-.devdata}
work=$(mktemp -d)  # scratch runs of this check
stages=" ${STAGES:-bench fidelity smoke eval} "
iters=${FIDELITY_ITERATIONS:-1500}
variants=${BENCH_VARIANTS:-eager-fp32,tf32,bf16,bf16+cl,default,default+reduce-overhead,default+compile}
bench_iters=${BENCH_ITERS:-30}
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$work/site" .whl/*.whl
    export PYTHONPATH=$work/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
say() { echo "== $(date +%T) $*" | tee -a "$out/summary.txt"; }
has() { [[ $stages == *" $1 "* ]]; }

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; date -u +%F; } \
    | tee "$out/gpu.txt"

if has bench; then
    say "bench: $variants"
    timeout "${BENCH_TIMEOUT:-330}" python3 scripts/bench_train.py --config configs/cifar10_resnet.yaml \
        --iters "$bench_iters" --warmup 10 --variants "$variants" ${BENCH_SN_COST---sn-cost} 2>&1 | tee "$out/bench_train.txt" | grep -v Warning
    if [[ -z ${NO_PROFILE:-} ]]; then
        say "bench: profile of the default"
        python3 scripts/profile_step.py --config configs/cifar10_resnet.yaml --iters 5 --rows 15 > "$out/profile.txt" 2>&1
        tail -3 "$out/profile.txt"
    fi
fi

fidelity_pids=()
if has fidelity; then
    probe=(--train "$data/cifar5k/train" --test "$data/cifar5k/test" --weights "$data/resnet20-12fca82f.th"
           --iterations "$iters")
    say "fidelity: $iters iterations each, eager s0 / fast s0 ${FIDELITY_SEEDS:+/ eager s$FIDELITY_SEEDS} (background)"
    for run in "eager 0" "fast 0" ${FIDELITY_SEEDS:+"eager $FIDELITY_SEEDS"}; do
        set -- $run
        python3 scripts/fidelity.py "${probe[@]}" --variant "$1" --seed "$2" --out "$work/fid-$1-s$2" \
            > "$out/fidelity-$1-s$2.json" 2> "$work/fid-$1-s$2.err" &
        fidelity_pids+=($!)
    done
fi

if has smoke; then
    say "smoke: CUDA tests"
    python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_perf.py \
        tests/test_spectral_norm.py 2>&1 | tail -15 | tee "$out/tests.txt"
    train=(python3 -m sngan train --config configs/cifar10_resnet.yaml --set data.name=folder
           --set "data.root=$data/cifar5k/train" --set train.log_every=50 --set train.sample_every=100 --no-progress)
    say "smoke: 200 iterations of cifar10_resnet at full width on packed CIFAR-10 (resident)"
    start=$SECONDS
    "${train[@]}" --set train.iterations=200 --set train.ckpt_every=100 --out $work/smoke 2>&1 | tail -3 \
        | tee -a "$out/summary.txt"
    echo "$((SECONDS - start)) s wall for the 200-iteration run (start-up and packing included)" | tee -a "$out/summary.txt"
    tail -1 $work/smoke/metrics.jsonl | tee -a "$out/summary.txt"
    say "smoke: SIGTERM a run, then --resume auto"
    "${train[@]}" --set train.iterations=100000 --set train.ckpt_every=100000 --out $work/sig > $work/sig.log 2>&1 &
    pid=$!
    for _ in $(seq 120); do grep -q '"step": 100' $work/sig/metrics.jsonl 2>/dev/null && break; sleep 1; done
    kill -TERM $pid; wait $pid; echo "exit code after SIGTERM: $? (expected 143)" | tee -a "$out/summary.txt"
    tail -2 $work/sig.log | tee -a "$out/summary.txt"
    python3 -m sngan train --out $work/sig --resume auto --set train.iterations=300 --no-progress 2>&1 | tail -2 \
        | tee -a "$out/summary.txt"
    say "smoke: sngan sample to npz"
    python3 -m sngan sample --ckpt $work/smoke/checkpoints/ckpt-0000200.pt --out $work/samples.npz --num 1000 \
        --no-progress 2>&1 | tail -1 | tee -a "$out/summary.txt"
    python3 -c "import numpy as np; x = np.load('$work/samples.npz')['x']; print('npz', x.shape, x.dtype)" \
        | tee -a "$out/summary.txt"
    say "smoke: 1-process torchrun (nccl) of the demo"
    python3 -m torch.distributed.run --standalone --nproc_per_node=1 -m sngan train --config configs/demo.yaml \
        --set train.iterations=100 --set train.device=cuda --out $work/ddp --no-progress 2>&1 | grep -E \
        "device|done|error|Error" | tail -3 | tee -a "$out/summary.txt"
fi

if ((${#fidelity_pids[@]})); then
    say "fidelity: waiting"
    wait "${fidelity_pids[@]}"
    tail -3 $work/fid-*.err > "$out/fidelity-stderr.txt" 2>/dev/null
    python3 - "$out" <<'EOF' | tee "$out/fidelity.md"
import json, pathlib, sys
runs = [json.loads(p.read_text()) for p in sorted(pathlib.Path(sys.argv[1]).glob("fidelity-*.json")) if p.stat().st_size]
print("| run | seconds (side by side) | ResNet-20 FD |")
print("|---|---|---|")
for r in runs:
    print(f"| {r['variant']} seed {r['seed']} | {r['seconds']} | {r['frechet_resnet20']:.3f} |")
print("\n| step | " + " | ".join(f"{r['variant']} s{r['seed']} d / g" for r in runs) + " |")
print("|---|" + "---|" * len(runs))
for rows in zip(*(r["curve"] for r in runs)):
    print(f"| {rows[0][0]} | " + " | ".join(f"{d:.3f} / {g:.3f}" for _, d, g in rows) + " |")
EOF
fi

if has eval; then
    say "eval: Inception speed and IS + FID of 50k"
    python3 scripts/bench_eval.py --num 50000 --batch 500 2>&1 | tee "$out/eval.txt"
fi
if has costs; then
    say "costs: step times of the figure-1 comparison plan's methods (full-size CNN)"
    timeout 150 python3 scripts/bench_study.py --plan configs/study/figure1_cifar10.yaml 2>&1 | grep -v Warning \
        | tee "$out/bench_study.txt"
    say "costs: one train.inspect_every check"
    for config in cifar10_resnet imagenet128_unconditional; do
        timeout 90 python3 scripts/bench_inspect.py --config configs/$config.yaml --iters 5 --warmup 2 2>&1 \
            | grep -v Warning | tee -a "$out/bench_inspect.txt"
    done
fi

if has compiled; then
    say "compiled: demo with perf.compile=reduce-overhead on CUDA, 30 iterations, then eager --resume auto to 40"
    start=$SECONDS
    timeout 150 python3 -m sngan train --config configs/demo.yaml --set train.device=cuda \
        --set perf.compile=reduce-overhead --set train.iterations=30 --set train.ckpt_every=30 \
        --set train.sample_every=30 --set train.log_every=10 --out $work/compiled --no-progress 2>&1 \
        | grep -v Warning | tail -6 | tee -a "$out/summary.txt"
    echo "$((SECONDS - start)) s wall (compiling included)" | tee -a "$out/summary.txt"
    timeout 60 python3 -m sngan train --out $work/compiled --resume auto --set perf.compile=off \
        --set train.iterations=40 --no-progress 2>&1 | grep -v Warning | tail -3 | tee -a "$out/summary.txt"
    tail -1 $work/compiled/metrics.jsonl | tee -a "$out/summary.txt"
fi
say "done"
