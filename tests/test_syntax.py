"""Parser and formatter: the AST has the spec's shape; fmt is idempotent and meaning-preserving."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from dnnspec.errors import SpecError
from dnnspec.syntax import ast
from dnnspec.syntax.fmt import format_expr, format_spec
from dnnspec.syntax.parser import parse, parse_expr

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.dnn"))
PARSEABLE_BAD = [p for p in sorted((ROOT / "tests" / "bad_specs").glob("*.dnn")) if "syntax" not in p.stem]

SAMPLE = """\
# a comment before everything
let hidden = 300  # trailing comment
let rate = 1/255

block bn_elu(n, momentum=0.9) {
    dense(n, init=he_normal)
    batchnorm(momentum=momentum)
    elu
}

model mnist {
    input x[784]
    scope dnn {
        bn_elu hidden1(hidden)
        repeat 2 {
            dense hidden(2*hidden, activation=relu)
        }
        dropout(0.5)
        dense outputs(10)
    }
}

data mnist = npz("data/mnist.npz", validation=5000, scale=rate)

train {
    loss softmax_cross_entropy
    optimizer nesterov(lr=0.01, momentum=0.9)
    regularize l2(1e-5) on "dnn/.*/kernel"
    early_stopping monitor=val_loss patience=5
    checkpoint "checkpoints/mnist.h5" best=val_accuracy
}

freeze "dnn/hidden[12]"
collection important = [x, dnn/outputs, accuracy]
"""


def test_ast_shape():
    spec = parse(SAMPLE, "s.dnn")
    kinds = [type(s).__name__ for s in spec.statements]
    assert kinds == ["Let", "Let", "Block", "Model", "Data", "Train", "Setting", "Setting"]
    block = spec.statements[2]
    assert [p.name for p in block.params] == ["n", "momentum"]
    assert block.params[1].default == ast.Num(0.9)
    model = spec.statements[3]
    assert model.body[0] == ast.Input("x", ast.Num(784))
    scope = model.body[1]
    inst = scope.body[0]
    assert (inst.kind, inst.name, inst.args) == ("bn_elu", "hidden1", (ast.Name("hidden"),))
    rep = scope.body[1]
    assert rep.count == ast.Num(2)
    dense = rep.body[0]
    assert dense.args == (ast.BinOp("*", ast.Num(2), ast.Name("hidden")),)
    assert dense.kwargs == (ast.Kwarg("activation", ast.Name("relu")),)
    train = spec.statements[5]
    reg = train.settings[2]
    assert reg.key == "regularize" and reg.on == ast.Str("dnn/.*/kernel")
    assert reg.value == ast.Call("l2", (ast.Num(1e-5),))
    ck = train.settings[4]
    assert ck.value == ast.Str("checkpoints/mnist.h5") and ck.kwargs[0].name == "best"


def test_spans_point_at_source():
    spec = parse(SAMPLE, "s.dnn")
    dense = spec.statements[3].body[1].body[1].body[0]
    assert (dense.span.line, dense.span.col) == (16, 13)
    assert SAMPLE.splitlines()[15][12:17] == "dense"


def test_fmt_is_idempotent_and_preserves_meaning_and_comments():
    out = format_spec(parse(SAMPLE))
    assert parse(out) == parse(SAMPLE)
    assert format_spec(parse(out)) == out
    assert "# a comment before everything" in out and "let hidden = 300  # trailing comment" in out


def test_fmt_canonicalizes_layout():
    messy = 'model  m{\n input x[ 4 ]\n      dense( 8 ,activation = relu )\n  elu()\n}\ntrain{\nepochs   3\n}\n'
    assert format_spec(parse(messy)) == (
        "model m {\n    input x[4]\n    dense(8, activation=relu)\n    elu\n}\n\ntrain {\n    epochs 3\n}\n"
    )


@pytest.mark.parametrize("path", SPECS + PARSEABLE_BAD, ids=lambda p: p.name)
def test_fmt_round_trip_on_shipped_specs(path):
    text = path.read_text()
    out = format_spec(parse(text))
    assert parse(out) == parse(text)
    assert format_spec(parse(out)) == out


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_shipped_specs_are_formatted(path):
    assert format_spec(parse(path.read_text())) == path.read_text()


def _random_expr(rng: random.Random, depth: int) -> ast.Expr:
    if depth == 0 or rng.random() < 0.3:
        return rng.choice([ast.Num(rng.randint(0, 9)), ast.Num(rng.choice([0.5, 1e-5, 2.5e3])), ast.Name("n")])
    if rng.random() < 0.15:
        return ast.Neg(_random_expr(rng, depth - 1))
    op = rng.choice(["+", "-", "*", "/", "**"])
    return ast.BinOp(op, _random_expr(rng, depth - 1), _random_expr(rng, depth - 1))


def _normalize(e):
    """-(literal) parses as a negative literal; compare modulo that folding."""
    if isinstance(e, ast.Neg):
        inner = _normalize(e.operand)
        return ast.Num(-inner.value) if isinstance(inner, ast.Num) else ast.Neg(inner)
    if isinstance(e, ast.BinOp):
        return ast.BinOp(e.op, _normalize(e.left), _normalize(e.right))
    return e


def test_expression_printing_keeps_precedence():
    rng = random.Random(0)
    for _ in range(500):
        e = _normalize(_random_expr(rng, 4))
        text = format_expr(e)
        assert _normalize(parse_expr(text)) == e, text


def test_numbers_print_as_written():
    assert format_expr(parse_expr("1e-5")) == "1e-5"
    assert format_expr(parse_expr("1/255")) == "1/255"
    assert format_expr(parse_expr("2 * n + 1")) == "2*n + 1"
    assert format_expr(parse_expr("(1 + 2) * 3")) == "(1 + 2)*3"


def test_keywords_are_still_names_where_a_name_fits():
    spec = parse('reuse "a.h5" scope="dnn/.*"\ncollection c = [input, data]\n')
    assert spec.statements[0].kwargs[0].name == "scope"


@pytest.mark.parametrize("text,line,col", [
    ("model m {\n    input x[4\n}\n", 2, 14),
    ("let = 3\n", 1, 5),
    ("model m {\n    dense(8,)\n}\n", 2, 13),
    ('data d = npz("unterminated)\n', 1, 14),
    ("train {\n    epochs 10 20\n}\n", 2, 15),
])
def test_syntax_errors_are_located(text, line, col):
    with pytest.raises(SpecError) as info:
        parse(text, "e.dnn")
    d = info.value.diagnostics[0]
    assert (d.code, d.span.line, d.span.col) == ("E001", line, col), str(info.value)
