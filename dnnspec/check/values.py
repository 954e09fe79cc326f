"""Evaluating spec expressions and converting them to the types registries declare.

Values are plain Python (int, float, bool, str, list), `Symbol` for a bare word that is not a
variable, and `CallValue` for ``name(args)``. Conversion to a parameter's annotation happens in
`convert`, which reports problems as diagnostics at the span where the value was written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import Diagnostics, Span
from ..registry import REGISTRIES, REQUIRED, Component, Entry, Ref, Refs, Symbol, convert_plain, describe
from ..syntax import ast
from ..syntax.limits import MAX_INT


class Invalid(Exception):
    """Raised inside evaluation after a diagnostic was recorded; the caller skips the value."""


@dataclass(frozen=True)
class CallValue:
    name: str
    args: tuple[Any, ...]  # evaluated values
    kwargs: tuple[tuple[str, Any, Span | None, Span | None], ...]  # name, value, value span, name span
    arg_spans: tuple[Span | None, ...]
    span: Span | None


class ListValue(list):
    """A list's evaluated items, with the span of each, so an error in one item (an unknown
    augmentation in ``augment=[...]``) points at that item."""

    def __init__(self, items, spans):
        super().__init__(items)
        self.spans = tuple(spans)


@dataclass(frozen=True)
class Bound:
    """A name bound in an environment, with the span to blame when its value is wrong."""

    value: Any
    span: Span | None = None


Env = dict[str, Bound]

# The value of a `let` whose expression had an error (already reported): using it is Invalid
# without a second error ("undefined variable") at each use.
FAILED = Symbol("<failed>")


def evaluate(e: ast.Expr, env: Env, diags: Diagnostics) -> Any:
    """Evaluate an expression; records a diagnostic and raises Invalid on error."""
    if isinstance(e, ast.Num):
        problem = result_problem(e.value)
        if problem:
            diags.error("E014", literal_problem(e.text or str(e.value)), e.span)
            raise Invalid
        return e.value
    if isinstance(e, (ast.Str, ast.Bool)):
        return e.value
    if isinstance(e, ast.Name):
        if e.id in env:
            value = env[e.id].value
            if value is FAILED:
                raise Invalid
            return value
        return Symbol(e.id)
    if isinstance(e, ast.ListExpr):
        return ListValue([evaluate(x, env, diags) for x in e.items], [blame(x, env) for x in e.items])
    if isinstance(e, ast.Call):
        args = tuple(evaluate(a, env, diags) for a in e.args)
        kwargs = tuple((k.name, evaluate(k.value, env, diags), blame(k.value, env), k.span) for k in e.kwargs)
        return CallValue(e.name, args, kwargs, tuple(blame(a, env) for a in e.args), e.span)
    if isinstance(e, ast.Neg):
        v = evaluate(e.operand, env, diags)
        _need_number(v, e.operand, env, diags, "-")
        return -v
    if isinstance(e, ast.BinOp):
        a, b = evaluate(e.left, env, diags), evaluate(e.right, env, diags)
        _need_number(a, e.left, env, diags, e.op)
        _need_number(b, e.right, env, diags, e.op)
        try:
            if e.op == "+":
                result = a + b
            elif e.op == "-":
                result = a - b
            elif e.op == "*":
                result = a * b
            elif e.op == "/":
                result = a / b
            elif isinstance(a, int) and isinstance(b, int) and b > 64 and abs(a) > 1:
                result = MAX_INT + 1  # |a|**b >= 2**65: refused before Python computes it
            else:
                result = a**b
        except ZeroDivisionError:
            diags.error("E012", "division by zero", e.right.span)
            raise Invalid from None
        except OverflowError:
            result = math.inf
        if isinstance(result, complex):
            diags.error("E012", f"'{e.op}' gives no real number here", e.span)
            raise Invalid
        problem = result_problem(result)
        if problem:
            diags.error("E014", f"'{e.op}' gives {problem}", e.span)
            raise Invalid
        return result
    raise TypeError(f"not an expression: {e!r}")  # pragma: no cover


def literal_problem(text: str) -> str:
    """The message for a number literal out of range (see `result_problem`)."""
    sign = "-" if text.startswith("-") else ""
    body = text.lstrip("-")
    if body.isdigit():
        digits = body.lstrip("0")
        shown = digits if len(digits) <= 30 else f"{digits[:12]}...{digits[-6:]} ({len(digits)} digits)"
        return f"integer {sign}{shown} is too large: integers are 64-bit (at most 2**63-1 = {MAX_INT})"
    shown = body if len(body) <= 30 else f"{body[:12]}...{body[-6:]} ({len(body)} characters)"
    return f"number {sign}{shown} is too large for a 64-bit float (at most about 1.8e308)"


def result_problem(v: int | float) -> str | None:
    """Why a number cannot be a spec value (see `limits`): an integer beyond 64 bits, a float
    that is infinite or not a number; None if it is fine."""
    if isinstance(v, int):
        return None if -MAX_INT <= v <= MAX_INT else f"an integer beyond the 64-bit limit 2**63-1 = {MAX_INT}"
    if not math.isfinite(v):
        return ("a number too large for a 64-bit float (over about 1.8e308)" if not math.isnan(v)
                else "no number (nan)")
    return None


def _need_number(v: Any, e: ast.Expr, env: Env, diags: Diagnostics, op: str) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        if isinstance(v, Symbol):
            diags.error("E011", f"undefined variable '{v.name}'", e.span,
                        hint=_let_hint(v.name, env))
        else:
            diags.error("E012", f"'{op}' needs numbers, got {describe(v)}", e.span)
        raise Invalid


def _let_hint(name: str, env: Env) -> str | None:
    from ..registry import suggest

    best = suggest(name, env)
    return f"did you mean '{best}'?" if best else "define it with `let " + name + " = ...`"


def blame(e: ast.Expr, env: Env) -> Span | None:
    """Where to point when the value of `e` is wrong: a block argument's call site, else `e`."""
    if isinstance(e, ast.Name) and e.id in env and env[e.id].span is not None:
        return env[e.id].span
    return e.span


