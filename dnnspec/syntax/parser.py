"""Text -> AST. A thin wrapper over lark (LALR) and a pure tree-to-AST builder.

Checking lives elsewhere (`dnnspec.check`): the builder only builds nodes, so an exception
here is a bug, never a user error (see STYLE.md on lark's VisitError). What the parser itself
refuses, with a located SpecError: syntax errors and bad string escapes (E001), nesting past
the limits of `limits` (E002), a spec longer than MAX_SOURCE_CHARS (E003). The tree becomes the
AST without recursion, so no spec makes it raise RecursionError.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from importlib import resources
from pathlib import Path

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from ..errors import Diagnostic, Span, SpecError
from . import ast
from .limits import MAX_EXPR_DEPTH, MAX_INT, MAX_NESTING, MAX_SOURCE_CHARS

BOM = "\ufeff"


def grammar_text() -> str:
    """The grammar shipped in the wheel, or the repository's copy in an editable install."""
    packaged = resources.files("dnnspec") / "grammar" / "dnnspec.lark"
    if packaged.is_file():
        return packaged.read_text()
    return (Path(__file__).resolve().parents[2] / "grammar" / "dnnspec.lark").read_text()


@lru_cache(maxsize=None)
def _parser(start: str) -> Lark:
    return Lark(grammar_text(), parser="lalr", start=start, propagate_positions=True, maybe_placeholders=True)


def parse(text: str, file: str = "<spec>") -> ast.Spec:
    """Parse a whole spec; raises SpecError with a located syntax error.

    A UTF-8 byte order mark at the start is skipped (columns count from after it). Before the
    AST is built, the tree is checked against the limits of `limits` (nesting depth, number
    escapes), so building, checking and formatting the AST never recurse deeper than
    `MAX_NESTING`/`MAX_EXPR_DEPTH` levels.
    """
    if text.startswith(BOM):
        text = text[len(BOM):]
    _check_size(text, file)
    tree = _parse(text, file, "start")
    statements = _build(tree, file, text)
    return ast.Spec(tuple(statements), file=file, source=text)


def parse_expr(text: str, file: str = "<--set>", start: int = 0) -> ast.Expr:
    """Parse ``text[start:]`` as one expression (the value of a ``--set KEY=VALUE`` override).

    Positions count in the whole `text` (a one-line source), so a syntax error, and the spans of
    the nodes the checker reports on, point at the column of ``KEY=VALUE`` the user typed. Raises
    SpecError with a located syntax error, exactly as `parse` does for a file.
    """
    _check_size(text, file)
    tree = _parse(" " * start + text[start:], file, "expr", source=text)
    return _build(tree, file, text)


def _check_size(text: str, file: str) -> None:
    if len(text) > MAX_SOURCE_CHARS:
        raise SpecError([Diagnostic("E003", f"the spec is {len(text):,} characters long, more than the limit of "
                                            f"{MAX_SOURCE_CHARS:,}")], {file: ""}, file)


# Tree nodes that make an expression one level deeper (see `limits.MAX_EXPR_DEPTH`).
_EXPR_NODES = frozenset({"add", "sub", "mul", "div", "pow", "neg", "list", "call"})


