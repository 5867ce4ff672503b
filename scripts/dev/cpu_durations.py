"""A pytest plugin: the CPU seconds each test costs (this process and the children it waited for), which a busy
machine inflates far less than wall time. For trimming the default suite on a shared machine.

    .venv/bin/python -m pytest -q -p no:cacheprovider -p scripts.dev.cpu_durations

Prints, at the end, the 40 costliest tests and the CPU seconds per test file (set CPU_DURATIONS_TOP to show more).
"""

from __future__ import annotations

import os
import resource
from collections import defaultdict

import pytest

_costs: dict[str, float] = {}


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):  # noqa: ANN001, ARG001 - pytest's hook signature
    start = _cpu_seconds()
    yield
    _costs[item.nodeid] = _cpu_seconds() - start


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001 - pytest's reporter
    top = int(os.environ.get("CPU_DURATIONS_TOP", "40"))
    write = terminalreporter.write_line
    write(f"CPU seconds of {len(_costs)} tests: {sum(_costs.values()):.1f} in all")
    for nodeid, cost in sorted(_costs.items(), key=lambda kv: -kv[1])[:top]:
        write(f"{cost:7.2f} {nodeid}")
    per_file: dict[str, float] = defaultdict(float)
    for nodeid, cost in _costs.items():
        per_file[nodeid.split("::")[0]] += cost
    write("per file:")
    for name, cost in sorted(per_file.items(), key=lambda kv: -kv[1])[:top]:
        write(f"{cost:7.1f} {name}")
