"""Every `dnn` example in the docs parses and checks, so the docs cannot drift from the grammar."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dnnspec.check import check_text
from dnnspec.syntax.fmt import format_spec
from dnnspec.syntax.parser import parse

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```dnn\n(.*?)^```", re.S | re.M)
# README shows an unlabelled spec block too: treat a ``` block starting with a comment or `let`/`model` as dnn
PLAIN = re.compile(r"^```\n((?:#|let |model ).*?)^```", re.S | re.M)


def examples():
    out = []
    for doc in DOCS:
        text = doc.read_text()
        for i, m in enumerate([*FENCE.finditer(text), *PLAIN.finditer(text)]):
            line = text[: m.start()].count("\n") + 2
            out.append(pytest.param(m.group(1), f"{doc.name}:{line}", id=f"{doc.name}:{line}"))
    return out


EXAMPLES = examples()


def test_docs_have_examples():
    assert len(EXAMPLES) >= 10


@pytest.mark.parametrize("text,where", EXAMPLES)
def test_doc_example_checks_and_is_formatted(text, where):
    program = check_text(text, where)
    assert program.ops
    assert format_spec(parse(text)) == text, f"{where} is not in canonical form"
