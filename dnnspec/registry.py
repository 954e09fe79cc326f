"""Named catalogues (layers, activations, initializers, optimizers, ...) and parameter types.

Every name a spec can mention resolves through a `Registry`. An entry is a class; its
``__init__`` signature *is* the parameter list the checker validates against: each parameter
is annotated with a type object (``int``, ``float``, ``bool``, ``str`` or one of `Float`,
`Int`, `Choice`, `Ref` below) and has a default unless it is required.

    @ACTIVATIONS.register("leaky_relu")
    class LeakyReLU(Activation):
        '''max(x, alpha*x) (Maas et al. 2013).'''
        def __init__(self, alpha: Float(ge=0) = 0.01): ...
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator

REQUIRED = inspect.Parameter.empty
INT64_MAX = 2**63 - 1  # the largest integer a spec can hold (dnnspec.syntax.limits.MAX_INT)


# ---------------------------------------------------------------- parameter types
@dataclass(frozen=True)
class Float:
    """A real number, optionally bounded; ints are accepted and converted."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def convert(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"expected a number, got {describe(value)}")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {value}")
        _check_bounds(self, value)
        return value

    def __str__(self) -> str:
        return "float" + _bounds_text(self)


@dataclass(frozen=True)
class Int:
    """An integer, optionally bounded; 3.0 is accepted as 3, 3.5 is an error."""

    ge: int | None = None
    gt: int | None = None
    le: int | None = None
    lt: int | None = None

    def convert(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"expected an integer, got {describe(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {value}")
        if isinstance(value, float) and not value.is_integer():
            raise TypeError(f"expected an integer, got {value!r}")
        value = int(value)
        if abs(value) > INT64_MAX:
            raise ValueError(f"must be a 64-bit integer (at most {INT64_MAX}), got {_num(value)}")
        _check_bounds(self, value)
        return value

    def __str__(self) -> str:
        return "int" + _bounds_text(self)


@dataclass(frozen=True)
class LayerName:
    """The scoped name of a layer, written out: an empty string names nothing (it is not "none")."""

    def convert(self, value: Any) -> str:
        name = convert_plain(str, value)
        if not name:
            raise ValueError('must name a layer, e.g. "dnn/hidden1", got an empty string')
        return name

    def __str__(self) -> str:
        return "layer name"


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of words, written bare (`mode=fan_in`) or quoted."""

    options: tuple[str, ...]

    def __init__(self, *options: str):
        object.__setattr__(self, "options", tuple(options))

    def convert(self, value: Any) -> str:
        word = value.name if isinstance(value, Symbol) else value
        if not isinstance(word, str):
            raise TypeError(f"expected one of {', '.join(self.options)}, got {describe(value)}")
        if word not in self.options:
            raise ValueError(f"expected one of {', '.join(self.options)}, got {word!r}" + _hint(word, self.options))
        return word

    def __str__(self) -> str:
        return "|".join(self.options)


@dataclass(frozen=True)
class Ref:
    """A reference to an entry of another registry, e.g. ``init: Ref("initializer")``.

    The checker resolves it to a `Component`; the plan instantiates it.
    """

    kind: str

    def __str__(self) -> str:
        return self.kind


@dataclass(frozen=True)
class Refs:
    """A list of entries of another registry, e.g. ``augment: Refs("augmentation")`` for
    ``augment=[shift(2), flip_horizontal]``; the checker resolves it to a tuple of `Component`s."""

    kind: str

    def __str__(self) -> str:
        return f"[{self.kind}, ...]"


@dataclass(frozen=True)
class Shape:
    """An image shape ``[height, width]`` or ``[height, width, channels]`` of positive integers
    (``[]``: none declared); converted to a tuple."""

    def convert(self, value: Any) -> tuple[int, ...]:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"expected a shape like [28, 28] or [32, 32, 3], got {describe(value)}")
        if len(value) not in (0, 2, 3):
            raise ValueError(f"must be [height, width] or [height, width, channels], got {len(value)} number{'s' * (len(value) != 1)}")
        out = tuple(Int(ge=1, le=1 << 16).convert(v) for v in value)
        if math.prod(out) > 1 << 26:
            raise ValueError(f"must hold at most {1 << 26:,} values per example, got {math.prod(out):,}")
        return out

    def __str__(self) -> str:
        return "[height, width(, channels)]"


@dataclass(frozen=True)
class Symbol:
    """A bare word in a spec that is not a `let` variable (`relu`, `val_loss`)."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Component:
    """A checked reference to a registry entry with its converted arguments."""

    kind: str  # registry kind, e.g. "initializer"
    name: str  # canonical entry name, e.g. "he_normal"
    args: tuple[tuple[str, Any], ...] = ()

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.args)

    def build(self) -> Any:
        """Instantiate the entry, building nested components first."""
        entry = REGISTRIES[self.kind].get(self.name)
        kwargs = {k: (v.build() if isinstance(v, Component) else v) for k, v in self.args}
        return entry.cls(**kwargs)

    def __str__(self) -> str:
        if not self.args:
            return self.name
        return f"{self.name}(" + ", ".join(f"{k}={v}" for k, v in self.args) + ")"


def _check_bounds(t: Float | Int, v: float) -> None:
    for attr, ok, word in (
        ("ge", lambda b: v >= b, ">="),
        ("gt", lambda b: v > b, ">"),
        ("le", lambda b: v <= b, "<="),
        ("lt", lambda b: v < b, "<"),
    ):
        bound = getattr(t, attr)
        if bound is not None and not ok(bound):
            raise ValueError(f"must be {word} {_num(bound)}, got {_num(v)}")