def bind_arguments(
    entry: Entry,
    args: tuple[Any, ...],
    arg_spans: tuple[Span | None, ...],
    kwargs: tuple[tuple[str, Any, Span | None, Span | None], ...],
    where: Span | None,
    what: str,
    diags: Diagnostics,
    skip: tuple[str, ...] = (),
) -> dict[str, Any] | None:
    """Match positional and keyword arguments to an entry's parameters and convert them.

    Returns name -> converted value (defaults included), or None if anything was wrong.
    """
    params = [p for p in entry.params if p.name not in skip]
    ok = True
    given: dict[str, tuple[Any, Span | None]] = {}
    if len(args) > len(params):
        span = arg_spans[len(params)] if len(arg_spans) > len(params) else where
        diags.error("E022", f"{what} takes at most {len(params)} positional argument"
                    f"{'s' * (len(params) != 1)}, got {len(args)}", span)
        ok = False
    for p, v, s in zip(params, args, arg_spans):
        given[p.name] = (v, s)
    names = [p.name for p in params]
    for name, v, s, name_span in kwargs:
        if name not in names:
            from ..registry import suggest

            best = suggest(name, names)
            hint = f"did you mean '{best}'?" if best else (
                "parameters: " + ", ".join(names) if names else f"{what} takes no parameters")
            diags.error("E021", f"unknown parameter '{name}' for {what}", name_span or s, hint=hint)
            ok = False
            continue
        if name in given:
            diags.error("E023", f"parameter '{name}' of {what} given twice", name_span or s)
            ok = False
        given[name] = (v, s)
    out: dict[str, Any] = {}
    for p in params:
        if p.name not in given:
            if p.required:
                diags.error("E024", f"{what} needs parameter '{p.name}' ({p.type})", where)
                ok = False
            elif isinstance(p.type, Ref):  # defaults like "zeros" resolve like written names
                try:
                    out[p.name] = resolve_component(p.type.kind, p.default, where, diags)
                except Invalid:
                    ok = False
            else:
                out[p.name] = p.default
            continue
        value, span = given[p.name]
        try:
            out[p.name] = convert(p.type, value, span or where, diags, f"'{p.name}' of {what}")
        except Invalid:
            ok = False
    if ok and hasattr(entry.cls, "validate"):
        message = entry.cls.validate(**out)
        if message:
            diags.error("E025", f"{what}: {message}", where)
            ok = False
    return out if ok else None


