"""The canonical formatter: AST -> text in the style the docs use.

Idempotent (``fmt(fmt(x)) == fmt(x)``) and meaning-preserving (``parse(fmt(x)) == parse(x)``).
Comments are kept: a comment on its own line stays above the line that followed it, a comment
after code stays at the end of that line.
"""

from __future__ import annotations

import math
from collections import deque

from . import ast

INDENT = "    "

# Binding strength of each expression form (higher binds tighter), as in the grammar.
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "**": 4}


def format_number(v: int | float) -> str:
    if isinstance(v, bool):  # pragma: no cover - bools are ast.Bool
        return str(v).lower()
    if isinstance(v, int):
        return str(v)
    text = repr(v)
    if "e" in text:
        mant, exp = text.split("e")
        sign = "-" if exp.startswith("-") else ""
        text = f"{mant}e{sign}{exp.lstrip('+-').lstrip('0') or '0'}"
    return text


_STRING_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def format_string(s: str) -> str:
    """A string literal that parses back to `s`: quotes and backslashes escaped, and so are the
    characters a one-line literal cannot hold or a reader cannot see (newlines, controls)."""
    out = []
    for ch in s:
        if ch in _STRING_ESCAPES:
            out.append(_STRING_ESCAPES[ch])
        elif ord(ch) < 32 or ch in "\x7f\x85\u2028\u2029":
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _prec(e: ast.Expr) -> int:
    if isinstance(e, ast.BinOp):
        return _PREC[e.op]
    if isinstance(e, ast.Neg) or (isinstance(e, ast.Num) and math.copysign(1, e.value) < 0):  # -0.0 too
        return 3
    return 5


def format_expr(e: ast.Expr) -> str:
    if isinstance(e, ast.Num):
        return e.text if e.text else format_number(e.value)
    if isinstance(e, ast.Str):
        return format_string(e.value)
    if isinstance(e, ast.Bool):
        return "true" if e.value else "false"
    if isinstance(e, ast.Name):
        return e.id
    if isinstance(e, ast.Neg):
        inner = format_expr(e.operand)
        return "-" + (inner if _prec(e.operand) >= 3 else f"({inner})")
    if isinstance(e, ast.ListExpr):
        return "[" + ", ".join(format_expr(x) for x in e.items) + "]"
    if isinstance(e, ast.Call):
        return e.name + format_args(e.args, e.kwargs, always=True)
    if isinstance(e, ast.BinOp):
        p = _PREC[e.op]
        left, right = format_expr(e.left), format_expr(e.right)
        if e.op == "**":  # right-associative; the base must be an atom
            left = left if _prec(e.left) == 5 else f"({left})"
            right = right if _prec(e.right) >= 3 else f"({right})"
            return f"{left}**{right}"
        left = left if _prec(e.left) >= p else f"({left})"
        right = right if _prec(e.right) > p else f"({right})"
        sep = f" {e.op} " if p == 1 else e.op
        return f"{left}{sep}{right}"
    raise TypeError(f"not an expression: {e!r}")


def format_args(args, kwargs, always: bool = False) -> str:
    parts = [format_expr(a) for a in args] + [f"{k.name}={format_expr(k.value)}" for k in kwargs]
    if not parts and not always:
        return ""
    return "(" + ", ".join(parts) + ")"


def format_setting(s: ast.Setting) -> str:
    if s.key == "collection" and s.value is None and len(s.kwargs) == 1:
        return f"collection {s.kwargs[0].name} = {format_expr(s.kwargs[0].value)}"
    parts = [s.key]
    if s.value is not None:
        parts.append(format_expr(s.value))
    parts += [f"{k.name}={format_expr(k.value)}" for k in s.kwargs]
    if s.on is not None:
        parts.append("on " + format_string(s.on.value))
    return " ".join(parts)


def _comments(source: str) -> dict[int, tuple[str, bool]]:
    """line -> (comment text, whether it stands alone on its line); '#' inside strings is not one."""
    found: dict[int, tuple[str, bool]] = {}
    for number, line in enumerate(source.split("\n"), 1):  # lines as the parser counts them
        in_string = escaped = False
        for i, ch in enumerate(line):
            if in_string:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    in_string = False
            elif ch == '"':
                in_string = True
            elif ch == "#":
                found[number] = (line[i:].rstrip(), not line[:i].strip())
                break
    return found


