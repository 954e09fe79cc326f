"""Checker errors: every file in tests/bad_specs/ states its expected diagnostics as
``# expect: CODE LINE:COL message`` comments; the checker must report exactly those."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dnnspec.check import check_text
from dnnspec.errors import SpecError
from dnnspec.syntax.parser import parse

BAD = sorted((Path(__file__).parent / "bad_specs").glob("*.dnn"))
EXPECT = re.compile(r"#\s*expect:\s*(\w+)\s+(\d+):(\d+)\s+(.*)$")


def expectations(text: str) -> list[tuple[str, int, int, str]]:
    return [(m[1], int(m[2]), int(m[3]), m[4].strip()) for m in map(EXPECT.search, text.splitlines()) if m]


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_spec_reports_expected_diagnostics(path):
    text = path.read_text()
    expected = expectations(text)
    assert expected, f"{path.name} states no expectation"
    with pytest.raises(SpecError) as info:
        check_text(text, path.name)
    errors = [d for d in info.value.diagnostics if d.severity == "error"]
    got = [(d.code, d.span.line if d.span else 0, d.span.col if d.span else 0) for d in errors]
    assert got == [(c, line, col) for c, line, col, _ in expected], "\n" + str(info.value)
    for d, (_, _, _, message) in zip(errors, expected):
        assert message in d.message + ((" " + d.hint) if d.hint else ""), str(info.value)


def test_at_least_fifteen_distinct_mistakes():
    codes = {c for p in BAD for c, *_ in expectations(p.read_text())}
    assert len(BAD) >= 15 and len(codes) >= 15


def test_rendering_shows_file_line_caret_and_hint():
    text = "model m {\n    input x[4]\n    rleu\n}\n"
    with pytest.raises(SpecError) as info:
        check_text(text, "specs/x.dnn")
    out = str(info.value)
    assert out.splitlines()[0] == "specs/x.dnn:3:5: error: unknown activation 'rleu' — did you mean 'relu'? [E010]"
    assert "   3 |     rleu" in out
    caret_line = out.splitlines()[2]
    assert caret_line.index("^") == out.splitlines()[1].index("rleu")
    assert caret_line.strip() == "^~~~"


def test_syntax_error_lists_what_was_expected():
    with pytest.raises(SpecError) as info:
        parse("model m {\n    input x[4\n}\n", "s.dnn")
    d = info.value.diagnostics[0]
    assert (d.code, d.span.line, d.span.col) == ("E001", 2, 14)
    assert "']'" in d.hint


def test_warnings_do_not_fail_the_check():
    text = """
model m {
    input x[4]
    repeat 6 {
        dense(8, activation=sigmoid)
    }
    dense(2)
    softmax
}
"""
    program = check_text(text, "w.dnn")
    codes = {w.code for w in program.warnings}
    assert {"W101", "W102"} <= codes
