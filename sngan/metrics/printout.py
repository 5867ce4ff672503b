"""The printed result of `sngan eval`: one block from the protocol record (IS, FID, any extra metrics, how)."""

from __future__ import annotations

from typing import Any

from sngan.metrics.kid import SUBSETS, kid_subset_size


def extra_lines(metrics: dict[str, float], num_generated: int, num_real: int | None) -> list[str]:
    """The lines for the extra metrics present in `metrics` (none when there are none)."""
    lines = []
    for name, value in metrics.items():
        if name.startswith("kid") and not name.endswith("_std"):
            size = kid_subset_size(num_generated, num_real or num_generated)
            lines.append(f"KID  {value:.5f} ± {metrics[name + '_std']:.5f}   ({name}: unbiased MMD², cubic kernel, "
                         f"{SUBSETS} subsets of {size})")
        elif name.startswith("prdc"):
            lines.append(f"{name.rsplit('_', 1)[1]:<9} {value:.4f}   ({name}: Naeem et al. 2020)")
        elif name.startswith("intra_fid"):
            lines.append(f"intra-FID {value:.3f}   ({name}: mean of per-class FIDs)")
    return lines


def format_block(record: dict[str, Any]) -> str:
    """The printed result: IS mean ± std, FID, extra metrics and the protocol, in one block."""
    metrics = record["metrics"]
    is_name = next(k for k in metrics if k.startswith("is") and not k.endswith("_std"))
    fid_name = next(k for k in metrics if k.startswith("fid"))
    real = f"{record['num_real']} {record['real_dataset']} {record['split']}" if record["num_real"] else \
        f"statistics {record['stats']}"
    generated = "images" if "images" in record else "generated"
    return "\n".join([
        f"IS   {metrics[is_name]:.3f} ± {metrics[is_name + '_std']:.3f}   ({is_name}: {record['num_generated']} "
        f"{generated}, {record['is_splits']} in-order splits, std ddof=0)",
        f"FID  {metrics[fid_name]:.3f}   ({fid_name}: {record['fid_generated']} {generated} vs {real} images)",
        *extra_lines(metrics, record["fid_generated"], record["num_real"]),
        f"protocol: {record['protocol']} - {record['protocol_description']}",
        f"network {record['network']} (sha256 {record['weights_sha256'][:8]}) | input {record['inception_input']}: "
        f"{record['resize']} | {record['precision']} | "
        + (f"images {record['images']} ({record['images_kind']})" if "images" in record
           else f"seed {record['seed']} | step {record['step']} | {record['generator']} generator"),
    ])
