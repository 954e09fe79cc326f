"""The AST of a .dnn file: frozen dataclasses, one per construct, each with a source span.

Spans are excluded from equality, so ``parse(fmt(x)) == parse(x)`` compares meaning, not layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from ..errors import Span


def _span() -> Span | None:
    return field(default=None, compare=False, repr=False)


# ---------------------------------------------------------------- expressions
@dataclass(frozen=True)
class Num:
    value: int | float
    span: Span | None = _span()
    text: str | None = field(default=None, compare=False, repr=False)  # as written: 1e-3 stays 1e-3


@dataclass(frozen=True)
class Str:
    value: str
    span: Span | None = _span()


@dataclass(frozen=True)
class Bool:
    value: bool
    span: Span | None = _span()


@dataclass(frozen=True)
class Name:
    id: str
    span: Span | None = _span()


@dataclass(frozen=True)
class BinOp:
    op: str  # + - * / **
    left: Expr
    right: Expr
    span: Span | None = _span()


@dataclass(frozen=True)
class Neg:
    operand: Expr
    span: Span | None = _span()


@dataclass(frozen=True)
class ListExpr:
    items: tuple[Expr, ...]
    span: Span | None = _span()


@dataclass(frozen=True)
class Kwarg:
    name: str
    value: Expr
    span: Span | None = _span()  # span of the name


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Expr, ...] = ()
    kwargs: tuple[Kwarg, ...] = ()
    span: Span | None = _span()  # span of the name


Expr = Union[Num, Str, Bool, Name, BinOp, Neg, ListExpr, Call]


# ---------------------------------------------------------------- statements
@dataclass(frozen=True)
class Let:
    name: str
    value: Expr
    span: Span | None = _span()


@dataclass(frozen=True)
class Param:
    name: str
    default: Expr | None = None
    span: Span | None = _span()


@dataclass(frozen=True)
class Input:
    name: str
    width: Expr
    span: Span | None = _span()


@dataclass(frozen=True)
class Layer:
    """``kind [name] [(args)]`` — a layer, an activation, or a block instance."""

    kind: str
    name: str | None = None
    args: tuple[Expr, ...] = ()
    kwargs: tuple[Kwarg, ...] = ()
    span: Span | None = _span()  # span of the kind word
    name_span: Span | None = _span()


@dataclass(frozen=True)
class Scope:
    name: str
    body: tuple[Item, ...]
    span: Span | None = _span()


@dataclass(frozen=True)
class Repeat:
    count: Expr
    body: tuple[Item, ...]
    span: Span | None = _span()


@dataclass(frozen=True)
class Residual:
    """``residual [name] [(args)] { ... }`` — a body whose output is added to its input."""

    name: str | None
    args: tuple[Expr, ...]
    kwargs: tuple[Kwarg, ...]
    body: tuple[Item, ...]
    span: Span | None = _span()  # from the keyword to the closing brace
    name_span: Span | None = _span()


Item = Union[Input, Layer, Scope, Repeat, Residual]


@dataclass(frozen=True)
class Block:
    name: str
    params: tuple[Param, ...]
    body: tuple[Item, ...]
    span: Span | None = _span()


@dataclass(frozen=True)
class Model:
    name: str
    body: tuple[Item, ...]
    span: Span | None = _span()


@dataclass(frozen=True)
class Data:
    name: str
    source: Call
    span: Span | None = _span()


@dataclass(frozen=True)
class Setting:
    """``key [value] [name=value ...] [on "pattern"]``."""

    key: str
    value: Expr | None = None
    kwargs: tuple[Kwarg, ...] = ()
    on: Str | None = None
    span: Span | None = _span()  # span of the key


@dataclass(frozen=True)
class Train:
    settings: tuple[Setting, ...]
    span: Span | None = _span()


Statement = Union[Let, Block, Model, Data, Train, Setting]


@dataclass(frozen=True)
class Spec:
    statements: tuple[Statement, ...]
    file: str = field(default="<spec>", compare=False)
    source: str = field(default="", compare=False, repr=False)

    def of_type(self, cls: type) -> list:
        return [s for s in self.statements if isinstance(s, cls)]
