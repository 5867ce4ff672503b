import subprocess
import sys

from tests.helpers import REPO


def test_config_reference_page_matches_the_schema():
    ref = subprocess.run([sys.executable, str(REPO / "scripts" / "config_reference.py")], capture_output=True,
                         text=True, check=True).stdout
    page = (REPO / "docs" / "config.md").read_text()
    start = page.index("<!-- config-reference:start -->\n") + len("<!-- config-reference:start -->\n")
    assert page[start:page.index("<!-- config-reference:end -->")] == ref


def _ci_commands() -> list[str]:
    """The commands .ci/run executes, in order (comments, `set` and `cd` left out; pip's quiet flags dropped)."""
    lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    commands = [line for line in lines if line and not line.startswith(("#", "set ", "cd "))]
    return [" ".join(w for w in c.split() if w != "--quiet") for c in commands]


def _readme_code(prefix: str) -> str:
    """The `code` of the README's Development bullet starting with `prefix` (e.g. '- Tests:')."""
    line = next(line for line in (REPO / "README.md").read_text().splitlines() if line.startswith(prefix))
    return line.split("`")[1]


def test_the_readme_test_command_is_the_test_command_ci_runs():
    assert _ci_commands()[-1] == _readme_code("- Tests:")