def _build(tree, file: str, source: str):
    """The AST of a parse tree, built without recursion (lark's transformers use a Python
    frame per level, or are slow); SpecError for nesting deeper than the limits (E002) and for
    strings with an invalid escape (E001). Numbers out of range are the checker's (E014),
    reported with every other error."""
    builder = _Builder(file)
    out: list = []
    stack = [(tree, 0, 0, False)]
    while stack:
        node, bodies, exprs, done = stack.pop()
        if not isinstance(node, Tree):
            out.append(node)
            continue
        if done:
            n = len(node.children)
            children = out[len(out) - n:]
            del out[len(out) - n:]
            # after a problem the tree is only walked for more problems: a node may be missing
            out.append(None if builder.problems else getattr(builder, node.data)(node.meta, children))
            continue
        if node.data in ("body", "train_body"):
            bodies += 1
            if bodies > MAX_NESTING:
                builder.problem(Diagnostic(
                    "E002", f"blocks, scopes and repeats nested more than {MAX_NESTING} levels deep",
                    _span(file, node.meta), hint="flatten the nesting, e.g. with a block"))
                out.append(None)
                continue
        elif node.data in _EXPR_NODES:
            exprs += 1
            if exprs > MAX_EXPR_DEPTH:
                builder.problem(Diagnostic(
                    "E002", f"an expression nested more than {MAX_EXPR_DEPTH} levels deep (each operator, call "
                            "and list is a level)", _span(file, node.meta), hint="split it with `let`"))
                out.append(None)
                continue
        stack.append((node, bodies, exprs, True))
        stack.extend((child, bodies, exprs, False) for child in reversed(node.children))
    if builder.problems:
        raise SpecError(builder.problems, {file: source})
    return out[0]


_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|N\{[^}]*\}|[0-7]{1,3}|[xuUN]|.)", re.S)
_SIMPLE = {"\\": "\\", "'": "'", '"': '"', "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
           "v": "\v"}


def unquote(token: str) -> str:
    """The value of a STRING token, with Python's escapes (an unknown one such as the ``\\d`` of a
    regular expression stays as written); ValueError naming an invalid escape."""
    body = token[1:-1]
    if "\\" not in body:
        return body

    def one(m: re.Match) -> str:
        e = m.group(1)
        if e in _SIMPLE:
            return _SIMPLE[e]
        if e[0] in "xuU" and len(e) > 1:
            code = int(e[1:], 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise ValueError(f"invalid escape \\{e} in a string (not a character)")
            return chr(code)
        if e[0] == "N" and len(e) > 1:
            try:
                return unicodedata.lookup(e[2:-1])
            except KeyError:
                raise ValueError(f"invalid escape \\{e} in a string (no such character name)") from None
        if e in "xuUN":
            raise ValueError(f"invalid escape \\{e} in a string (truncated)")
        if e[0] in "01234567":
            return chr(int(e, 8))
        return "\\" + e

    return _ESCAPE.sub(one, body)


def _parse(text: str, file: str, start: str, source: str | None = None):
    """Parse `text` from grammar rule `start`; a syntax error becomes a SpecError whose
    diagnostic names the position and lark's expected tokens. `source` is the text to show under
    the message (default: `text`)."""
    whole = start == "start"
    src = text if not whole or text.endswith("\n") else text + "\n"  # a file's last line ends
    try:
        return _parser(start).parse(src)
    except UnexpectedInput as e:
        end = "end of file" if whole else "end of input"
        raise SpecError([_syntax_diagnostic(e, src, file, end)], {file: text if source is None else source}) from None


# Readable names for terminals in "expected ..." messages ($END: see `_describe_terminal`).
_TERMINAL_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a string",
    "_NL": "end of line",
}


def _describe_terminal(name: str, end: str = "end of file") -> str | None:
    """A terminal as a user reads it: 'dense', a number, end of line; None for one lark made up
    for a pattern (ignored whitespace), which no user types."""
    if name == "$END":
        return end
    if name in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[name]
    try:
        pattern = _parser("start").get_terminal(name).pattern
    except KeyError:
        return name.lower()
    if pattern.type == "str":
        return f"'{pattern.value}'"  # keywords and punctuation, '**' (lark's __ANON_0) included
    return None if name.startswith("__") else name.lower()


