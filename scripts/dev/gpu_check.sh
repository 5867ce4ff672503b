#!/usr/bin/env bash
# One GPU call's checks for benchmarks/RESULTS.md, in stages chosen by STAGES (default: compiled bench, about
# 6 minutes on an H100 with the machine already started; every other stage runs when named):
#   compiled  issue 21's six checks of perf.compile=reduce-overhead (CUDA graphs) on the demo config, before `auto`
#             may mean it: a 1-process torchrun (nccl) job with train.eval_every (IS/FID, random-weight Inception),
#             train.inspect_every, the EMA generator and sample grids; a single-process run stopped by SIGTERM and
#             continued with --resume auto (still compiled); `sngan study --jobs 2` (two compiled runs at once);
#   bench     the table of issue 35: scripts/bench_peer.py, one process, alternating: the peer (pytorch-gan-
#             collections, fp32 eager) against ours (BENCH_VARIANTS, default eager-fp32,default,default+d-single-
#             pass; `default` is what perf.compile auto picks on CUDA for 50,000 iterations: CUDA graphs): G-it/s, ms per D and G step, peak memory, % of matmul peak; then a profiler table of the
#             compiled default (NO_PROFILE=1 skips it);
#   length    cifar10_resnet.yaml at full width, compiled (reduce-overhead), EMA 0.999 (ours, for the curve), on
#             CIFAR-10 train, for LENGTH_SECONDS (default 420; the run is stopped by SIGTERM and checkpoints there),
#             a checkpoint every LENGTH_EVERY (2500) G-iterations, then the ResNet-20 probe on every checkpoint, raw
#             and EMA (scripts/dev/probe_checkpoints.py) with a figure; about 8 minutes;
#   fidelity  1,500 iterations at full width, eager fp32 and compiled, seeds FIDELITY_SEEDS (default "0 1"), side by
#             side on the GPU (their wall time is not a speed number), each scored by the ResNet-20 probe;
#   eval      Inception images/s at batch 500 and IS + FID of 50,000 samples end to end (scripts/bench_eval.py);
#   costs     each method's step time for the paper's comparison plan (scripts/bench_study.py) and the cost of one
#             train.inspect_every check (scripts/bench_inspect.py);
#   smoke     CUDA tests, a 200-iteration full-width run on CIFAR-10, sngan sample to npz, SIGTERM and --resume auto
#             of an eager CUDA run, a 1-process torchrun (nccl) with eval_every, inspect_every, EMA and grids.
# Needs, beside the repository (carried as ignored paths): .devdata/peer (a checkout of w86763777/pytorch-gan-
# collections; bench), .devdata/resnet20-12fca82f.th and .devdata/cifar10-jpg.zip (both from ../shared/data;
# length, fidelity, smoke; 61.8 MiB together, the whole CIFAR-10 JPEG set). CIFAR_TRAIN / CIFAR_TEST name class-
# folder trees instead of the zip. Run from the repository root; writes everything to ${OUT:-gpu-results}/.
#   STAGES="compiled bench" bash scripts/dev/gpu_check.sh
# A CPU dry run of the length stage (checks the script, not a result):
#   STAGES=length LENGTH_SECONDS=150 LENGTH_EVERY=100 LENGTH_SET="train.device=cpu model.g_ch=16 model.d_ch=16 \
#     train.n_dis=1 train.batch_size=16 train.g_batch_size=16 perf.compile=off" bash scripts/dev/gpu_check.sh
set -uo pipefail
out=${OUT:-gpu-results}
mkdir -p "$out"
data=${DEVDATA:-.devdata}
work=$(mktemp -d)  # scratch runs of this check
stages=" ${STAGES:-compiled bench} "
wheels=$(ls "$(realpath "$data")"/whl/*.whl 2>/dev/null | tr '\n' ':')  # pure-Python wheels the device lacks (pytorch-fid)
export PYTHONPATH=$PWD:$wheels${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
say() { echo "== $(date +%T) $*" | tee -a "$out/summary.txt"; }
has() { [[ $stages == *" $1 "* ]]; }
cifar() {  # the CIFAR-10 train/test trees: CIFAR_TRAIN/CIFAR_TEST, else the carried zip unpacked once
    if [[ -z ${CIFAR_TRAIN:-} ]]; then
        [[ -d $work/cifar10-jpg ]] || python3 -m zipfile -e "$data/cifar10-jpg.zip" "$work"  # no unzip there
        CIFAR_TRAIN=$work/cifar10-jpg/train CIFAR_TEST=$work/cifar10-jpg/test
    fi
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; date -u +%F; } \
    | tee "$out/gpu.txt"

if has compiled; then
    compile=(--set train.device=cuda --set perf.compile=reduce-overhead --no-progress)
    python3 -c "import torch; from sngan.metrics.random_inception import random_inception_state as s; \
torch.save(s(), '$work/inception.pth')"
    say "compiled 1-3: 1-process torchrun (nccl), eval_every + inspect_every + EMA + sample grids, 200 iterations"
    start=$SECONDS
    timeout 240 python3 -m torch.distributed.run --standalone --nproc_per_node=1 -m sngan train \
        --config configs/demo.yaml "${compile[@]}" --set train.iterations=200 --set train.eval_every=100 \
        --set train.eval_protocol=quick --set train.eval_num_samples=1000 \
        --set "train.eval_inception_weights=$work/inception.pth" --set train.inspect_every=50 \
        --set train.ema_decay=0.999 --set train.sample_every=100 --set train.ckpt_every=100 --out $work/ddp \
        > $work/ddp.log 2>&1
    echo "exit $? after $((SECONDS - start)) s (compiling included)" | tee -a "$out/summary.txt"
    grep -E "training step|compiled|fid|best|done|rror" $work/ddp.log | grep -v Warning | tail -8 \
        | tee -a "$out/summary.txt"
    python3 - "$work/ddp" <<'EOF' | tee -a "$out/summary.txt"
import json, pathlib, sys
run = pathlib.Path(sys.argv[1])
rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
print("records with fid:", sum(any(k.startswith("fid") for k in r) for r in rows),
      "| with sn_ratio:", sum(any(k.startswith("sn_ratio") for k in r) for r in rows),
      "| grids:", sorted(p.name for p in (run / "samples").glob("*.png")),
      "| checkpoints:", sorted(p.name for p in (run / "checkpoints").glob("*.pt")))
EOF
    say "compiled 4-5: SIGTERM a compiled run, then --resume auto (compiled)"
    python3 -m sngan train --config configs/demo.yaml "${compile[@]}" --set train.iterations=100000 \
        --set train.ema_decay=0.999 --set train.ckpt_every=100000 --out $work/sig > $work/sig.log 2>&1 &
    pid=$!
    for _ in $(seq 150); do grep -q '"step": 150' $work/sig/metrics.jsonl 2>/dev/null && break; sleep 1; done
    kill -TERM $pid; wait $pid; echo "exit code after SIGTERM: $? (expected 143)" | tee -a "$out/summary.txt"
    tail -1 $work/sig.log | tee -a "$out/summary.txt"
    timeout 150 python3 -m sngan train --out $work/sig --resume auto --set perf.compile=reduce-overhead \
        --set train.iterations=300 --no-progress 2>&1 | grep -E "training step|resumed|done|rror" \
        | tee -a "$out/summary.txt"
    say "compiled 6: sngan study --jobs 2, two compiled runs at once"
    cat > $work/plan.yaml <<EOF
base: $PWD/configs/demo.yaml
out: $work/study
overrides: [train.device=cuda, perf.compile=reduce-overhead, train.iterations=100, train.log_every=25,
            train.sample_every=0, train.ckpt_every=50, train.inspect_every=50]
methods: {SN: [model.d_norm=spectral], WN: [model.d_norm=weight]}
seeds: [0]
evaluation: none
EOF
    start=$SECONDS
    timeout 240 python3 -m sngan study --plan $work/plan.yaml --jobs 2 --no-progress > $work/study.log 2>&1
    echo "study exit $? after $((SECONDS - start)) s" | tee -a "$out/summary.txt"
    tail -4 $work/study.log | tee -a "$out/summary.txt"
    cp $work/study/study.md "$out/study.md" 2>/dev/null
fi

if has bench; then
    variants=${BENCH_VARIANTS:-eager-fp32,default,default+d-single-pass}
    say "bench: peer vs $variants (one process, alternating)"
    timeout "${BENCH_TIMEOUT:-240}" python3 scripts/bench_peer.py --peer "${PEER:-$data/peer}" \
        --variants "$variants" --iters "${BENCH_ITERS:-20}" --rounds 5 --warmup 10 2>&1 | grep -v Warning \
        | tee "$out/bench_peer.txt"
    if [[ -z ${NO_PROFILE:-} ]]; then
        say "bench: profile of the compiled default"
        timeout 90 python3 scripts/dev/profile_step.py --config configs/cifar10_resnet.yaml --iters 5 --rows 15 \
            --set perf.compile=reduce-overhead > "$out/profile.txt" 2>&1
        tail -3 "$out/profile.txt"
    fi
fi

if has length; then
    cifar
    every=${LENGTH_EVERY:-2500}
    extra=(); for kv in ${LENGTH_SET:-}; do extra+=(--set "$kv"); done
    say "length: cifar10_resnet full width, compiled, ${LENGTH_SECONDS:-420} s of training, probe every $every"
    start=$SECONDS
    timeout -s TERM "${LENGTH_SECONDS:-420}" python3 -m sngan train --config configs/cifar10_resnet.yaml \
        --set data.name=folder --set "data.root=$CIFAR_TRAIN" --set perf.compile=reduce-overhead \
        --set train.ema_decay=0.999 --set train.ckpt_every=$every --set train.keep_checkpoints=1000 \
        --set train.sample_every=$every --set train.inspect_every=$every "${extra[@]}" --out $work/length \
        --no-progress > $work/length.log 2>&1
    echo "exit $? after $((SECONDS - start)) s (124 = stopped by the deadline, checkpoint written)" \
        | tee -a "$out/summary.txt"
    grep -E "training step|dataset|stopped|done|rror" $work/length.log | tail -5 | tee -a "$out/summary.txt"
    tail -1 $work/length/metrics.jsonl | tee -a "$out/summary.txt"
    cp $work/length/metrics.jsonl "$out/length-metrics.jsonl"
    cp "$(ls $work/length/samples/*.png | tail -1)" "$out/length-last-grid.png" 2>/dev/null
    say "length: ResNet-20 probe on every checkpoint (raw and EMA)"
    python3 scripts/dev/probe_checkpoints.py --run $work/length --test "$CIFAR_TEST" \
        --weights "$data/resnet20-12fca82f.th" --plot "$out/length_run.png" --json "$out/length-curve.json" \
        2>&1 | grep -v Warning | tee "$out/length-curve.md"
fi

if has fidelity; then
    cifar
    pids=()
    say "fidelity: ${FIDELITY_ITERATIONS:-1500} iterations each, eager / compiled x seeds ${FIDELITY_SEEDS:-0 1}"
    for variant in eager compiled; do
        for seed in ${FIDELITY_SEEDS:-0 1}; do
            python3 scripts/fidelity.py --train "$CIFAR_TRAIN" --test "$CIFAR_TEST" \
                --weights "$data/resnet20-12fca82f.th" --iterations "${FIDELITY_ITERATIONS:-1500}" \
                --variant $variant --seed $seed --out "$work/fid-$variant-s$seed" \
                > "$out/fidelity-$variant-s$seed.json" 2> "$work/fid-$variant-s$seed.err" &
            pids+=($!)
        done
    done
    wait "${pids[@]}"
    tail -3 $work/fid-*.err > "$out/fidelity-stderr.txt" 2>/dev/null
    python3 - "$out" <<'EOF' | tee "$out/fidelity.md"
import json, pathlib, sys
files = sorted(pathlib.Path(sys.argv[1]).glob("fidelity-*.json"))
runs = [json.loads(p.read_text()) for p in files if p.stat().st_size]
print("| run | seconds (side by side) | ResNet-20 FD |")
print("|---|---|---|")
for r in runs:
    print(f"| {r['variant']} seed {r['seed']} | {r['seconds']} | {r['frechet_resnet20']:.3f} |")
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

if has smoke; then
    cifar
    say "smoke: CUDA tests"
    python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_perf.py tests/test_spectral_norm.py \
        > "$out/tests.txt" 2>&1
    tail -3 "$out/tests.txt"
    say "smoke: 200 iterations of cifar10_resnet at full width on packed CIFAR-10 (resident)"
    python3 -m sngan train --config configs/cifar10_resnet.yaml --set data.name=folder \
        --set "data.root=$CIFAR_TRAIN" --set train.iterations=200 --set train.ckpt_every=100 \
        --set train.log_every=50 --out $work/smoke --no-progress 2>&1 | tail -3 | tee -a "$out/summary.txt"
    python3 -m sngan sample --ckpt $work/smoke/checkpoints/ckpt-0000200.pt --out $work/samples.npz --num 1000 \
        --no-progress 2>&1 | tail -1 | tee -a "$out/summary.txt"
    say "smoke: SIGTERM an eager run on CUDA at step >= 150, then --resume auto to 300"
    python3 -m sngan train --config configs/demo.yaml --set train.device=cuda --set train.iterations=100000 \
        --set train.ema_decay=0.999 --set train.ckpt_every=100000 --set train.inspect_every=50 --no-progress \
        --out $work/sig > $work/sig.log 2>&1 &
    pid=$!
    for _ in $(seq 120); do grep -q '"step": 150' $work/sig/metrics.jsonl 2>/dev/null && break; sleep 1; done
    kill -TERM $pid; wait $pid; echo "exit code after SIGTERM: $? (expected 143)" | tee -a "$out/summary.txt"
    tail -1 $work/sig.log | tee -a "$out/summary.txt"
    timeout 120 python3 -m sngan train --out $work/sig --resume auto --set train.iterations=300 --no-progress 2>&1 \
        | grep -E "training step|resumed|done|rror" | tee -a "$out/summary.txt"
    say "smoke: 1-process torchrun (nccl), eager: eval_every (random-weight Inception) + inspect_every + EMA + grids"
    python3 -c "import torch; from sngan.metrics.random_inception import random_inception_state as s; \
torch.save(s(), '$work/inception.pth')"
    timeout 150 python3 -m torch.distributed.run --standalone --nproc_per_node=1 -m sngan train \
        --config configs/demo.yaml --set train.device=cuda --no-progress --set train.iterations=200 \
        --set train.eval_every=100 --set train.eval_protocol=quick --set train.eval_num_samples=1000 \
        --set "train.eval_inception_weights=$work/inception.pth" --set train.inspect_every=50 \
        --set train.ema_decay=0.999 --set train.sample_every=100 --set train.ckpt_every=100 --out $work/ddp \
        > $work/ddp.log 2>&1
    echo "torchrun exit $?" | tee -a "$out/summary.txt"
    grep -E "training step|fid|best|done|rror" $work/ddp.log | grep -v Warning | tail -6 | tee -a "$out/summary.txt"
    python3 -c "import json, pathlib; rows = [json.loads(l) for l in pathlib.Path('$work/ddp/metrics.jsonl').read_text().splitlines()]; \
print('records with fid:', sum(any(k.startswith('fid') for k in r) for r in rows), '| with sn_ratio:', \
sum(any(k.startswith('sn_ratio') for k in r) for r in rows))" | tee -a "$out/summary.txt"
fi
say "done"
