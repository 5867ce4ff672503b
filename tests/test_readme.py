import subprocess
import sys

from tests.helpers import REPO


def test_readme_config_reference_matches_the_schema():
    ref = subprocess.run([sys.executable, str(REPO / "scripts" / "config_reference.py")], capture_output=True,
                         text=True, check=True).stdout
    readme = (REPO / "README.md").read_text()
    start = readme.index("<!-- config-reference:start -->\n") + len("<!-- config-reference:start -->\n")
    assert readme[start:readme.index("<!-- config-reference:end -->")] == ref


def _ci_commands() -> list[str]:
    """The commands .ci/run executes, in order (comments, `set` and `cd` left out; pip's quiet flags dropped)."""
    lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    commands = [line for line in lines if line and not line.startswith(("#", "set ", "cd "))]
    return [" ".join(w for w in c.split() if w != "--quiet") for c in commands]


def _readme_code(prefix: str) -> str:
    """The `code` of the README's Development bullet starting with `prefix` (e.g. '- Tests:')."""
    line = next(line for line in (REPO / "README.md").read_text().splitlines() if line.startswith(prefix))
    return line.split("`")[1]


def test_ci_runs_exactly_the_readme_test_and_lint_commands():
    ci = _ci_commands()
    assert ci[-1] == _readme_code("- Tests:") == ".venv/bin/python -m pytest"  # the last thing CI runs
    assert _readme_code("- Lint:") in ci


def test_readme_install_and_test_line_is_what_ci_runs():
    readme = (REPO / "README.md").read_text()
    start = readme.index("```bash\n", readme.index("Install and run the tests")) + len("```bash\n")
    block = readme[start:readme.index("\n```", start)]
    steps = [step.strip() for step in block.split("&&")]
    ci = [c for c in _ci_commands() if not c.startswith(("rm ", ".venv/bin/pip install --upgrade pip"))]
    assert [c for c in ci if "ruff" not in c] == steps
