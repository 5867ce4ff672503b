"""docs/structure.md's folder map names exactly the package's top-level modules and subpackages, and its module table
names every module of the package, each with its docstring's first sentence."""

import ast
import re

from tests.helpers import REPO

PAGE = REPO / "docs" / "structure.md"


def test_folder_map_matches_the_package_tree():
    text = PAGE.read_text()
    block = text.split("```", 2)[1]
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


def test_module_table_names_every_module_with_its_docstring_sentence():
    rows = re.findall(r"^\| `(sngan/[\w/]+\.py)` \| (.*) \|$", PAGE.read_text(), re.M)
    modules = {str(p.relative_to(REPO)) for p in (REPO / "sngan").rglob("*.py")
               if not re.match(r"__\w+__\.py", p.name)}
    assert {path for path, _ in rows} == modules
    for path, sentence in rows:
        doc = ast.get_docstring(ast.parse((REPO / path).read_text())) or ""
        assert sentence.replace("\\|", "|") == first_sentence(doc), path


ABBREVIATIONS = ("et al", "e.g", "i.e", "cf", "vs", "Sec", "Eq", "Fig", "App")  # a period after these ends nothing


def first_sentence(doc: str) -> str:
    """The docstring's first sentence on one line, without its period: up to the first period that is followed by
    the end or a space and does not close an abbreviation ("Miyato et al. 2018", "Sec. 3")."""
    text = " ".join(doc.split())
    for match in re.finditer(r"\.(?=$| )", text):
        if not text[:match.start()].endswith(ABBREVIATIONS):
            return text[:match.start()]
    return text


def test_first_sentence_runs_past_et_al_and_stops_at_the_sentence_end():
    doc = "Spectral normalization (Miyato et al. 2018, Sec. 3): W / sigma(W).\n\nmore, e.g. this."
    assert first_sentence(doc) == "Spectral normalization (Miyato et al. 2018, Sec. 3): W / sigma(W)"
    assert first_sentence("One line without a period") == "One line without a period"
    assert first_sentence("Version 0.1.0 is here. Next") == "Version 0.1.0 is here"
