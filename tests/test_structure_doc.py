"""The README's folder map names exactly the package's modules and subpackages."""

import re

from tests.helpers import REPO


def test_readme_folder_map_matches_the_package_tree():
    text = (REPO / "README.md").read_text()
    block = text.split("## Structure", 1)[1].split("```", 2)[1]
    named = set()
    for line in block.strip().splitlines():
        paths = line.split("  ")[0].strip()
        for part in paths.split(","):
            part = part.strip()
            named.add(part if part.startswith("sngan/") else f"sngan/{part}")
    package = REPO / "sngan"
    actual = {f"sngan/{p.name}/" for p in package.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    actual |= {f"sngan/{p.name}" for p in package.glob("*.py") if not re.match(r"__\w+__\.py", p.name)}
    assert named == actual