def _num(v: float) -> str:
    """A number as a user wrote it: 1000000000 stays an integer, 0.5 stays 0.5."""
    if isinstance(v, int) and abs(v) > 1e15:
        return f"{float(v):g}" if abs(v) < 1e300 else f"{str(v)[:6]}...({len(str(abs(v)))} digits)"
    return str(int(v)) if math.isfinite(v) and float(v).is_integer() and abs(v) < 1e15 else f"{v:g}"


def _bounds_text(t: Float | Int) -> str:
    lo = f"[{t.ge:g}" if t.ge is not None else f"({t.gt:g}" if t.gt is not None else ""
    hi = f"{t.le:g}]" if t.le is not None else f"{t.lt:g})" if t.lt is not None else ""
    if not lo and not hi:
        return ""
    return f" in {lo or '(-inf'}, {hi or 'inf)'}"


def describe(value: Any) -> str:
    """Human description of a spec value, for error messages."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"number {_num(value)}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, Symbol):
        return f"name '{value.name}'"
    return type(value).__name__


# "Did you mean" costs a string comparison per candidate: one check spends at most
# SUGGEST_BUDGET of them (a hostile spec can ask thousands of times over thousands of names),
# and a word is compared with at most MAX_SUGGEST_CANDIDATES candidates.
SUGGEST_BUDGET = 5_000  # well under a second at worst (names alike enough for the full comparison)
MAX_SUGGEST_CANDIDATES = 1_000
_budget: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("suggest_budget", default=None)


@contextlib.contextmanager
def suggestion_budget(comparisons: int = SUGGEST_BUDGET) -> Iterator[None]:
    """Within the block, `suggest` compares at most this many candidates in all."""
    token = _budget.set([comparisons])
    try:
        yield
    finally:
        _budget.reset(token)


def suggest(word: str, candidates) -> str | None:
    """The closest candidate to a misspelt word, or None (also when the budget is spent)."""
    candidates = list(candidates)
    if len(candidates) > MAX_SUGGEST_CANDIDATES or len(word) > 200:
        return None
    budget = _budget.get()
    if budget is not None:
        if budget[0] < len(candidates):
            return None
        budget[0] -= len(candidates)
    hits = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return hits[0] if hits else None


def _hint(word: str, candidates) -> str:
    best = suggest(word, candidates)
    return f" — did you mean '{best}'?" if best else ""


def type_text(annotation: Any) -> str:
    """A parameter type as a user reads it: `bool`, `float in [0, 1)`, `relu|elu`, `initializer`."""
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation)


def plural(word: str) -> str:
    """`layer` -> `layers`, `loss` -> `losses` (the catalogue's headings)."""
    return word + ("es" if word.endswith(("s", "x", "ch", "sh")) else "s")


def convert_plain(annotation: Any, value: Any) -> Any:
    """Convert a value for a plain annotation (bool, str, int, float, or a type object)."""
    if hasattr(annotation, "convert"):
        return annotation.convert(value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise TypeError(f"expected true or false, got {describe(value)}")
        return value
    if annotation is str:
        if isinstance(value, Symbol):
            return value.name
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {describe(value)}")
        return value
    if annotation is int:
        return Int().convert(value)
    if annotation is float:
        return Float().convert(value)
    if annotation is REQUIRED or annotation is Any:
        return value
    raise TypeError(f"unsupported parameter annotation {annotation!r}")


# ---------------------------------------------------------------- registry
@dataclass(frozen=True)
class Param:
    name: str
    type: Any
    default: Any  # REQUIRED when the parameter must be given

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True)
class Entry:
    name: str
    cls: type
    aliases: tuple[str, ...]
    params: tuple[Param, ...]

    @property
    def doc(self) -> str:
        return (inspect.getdoc(self.cls) or "").split("\n")[0]

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


class Registry:
    """A catalogue of named entries of one kind; names and aliases resolve to one entry."""

    def __init__(self, kind: str, listed: bool = True):
        self.kind = kind
        self.listed = listed  # False: the plan's own entries, which a spec cannot name (not in --list)
        self._entries: dict[str, Entry] = {}
        self._names: dict[str, str] = {}  # name or alias -> canonical name
        REGISTRIES[kind] = self

    def register(self, name: str, *aliases: str) -> Callable[[type], type]:
        def deco(cls: type) -> type:
            entry = Entry(name, cls, aliases, _signature(cls))
            for key in (name, *aliases):
                if key in self._names:
                    raise ValueError(f"{self.kind} '{key}' registered twice")
                self._names[key] = name
            self._entries[name] = entry
            cls.registered_name = name
            return cls

        return deco

    def __contains__(self, name: str) -> bool:
        return name in self._names

    def get(self, name: str) -> Entry:
        try:
            return self._entries[self._names[name]]
        except KeyError:
            raise KeyError(f"unknown {self.kind} '{name}'" + _hint(name, self._names)) from None

    def names(self) -> list[str]:
        """Canonical names, sorted."""
        return sorted(self._entries)

    def all_names(self) -> list[str]:
        """Canonical names and aliases."""
        return sorted(self._names)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def suggest(self, name: str) -> str | None:
        return suggest(name, self._names)


REGISTRIES: dict[str, Registry] = {}


def _signature(cls: type) -> tuple[Param, ...]:
    params = []
    for p in list(inspect.signature(cls.__init__, eval_str=True).parameters.values())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        params.append(Param(p.name, p.annotation, p.default))
    return tuple(params)