class _Writer:
    def __init__(self, source: str):
        self.comments = _comments(source)
        self.pending = deque(sorted(self.comments))
        self.lines: list[str] = []

    def _flush_before(self, line: int, depth: int) -> None:
        while self.pending and self.pending[0] < line:
            ln = self.pending.popleft()
            text, alone = self.comments[ln]
            if alone:
                self.lines.append(INDENT * depth + text)
            elif self.lines:  # a trailing comment whose code line vanished: keep it nearby
                self.lines[-1] += "  " + text

    def emit(self, text: str, depth: int, line: int | None) -> None:
        if line is not None:
            self._flush_before(line, depth)
            if self.pending and self.pending[0] == line:
                self.pending.popleft()
                comment, _ = self.comments[line]
                text += "  " + comment
        self.lines.append(INDENT * depth + text)

    def close(self, depth: int, end_line: int | None) -> None:
        if end_line is not None:
            self._flush_before(end_line, depth + 1)
        self.emit("}", depth, end_line)

    def blank(self) -> None:
        if self.lines and self.lines[-1] != "":
            self.lines.append("")

    def text(self) -> str:
        self._flush_before(10**9, 0)
        return "\n".join(self.lines).rstrip("\n") + "\n"


def _line(node) -> int | None:
    return node.span.line if node.span is not None else None


def _end(node) -> int | None:
    return node.span.end_line if node.span is not None else None


def _body(w: _Writer, items, depth: int) -> None:
    for item in items:
        if isinstance(item, ast.Input):
            w.emit(f"input {item.name}[{format_expr(item.width)}]", depth, _line(item))
        elif isinstance(item, ast.Layer):
            head = item.kind + (f" {item.name}" if item.name else "")
            w.emit(head + format_args(item.args, item.kwargs), depth, _line(item))
        elif isinstance(item, ast.Scope):
            w.emit(f"scope {item.name} {{", depth, _line(item))
            _body(w, item.body, depth + 1)
            w.close(depth, _end(item))
        elif isinstance(item, ast.Residual):
            head = "residual" + (f" {item.name}" if item.name else "") + format_args(item.args, item.kwargs)
            w.emit(head + " {", depth, _line(item))
            _body(w, item.body, depth + 1)
            w.close(depth, _end(item))
        elif isinstance(item, ast.Repeat):
            w.emit(f"repeat {format_expr(item.count)} {{", depth, _line(item))
            _body(w, item.body, depth + 1)
            w.close(depth, _end(item))


def format_spec(spec: ast.Spec) -> str:
    """The canonical text of a spec."""
    w = _Writer(spec.source)
    prev = None
    for st in spec.statements:
        kind = type(st)
        if prev is not None and not (kind is prev and kind in (ast.Let, ast.Setting)):
            w.blank()
        prev = kind
        if isinstance(st, ast.Let):
            w.emit(f"let {st.name} = {format_expr(st.value)}", 0, _line(st))
        elif isinstance(st, ast.Block):
            params = ", ".join(p.name + (f"={format_expr(p.default)}" if p.default is not None else "") for p in st.params)
            w.emit(f"block {st.name}({params}) {{", 0, _line(st))
            _body(w, st.body, 1)
            w.close(0, _end(st))
        elif isinstance(st, ast.Model):
            w.emit(f"model {st.name} {{", 0, _line(st))
            _body(w, st.body, 1)
            w.close(0, _end(st))
        elif isinstance(st, ast.Data):
            w.emit(f"data {st.name} = {format_expr(st.source)}", 0, _line(st))
        elif isinstance(st, ast.Train):
            w.emit("train {", 0, _line(st))
            for s in st.settings:
                w.emit(format_setting(s), 1, _line(s))
            w.close(0, _end(st))
        elif isinstance(st, ast.Setting):
            w.emit(format_setting(st), 0, _line(st))
    return w.text()
