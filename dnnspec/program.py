"""The compiled program: the meeting point of the checker (which produces it) and the numeric
side (plan, training, checkpoints, interchange), which consume it.

A leaf: plain data (components, widths, patterns), no arrays, nothing from `check/` or
`syntax/`, so importing the runtime never loads the parser. Scope patterns and collection
membership are defined here once, for the checker, the runtime and the checkpoint tools alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from .errors import Diagnostic, Span, UserError
from .registry import Component


# ---------------------------------------------------------------- scope patterns
class PatternError(UserError):
    """A scope pattern or replacement is not a valid regular expression, or matches nothing."""


@dataclass(frozen=True)
class Pattern:
    """A scope pattern: a Python regular expression matched from the start of a name (TF1's
    `get_collection(scope=...)`), so `dnn/hidden[12]` matches `dnn/hidden1/kernel`; add `$` to
    anchor the end. The empty pattern matches everything."""

    text: str
    regex: re.Pattern
    span: Span | None = None

    def match(self, name: str) -> bool:
        return self.regex.match(name) is not None


def compile_pattern(pattern, what: str = "pattern", span: Span | None = None) -> Pattern:
    """The one pattern compiler: text (or a Pattern, or a compiled regex) -> Pattern.
    An invalid regular expression is a PatternError naming it."""
    if isinstance(pattern, Pattern):
        return pattern
    if isinstance(pattern, re.Pattern):
        return Pattern(pattern.pattern, pattern, span)
    text = pattern or ""
    try:
        return Pattern(text, re.compile(text), span)
    except re.error as e:
        raise PatternError(f"invalid {what} {text!r}: {e}") from None


# ---------------------------------------------------------------- collections
def member_of(variable: str, entry: str) -> bool:
    """A collection entry names a variable itself, or a layer or scope holding it."""
    return variable == entry or variable.startswith(entry + "/")


def builtin_collections(records: Iterable[tuple[str, bool, str]], regularized: Iterable[Pattern] | None = None
                        ) -> dict[str, list[str]]:
    """The built-in collections over (name, trainable, role) records; regularization_targets
    where the regularize patterns are known (a model, not a checkpoint file alone)."""
    records = list(records)
    out = {
        "trainable_variables": [n for n, t, _ in records if t],
        "non_trainable_variables": [n for n, t, _ in records if not t],
        "moving_statistics": [n for n, _, r in records if r.startswith("moving")],
    }
    if regularized is not None:
        regularized = list(regularized)
        out["regularization_targets"] = [n for n, _, _ in records if any(p.match(n) for p in regularized)]
    return out


def collection_members(entries: Iterable[str], variables: dict[str, Any]) -> list[tuple[str, Any]]:
    """Expand collection entries in order: a variable gives itself, a layer or scope all its
    variables, anything else (an output name: x, logits, loss, accuracy) (name, None)."""
    out = []
    for entry in entries:
        members = [(v, a) for v, a in variables.items() if member_of(v, entry)]
        out.extend(members or [(entry, None)])
    return out


def collection(name: str, declared: dict[str, list[str]], builtin: dict[str, list[str]],
               variables: dict[str, Any], where: str = "") -> list[tuple[str, Any]]:
    """A named collection's members (declared ones shadow built-ins); KeyError lists the known."""
    entries = declared.get(name, builtin.get(name))
    if entries is None:
        known = ", ".join(sorted({*declared, *builtin}))
        raise KeyError(f"no collection '{name}'{where}; known: {known}")
    return collection_members(entries, variables)


