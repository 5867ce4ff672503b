"""What the README and the config reference promise: the schema's every key documented, the test command CI runs, the
paper configs' parameter counts."""

import re
import subprocess
import sys

from sngan.config import load_config
from sngan.models import build_discriminator, build_generator, count_parameters
from tests.helpers import CONFIGS, REPO


def test_config_reference_page_matches_the_schema():
    ref = subprocess.run([sys.executable, str(REPO / "scripts" / "config_reference.py")], capture_output=True,
                         text=True, check=True).stdout
    page = (REPO / "docs" / "config.md").read_text()
    start = page.index("<!-- config-reference:start -->\n") + len("<!-- config-reference:start -->\n")
    assert page[start:page.index("<!-- config-reference:end -->")] == ref


def _ci_commands() -> list[str]:
    """The commands .ci/run executes, in order (comments, `set` and `cd` left out; pip's quiet flags dropped)."""
    lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    commands = [line.split(" #")[0] for line in lines if line and not line.startswith(("#", "set ", "cd "))]
    return [" ".join(w for w in c.split() if w != "--quiet") for c in commands]


def _readme_code(prefix: str) -> str:
    """The `code` of the README's Development bullet starting with `prefix` (e.g. '- Tests:')."""
    line = next(line for line in (REPO / "README.md").read_text().splitlines() if line.startswith(prefix))
    return line.split("`")[1]


def test_the_readme_test_command_is_the_test_command_ci_runs_at_two_thread_counts():
    """CI ends with the README's test command, run at 1 and at 2 OpenMP threads (a sum whose order changes with the
    thread count must not change a test's verdict); before it: the install, ruff, mypy and the slow set."""
    commands = _ci_commands()
    runs = [c.partition(" ") for c in commands[-2:]]
    assert [(env, rest) for env, _, rest in runs] == [("OMP_NUM_THREADS=1", _readme_code("- Tests:")),
                                                     ("OMP_NUM_THREADS=2", _readme_code("- Tests:"))]
    assert ".venv/bin/pip install -e .[test]" in [c.replace('"', "") for c in commands]
    assert {".venv/bin/ruff check .", ".venv/bin/mypy", ".venv/bin/python -m pytest -m slow -n 0"} <= set(commands)


def test_the_paper_configs_table_gives_the_parameter_counts_the_models_test_asserts():
    """The README's G / D column says what tests/test_models.py builds from each config (the demo: from its size)."""
    from tests.test_models import EXPECTED

    rows = re.findall(r"^\| `(\w+)\.yaml` \|[^|]+\| ([\d,]+) / ([\d,]+) \|", (REPO / "README.md").read_text(), re.M)
    table = {name: (int(g.replace(",", "")), int(d.replace(",", ""))) for name, g, d in rows}
    assert set(table) == set(EXPECTED) | {"demo"}, "a paper config is missing from the README's table, or extra"
    assert {name: table[name] for name in EXPECTED} == EXPECTED
    model = load_config(CONFIGS / "demo.yaml").model
    assert table["demo"] == (count_parameters(build_generator(model)), count_parameters(build_discriminator(model)))
