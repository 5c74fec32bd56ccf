"""The README stays short and its docs/ pages stay whole: docs/errors.md is what
bench/errors_page.py generates from the tests' bad-input catalogue, every docs/ link of the README
exists, and every generated results block of docs/results.md keeps its begin and end markers."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "docs" / "results.md"

# the generated blocks moved out of the README (per-seed stays there)
MOVED_BLOCKS = [
    "recipe-check",
    "sweep-value",
    "sweep-seed004",
    "tracking-overhead",
    "sweep",
    "bench",
    "readme-table",
    "pruning",
    "fidelity-seed000",
    "fidelity-baseline",
]


def _errors_page():
    spec = importlib.util.spec_from_file_location("errors_page", ROOT / "bench" / "errors_page.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_errors_page_is_the_generators_output():
    page = _errors_page()
    assert (ROOT / "docs" / "errors.md").read_text() == page.render()
    assert page.main(["--check"]) == 0


def test_errors_check_fails_when_the_page_differs(tmp_path):
    page = _errors_page()
    stale = tmp_path / "errors.md"
    stale.write_text("# Errors\n\nstale\n")
    assert page.main(["--check", "--out", str(stale)]) == 1
    assert page.main(["--out", str(stale)]) == 0
    assert page.main(["--check", "--out", str(stale)]) == 0


def test_errors_page_lists_every_catalogue_entry():
    page = _errors_page()
    text = (ROOT / "docs" / "errors.md").read_text()
    for name, *_ in page.catalogue():
        assert f"| {name} |" in text, name


def test_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, len(lines)


def test_every_docs_link_of_the_readme_exists():
    links = re.findall(r"\]\((docs/[^)#\s]+)", README.read_text())
    assert links, "the README links into docs/"
    missing = [link for link in links if not (ROOT / link).exists()]
    assert not missing, missing


def test_readme_keeps_one_results_block():
    names = re.findall(r"<!-- RESULTS:([\w-]+) -->", README.read_text())
    assert names == ["per-seed"], names
    assert README.read_text().count("<!-- /RESULTS:per-seed -->") == 1


@pytest.mark.parametrize("name", MOVED_BLOCKS)
def test_moved_block_keeps_its_markers(name):
    text = RESULTS.read_text()
    start, end = f"<!-- RESULTS:{name} -->", f"<!-- /RESULTS:{name} -->"
    assert text.count(start) == 1 and text.count(end) == 1, name
    assert text.index(start) < text.index(end), name
    assert start not in README.read_text(), name


def _local_links(text: str) -> list[str]:
    """Targets of markdown links and images that point at files of the repository."""
    targets = re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", text)
    return [t for t in targets if "://" not in t and not t.startswith("mailto:")]


def test_link_reader_keeps_local_targets_only():
    text = "![a](ui/x.png) [b](https://e.org/p) [c](docs/y.md#part) [d](#anchor)"
    assert _local_links(text) == ["ui/x.png", "docs/y.md"]


@pytest.mark.parametrize(
    "page",
    ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))],
)
def test_every_local_link_and_image_resolves_from_its_page(page):
    path = ROOT / page
    missing = [t for t in _local_links(path.read_text()) if not (path.parent / t).exists()]
    assert not missing, f"{page}: {missing}"
