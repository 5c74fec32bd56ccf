"""cifar_hpo.reports: marked blocks rewritten in place, clear errors for broken markers, and the
cell formatters' exact outputs (the README and bench blocks are tested cell by cell on these)."""

from __future__ import annotations

import pytest

from cifar_hpo.errors import CifarHpoError
from cifar_hpo.reports import (
    MarkerError,
    count,
    markers,
    md_cell,
    minutes,
    number,
    pct,
    points,
    replace_block,
    rewrite_readme,
    sig,
)

DOC = "# T\n\nbefore\n\n<!-- RESULTS:bench -->\nstale\n<!-- /RESULTS:bench -->\n\nafter\n"


def test_block_is_rewritten_in_place(tmp_path):
    path = tmp_path / "results.md"
    path.write_text(DOC)
    assert rewrite_readme(path, "fresh\n\n", "bench") is False
    assert path.read_text() == DOC.replace("stale", "fresh")
    rewrite_readme(path, "fresh", "bench")  # the same body twice: the same file
    assert path.read_text() == DOC.replace("stale", "fresh")


def test_other_blocks_are_left_alone():
    text = DOC + "<!-- RESULTS:sweep -->\nkeep\n<!-- /RESULTS:sweep -->\n"
    new = replace_block(text, "fresh", "bench")
    assert "keep" in new and "stale" not in new and new.endswith(text[len(DOC) :])


def test_markers_name_the_block():
    assert markers("bench") == ("<!-- RESULTS:bench -->", "<!-- /RESULTS:bench -->")
    assert markers() == markers("readme-table")  # the default: `cifar-hpo reproduce`'s block


def test_missing_block_is_inserted_as_a_section(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("# T\n\ntext\n")
    assert rewrite_readme(path, "new", "bench") is True
    start, end = markers("bench")
    assert path.read_text() == f"# T\n\ntext\n\n## Reproduced results\n\n{start}\nnew\n{end}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!-- RESULTS:bench -->\nx\n", "no '<!-- /RESULTS:bench -->' marker .*is there"),
        ("x\n<!-- /RESULTS:bench -->\n", "no '<!-- RESULTS:bench -->' marker .*is there"),
        (DOC + "<!-- RESULTS:bench -->\n", "'<!-- RESULTS:bench -->' appears 2 times"),
        ("<!-- /RESULTS:bench -->\n<!-- RESULTS:bench -->\n", "comes before"),
    ],
)
def test_a_broken_block_raises_a_one_line_error_and_writes_nothing(tmp_path, text, message):
    path = tmp_path / "results.md"
    path.write_text(text)
    with pytest.raises(MarkerError, match=message) as err:
        rewrite_readme(path, "new", "bench")
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert isinstance(err.value, CifarHpoError) and isinstance(err.value, ValueError)
    assert path.read_text() == text


def test_replace_block_refuses_text_without_the_block():
    with pytest.raises(MarkerError, match=r"notes\.md: no '<!-- RESULTS:bench -->' marker;"):
        replace_block("# T\n", "new", "bench", where="notes.md")


def test_formatters():
    assert pct(0.81234) == "81.23 %"
    assert pct(0.81234, 1) == "81.2 %"
    assert pct(1.0) == "100.00 %"
    assert points(0.0123) == "+1.23 points"
    assert points(-0.005) == "-0.50 points"
    assert minutes(750) == "12.5"
    assert minutes(59, 2) == "0.98"
    assert count(1234.6) == "1,235"
    assert number(1234) == "1,234"
    assert number(0.5, "{:.1%}") == "50.0%"
    assert number(float("nan")) == "-"
    assert sig(0.000123456) == "0.0001235"
    assert sig(1234567) == "1,234,567"
    assert sig(True) == "True" and sig("adamw") == "adamw"
    assert md_cell("a|b") == "a\\|b"


@pytest.mark.parametrize("fmt", [pct, points, minutes, count, number, sig])
def test_formatters_show_a_missing_value_as_a_dash(fmt):
    assert fmt(None) == "-"
