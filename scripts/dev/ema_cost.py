"""Cost of one EMA update of the demo generator on CPU: torch's public `get_ema_multi_avg_fn` (what
sngan.train.ema uses), the private `torch._foreach_lerp_` it wraps (what sngan used before), and a per-tensor
`lerp_` loop. Prints the median over repeats of the mean over 200 updates, side by side (interleaved, so machine
noise hits all three alike). Results: benchmarks/ema.md.

    python scripts/dev/ema_cost.py [--repeats 11] [--threads 1]
"""

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch.optim.swa_utils import get_ema_multi_avg_fn

from sngan.config import load_config
from sngan.models import build_generator, count_parameters

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(DEMO)
    live, ema = build_generator(cfg.model), build_generator(cfg.model)
    ema_params, live_params = list(ema.parameters()), list(live.parameters())
    decay = 0.999

    def public_multi_tensor() -> None:
        get_ema_multi_avg_fn(decay)(ema_params, live_params, None)

    def private_foreach() -> None:
        torch._foreach_lerp_(ema_params, live_params, 1.0 - decay)

    def per_tensor_lerp() -> None:
        for e, p in zip(ema_params, live_params, strict=True):
            e.lerp_(p, 1.0 - decay)

    ways = (public_multi_tensor, private_foreach, per_tensor_lerp)
    times: dict[str, list[float]] = {f.__name__: [] for f in ways}
    with torch.no_grad():
        for way in ways:
            for _ in range(50):  # warm-up
                way()
        for _ in range(args.repeats):
            for way in ways:
                start = time.perf_counter()
                for _ in range(200):
                    way()
                times[way.__name__].append((time.perf_counter() - start) / 200 * 1e6)
    print(f"demo generator: {count_parameters(live)} parameters in {len(live_params)} tensors, "
          f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats}")
    for name, values in times.items():
        print(f"{name:22s} {statistics.median(values):7.1f} us per update")


if __name__ == "__main__":
    main()
