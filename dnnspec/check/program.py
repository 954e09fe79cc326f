"""The checker's output: a fully resolved, typed description of a model and its training.

Everything here is plain data (components, widths, patterns); nothing allocates arrays. The
plan compiles a `Program`; the canonical text of the effective spec travels with it so a
checkpoint can record exactly what produced its weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Diagnostic, Span
from ..registry import Component
from .model import OpSpec
from .settings import Pattern


@dataclass
class EarlyStopping:
    monitor: str
    mode: str  # "min" or "max"
    patience: int
    min_delta: float
    restore_best: bool


@dataclass
class TrainConfig:
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


@dataclass
class Reuse:
    path: str
    scope: str  # pattern over source names ("" = all)
    rename_from: str
    rename_to: str
    span: Span | None


@dataclass
class Program:
    file: str
    model_name: str
    input_name: str
    input_width: int
    ops: list[OpSpec]
    train: TrainConfig
    data: Component | None = None
    data_name: str | None = None
    freeze: list[tuple[Pattern, bool]] = field(default_factory=list)  # (pattern, keep updating BN stats)
    trainable: list[Pattern] = field(default_factory=list)
    reuse: list[Reuse] = field(default_factory=list)
    collections: dict[str, list[str]] = field(default_factory=dict)
    canonical: str = ""  # the effective spec (after overrides), formatted
    warnings: list[Diagnostic] = field(default_factory=list)

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
