"""Run directories: `runs/<config-name>-<NNN>` holding config.yaml, checkpoints/, samples/ and metrics.jsonl."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from sngan.checkpoint import list_checkpoints
from sngan.config import SnganError

DEFAULT_BASE = Path("runs")


def numbered_runs(base: Path, name: str) -> list[tuple[int, Path]]:
    pattern = re.compile(rf"^{re.escape(name)}-(\d+)$")
    if not base.is_dir():
        return []
    return sorted((int(m.group(1)), p) for p in base.iterdir() if (m := pattern.match(p.name)) and p.is_dir())


def next_run_dir(name: str, base: Path = DEFAULT_BASE) -> Path:
    """The first unused `base/name-NNN` (not created)."""
    runs = numbered_runs(base, name)
    return base / f"{name}-{(runs[-1][0] + 1 if runs else 0):03d}"


def latest_run_dir(name: str, base: Path = DEFAULT_BASE) -> Path | None:
    runs = numbered_runs(base, name)
    return runs[-1][1] if runs else None


def check_fresh(run_dir: Path) -> None:
    """Refuse to start a new run on top of an existing one (its checkpoints would be overwritten)."""
    if list_checkpoints(run_dir / "checkpoints") or (run_dir / "checkpoints" / "best.pt").exists():
        raise SnganError(f"run directory '{run_dir}' already holds checkpoints: continue it with --resume auto "
                         f"or choose another --out")


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON object as a line (the run's metrics log)."""
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")
