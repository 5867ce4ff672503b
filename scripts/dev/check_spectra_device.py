"""The float32 matrix-product path of `sngan.inspect.spectra.largest_singular_value` (on circular conv spectra,
`conv_norm.circular_norm`) against float64 SVDs on this machine's device.

Usage: python scripts/dev/check_spectra_device.py   (prints the largest relative difference and both timings)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from sngan.inspect import conv_norm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/, for timing.py
from timing import sync  # noqa: E402


def main() -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    worst, fast_s, exact_s = 0.0, 0.0, 0.0
    for c_in, c_out, size in [(3, 128, 32), (128, 128, 32), (128, 128, 16), (128, 128, 8), (1024, 1024, 8)]:
        kernel = torch.randn(c_out, c_in, 3, 3, device=device) / (3 * c_in) ** 0.5
        for exact in (True, False):
            sync(device)
            start = time.perf_counter()
            value = conv_norm.circular_norm(kernel, (size, size), exact=exact)
            sync(device)
            seconds = time.perf_counter() - start
            if exact:
                reference, exact_s = value, exact_s + seconds
            else:
                fast_s += seconds
                worst = max(worst, abs(value / reference - 1))
    print(f"{device}: float32 matrix products vs float64 SVD, largest relative difference {worst:.2e}; "
          f"seconds {fast_s:.2f} vs {exact_s:.2f}")


if __name__ == "__main__":
    main()