def memberships(declared: dict[str, list[str]], variables: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """variable -> the declared collections it belongs to (what a checkpoint stores per variable)."""
    return {v: tuple(c for c, entries in declared.items() if any(member_of(v, e) for e in entries))
            for v in variables}


# ---------------------------------------------------------------- the program
@dataclass
class OpSpec:
    """One checked op: what to build, where it sits, its widths and variables."""

    name: str  # scoped op name; its variables are "<name>/<local>"
    layer: str  # the layer a user wrote (summary row)
    component: Component  # kind "layer" or "activation"
    n_in: int
    n_out: int
    variables: dict[str, Any]  # local name -> ops.base.Var
    span: Span | None
    notes: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.component.name

    def build(self):
        op = self.component.build()
        op.name = self.name
        return op

    def variable_names(self) -> list[str]:
        return [f"{self.name}/{local}" for local in self.variables]


@dataclass
class EarlyStopping:
    monitor: str
    mode: str  # "min" or "max"
    patience: int
    min_delta: float
    restore_best: bool


@dataclass
class TrainConfig:
    """The checked train block. Its fields are filled from the settings table in
    `check/settings.py` (one `Key` per setting, naming the field it sets)."""

    loss: Component
    optimizer: Component
    schedule: Component
    schedule_per: str = "epoch"
    warmup: int = 0
    warmup_start: float = 0.0
    epochs: int = 10
    batch: int = 32
    seed: int = 0
    validation: float = 0.0
    shuffle: bool = True
    early_stopping: EarlyStopping | None = None
    checkpoint: str | None = None
    best: str | None = None
    best_mode: str = "min"
    every_steps: int = 0
    snapshots: bool = False  # save <name>.snapshot<i>.h5 at the end of each schedule cycle
    cache_frozen: bool = True
    log: str | None = None
    regularize: list[tuple[Component, Pattern]] = field(default_factory=list)
    constrain: list[tuple[Component, Pattern]] = field(default_factory=list)
    lr_mult: list[tuple[float, Pattern]] = field(default_factory=list)
    average: str | None = None  # "ema" or "polyak"
    average_decay: float = 0.999
    average_start: int = 0
    clip_norm: float | None = None
    clip_value: float | None = None
    monitor: str | None = None  # "layers": per-layer statistics in the metrics log
    monitor_every: int = 100
    target: str = "label"  # "input": the loss compares the output with the input (an autoencoder)


@dataclass
class Reuse:
    path: str
    scope: str  # pattern over source names ("" = all)
    rename_from: str
    rename_to: str
    span: Span | None


@dataclass
class Pretrain:
    """The `pretrain` line: which dense layers (op names, bottom up), how, on what, where saved."""

    pattern: Pattern
    method: Component  # a "pretrainer" entry: rbm(k=...), autoencoder(loss=..., tied=..., noise=...)
    layers: list[str]
    epochs: int
    batch: int
    lr: float
    momentum: float
    data: str  # "unlabeled" (every training row, before train_limit) or "train"
    checkpoint: str | None
    span: Span | None = None


@dataclass
class Augmentation:
    """The data's augmentation (checked): what changes each training batch, the image shape."""

    steps: tuple[Component, ...]  # kind "augmentation", in the order written
    image: tuple[int, ...]  # (height, width[, channels]); () when the data declares none
    span: Span | None = None  # where `augment=` is written

    def __str__(self) -> str:
        return "[" + ", ".join(map(str, self.steps)) + "]"


@dataclass
class Program:
    file: str
    model_name: str
    input_name: str
    input_width: int
    ops: list[OpSpec]
    train: TrainConfig
    data: Component | None = None
    augment: Augmentation | None = None  # applied to training batches only (dnnspec.augment)
    freeze: list[tuple[Pattern, bool]] = field(default_factory=list)  # (pattern, keep updating BN stats)
    trainable: list[Pattern] = field(default_factory=list)
    reuse: list[Reuse] = field(default_factory=list)
    pretrain: Pretrain | None = None
    collections: dict[str, list[str]] = field(default_factory=dict)
    canonical: str = ""  # the effective spec (after overrides), formatted
    warnings: list[Diagnostic] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # file -> text, for rendering diagnostics
    allow: list[str] = field(default_factory=list)  # lint codes the spec silences (`allow "W108"`)
    setting_spans: dict[str, Span | None] = field(default_factory=dict)  # train key -> where it is written

    @property
    def output_width(self) -> int:
        return self.ops[-1].n_out if self.ops else self.input_width

    def variable_names(self) -> list[str]:
        return [n for op in self.ops for n in op.variable_names()]

    def is_trainable(self, name: str, declared: bool = True) -> bool:
        """Whether a variable is trained: declared trainable, not frozen, inside `trainable`."""
        if not declared:
            return False
        if any(p.match(name) for p, _ in self.freeze):
            return False
        if self.trainable and not any(p.match(name) for p in self.trainable):
            return False
        return True