def _syntax_diagnostic(e: UnexpectedInput, src: str, file: str, end: str = "end of file") -> Diagnostic:
    """E001 at the offending character, with lark's expected tokens as the hint. `end` names the
    end of the text: "end of file" for a spec, "end of input" for an override's value."""
    line, col = getattr(e, "line", 1) or 1, getattr(e, "column", 1) or 1
    if isinstance(e, UnexpectedToken) and e.token.type == "$END":
        line = max(1, src.count("\n") + (not src.endswith("\n")))
        col = len(src.rstrip("\n").split("\n")[-1]) + 1
    if isinstance(e, UnexpectedCharacters):
        char = src[e.pos_in_stream]
        what = f"unexpected character {char!r}"
        expected = set()  # lark's `allowed` here is often wrong after a default reduction
        if char == '"':
            return Diagnostic("E001", "syntax error: unterminated string", Span(file, line, col),
                              hint='a string ends with " on the same line')
        if not char.isascii():
            name = unicodedata.name(char, "")
            return Diagnostic("E001", f"syntax error: unexpected non-ASCII character {char!r} "
                                      f"(U+{ord(char):04X}{' ' + name if name else ''})", Span(file, line, col),
                              hint="names and numbers are ASCII (letters, digits, '_'); other characters "
                                   "belong in strings and comments")
    elif isinstance(e, UnexpectedToken):
        tok = e.token
        what = "unexpected end of line" if tok.type == "_NL" else (
            f"unexpected {end}" if tok.type == "$END" else f"unexpected {tok.value!r}")
        expected = e.expected
    else:  # pragma: no cover - UnexpectedEOF is not raised by LALR
        what, expected = "unexpected end of input", set()
    hint = None
    if expected:
        words = sorted({w for w in (_describe_terminal(t, end) for t in expected) if w is not None})
        if len(words) > 8:
            words = words[:8] + ["..."]
        hint = "expected " + ", ".join(words)
    return Diagnostic("E001", f"syntax error: {what}", Span(file, line, col), hint=hint)