def convert(annotation: Any, value: Any, span: Span | None, diags: Diagnostics, what: str) -> Any:
    """Convert a value to a parameter's declared type; Refs become Components."""
    if isinstance(annotation, Ref):
        return resolve_component(annotation.kind, value, span, diags)
    if isinstance(annotation, Refs):
        return resolve_components(annotation.kind, value, span, diags, what)
    if isinstance(value, CallValue):
        diags.error("E020", f"{what} expects {annotation_text(annotation)}, got a call '{value.name}(...)'", span)
        raise Invalid
    if isinstance(value, Symbol) and annotation in (int, float) or (
        isinstance(value, Symbol) and type(annotation).__name__ in ("Float", "Int")
    ):
        diags.error("E011", f"undefined variable '{value.name}'", span,
                    hint=f"{what} expects {annotation_text(annotation)}")
        raise Invalid
    try:
        return convert_plain(annotation, value)
    except (TypeError, ValueError) as exc:
        code = "E020" if isinstance(exc, TypeError) else "E030"
        diags.error(code, f"{what} {exc}", span)
        raise Invalid from None


def resolve_components(kind: str, value: Any, span: Span | None, diags: Diagnostics, what: str
                       ) -> tuple[Component, ...]:
    """A list of names or calls of registry `kind` (``[shift(2), flip_horizontal]``), each
    checked where it is written; a single name or call is a list of one."""
    if isinstance(value, (Symbol, CallValue)):
        value = ListValue([value], [span])
    if not isinstance(value, list):
        diags.error("E020", f"{what} expects a list of {kind}s like [{_example(kind)}], got {describe(value)}", span)
        raise Invalid
    spans = getattr(value, "spans", ())
    out, ok = [], True
    for i, item in enumerate(value):
        try:
            out.append(resolve_component(kind, item, spans[i] if i < len(spans) else span, diags))
        except Invalid:
            ok = False
    if not ok:
        raise Invalid
    return tuple(out)


def _example(kind: str) -> str:
    names = REGISTRIES[kind].names()[:2]
    return ", ".join(names)


def annotation_text(annotation: Any) -> str:
    if annotation is REQUIRED:
        return "a value"
    return getattr(annotation, "__name__", None) or str(annotation)


def resolve_component(kind: str, value: Any, span: Span | None, diags: Diagnostics) -> Component:
    """A bare name or a call, resolved in registry `kind`, with its arguments checked."""
    registry = REGISTRIES[kind]
    if isinstance(value, str) and not isinstance(value, Symbol):
        value = Symbol(value)  # defaults are written as strings in signatures
    if isinstance(value, Symbol):
        call = CallValue(value.name, (), (), (), span)
    elif isinstance(value, CallValue):
        call = value
    else:
        article = "an" if kind[0] in "aeiou" else "a"  # an initializer, an augmentation
        diags.error("E020", f"expected the name of {article} {kind}, got {describe(value)}", span)
        raise Invalid
    if call.name == "auto" and kind == "initializer":
        return Component(kind, "auto")
    if call.name not in registry:
        best = registry.suggest(call.name)
        diags.error("E010", f"unknown {kind} '{call.name}'" + (f" — did you mean '{best}'?" if best else ""),
                    call.span or span, hint=None if best else f"known: {', '.join(registry.names())}")
        raise Invalid
    entry = registry.get(call.name)
    bound = bind_arguments(entry, call.args, call.arg_spans, call.kwargs, call.span or span,
                           f"{kind} '{entry.name}'", diags)
    if bound is None:
        raise Invalid
    return Component(kind, entry.name, tuple(bound.items()))
