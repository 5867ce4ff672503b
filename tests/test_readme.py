import subprocess
import sys

from tests.helpers import REPO


def test_readme_config_reference_matches_the_schema():
    ref = subprocess.run([sys.executable, str(REPO / "scripts" / "config_reference.py")], capture_output=True,
                         text=True, check=True).stdout
    readme = (REPO / "README.md").read_text()
    start = readme.index("<!-- config-reference:start -->\n") + len("<!-- config-reference:start -->\n")
    assert readme[start:readme.index("<!-- config-reference:end -->")] == ref


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    assert ".venv/bin/python -m pytest" in readme
    assert ".venv/bin/python -m pytest" in (REPO / ".ci" / "run").read_text()