def _span(file: str, meta) -> Span | None:
    if getattr(meta, "empty", True):
        return None
    return Span(file, meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_span(file: str, tok: Token) -> Span:
    return Span(file, tok.line, tok.column, tok.end_line, tok.end_column)


class _Body(tuple):
    """The items of a braced body, with the position of its closing brace."""

    def __new__(cls, items, meta):
        self = super().__new__(cls, items)
        self.end = (meta.end_line, meta.end_column) if not getattr(meta, "empty", True) else (0, 0)
        return self


class _Builder:
    """Builds AST nodes from the parse tree (one method per rule, called by `_build` with the
    node's meta and its children, already built); nothing else. Nothing here raises: a string
    with a bad escape is recorded with `problem` (and `_build` raises once it has seen the whole
    tree); a node over the nesting limits arrives as None, and then nothing is used."""

    def __init__(self, file: str):
        self.file = file
        self.problems: list[Diagnostic] = []

    def problem(self, d: Diagnostic) -> None:
        self.problems.append(d)

    def _unquote(self, tok: Token) -> str:
        try:
            return unquote(str(tok))
        except ValueError as e:
            self.problem(Diagnostic("E001", f"syntax error: {e}", _tok_span(self.file, tok),
                                    hint=r'a backslash escape is one of \\ \" \n \t \r \xHH \uHHHH '
                                         r'\UHHHHHHHH \N{NAME}'))
            return ""

    def _s(self, meta) -> Span | None:
        return _span(self.file, meta)

    # expressions
    def number(self, meta, c):
        text = str(c[0])
        if text.isdigit():
            digits = text.lstrip("0") or "0"
            # past 64 bits the value is only "too large" (the checker says so, E014): a 5000-digit
            # literal is not converted (Python refuses), nor is any integer past 20 digits
            value = int(digits) if len(digits) <= 20 else MAX_INT + 1
        else:
            value = float(text)  # 1e400 is inf: the checker reports it (E014)
        return ast.Num(value, self._s(meta), text)

    def string(self, meta, c):
        return ast.Str(self._unquote(c[0]), self._s(meta))

    def true(self, meta, c):
        return ast.Bool(True, self._s(meta))

    def false(self, meta, c):
        return ast.Bool(False, self._s(meta))

    def name(self, meta, c):
        return ast.Name(str(c[0]), self._s(meta))

    def _bin(op):  # noqa: N805 - a factory used in the class body
        def build(self, meta, c):
            return ast.BinOp(op, c[0], c[1], self._s(meta))
        return build

    add, sub, mul, div, pow = _bin("+"), _bin("-"), _bin("*"), _bin("/"), _bin("**")

    def neg(self, meta, c):
        if isinstance(c[0], ast.Num):  # fold so that "-3" is a literal, as a user reads it
            text = c[0].text
            return ast.Num(-c[0].value, self._s(meta), "-" + text if text else None)
        return ast.Neg(c[0], self._s(meta))

    def unary(self, meta, c):  # unary plus
        return c[0]

    def list(self, meta, c):
        return ast.ListExpr(tuple(x for x in c if x is not None), self._s(meta))

    def kwarg(self, meta, c):
        return ast.Kwarg(str(c[0]), c[1], _tok_span(self.file, c[0]))

    def on(self, meta, c):
        tok = c[0]
        return ("on", ast.Str(self._unquote(tok), _tok_span(self.file, tok)))

    def args(self, meta, c):
        items = [x for x in c if x is not None]
        return (tuple(x for x in items if not isinstance(x, ast.Kwarg)),
                tuple(x for x in items if isinstance(x, ast.Kwarg)))

    def call(self, meta, c):
        args, kwargs = c[1]
        return ast.Call(str(c[0]), args, kwargs, _tok_span(self.file, c[0]))

    # statements
    def let_stmt(self, meta, c):
        return ast.Let(str(c[0]), c[1], _tok_span(self.file, c[0]))

    def param(self, meta, c):
        return ast.Param(str(c[0]), c[1], _tok_span(self.file, c[0]))

    def body(self, meta, c):
        return _Body(c, meta)

    train_body = body

    def _braced(self, meta, body: _Body) -> Span | None:
        """A braced construct's span: from its first word to its closing brace (the meta's end
        is the start of the next statement: the statement's newlines belong to it)."""
        if getattr(meta, "empty", True):
            return None
        return Span(self.file, meta.line, meta.column, *body.end)

    def block_def(self, meta, c):
        params = tuple(p for p in c[1:-1] if p is not None)
        return ast.Block(str(c[0]), params, tuple(c[-1]), self._braced(meta, c[-1]))

    def model_def(self, meta, c):
        return ast.Model(str(c[0]), tuple(c[1]), self._braced(meta, c[1]))

    def input_stmt(self, meta, c):
        return ast.Input(str(c[0]), c[1], _tok_span(self.file, c[0]))

    def scope_stmt(self, meta, c):
        return ast.Scope(str(c[0]), tuple(c[1]), self._braced(meta, c[1]))

    def repeat_stmt(self, meta, c):
        return ast.Repeat(c[0], tuple(c[1]), self._braced(meta, c[1]))

    def residual_stmt(self, meta, c):
        name, args, body = c
        pos, kw = args if args is not None else ((), ())
        return ast.Residual(str(name) if name is not None else None, pos, kw, tuple(body),
                            self._braced(meta, body), _tok_span(self.file, name) if name is not None else None)

    def layer_stmt(self, meta, c):
        kind, name, args = c
        pos, kw = args if args is not None else ((), ())
        return ast.Layer(
            str(kind), str(name) if name is not None else None, pos, kw,
            _tok_span(self.file, kind), _tok_span(self.file, name) if name is not None else None,
        )

    def data_def(self, meta, c):
        return ast.Data(str(c[0]), c[1], _tok_span(self.file, c[0]))

    def setting(self, meta, c):
        key, value, *opts = c
        kwargs = tuple(o for o in opts if isinstance(o, ast.Kwarg))
        ons = [o[1] for o in opts if isinstance(o, tuple)]
        return ast.Setting(str(key), value, kwargs, ons[-1] if ons else None, _tok_span(self.file, key))

    def train_def(self, meta, c):
        return ast.Train(tuple(c[0]), self._braced(meta, c[0]))

    def start(self, meta, c):
        return list(c)
