"""The keys a spec may set in its `train` block and at top level, with their types.

A setting is ``key [value] [option=value ...] [on "pattern"]``. Each key is one `Key` entry in a
table, so a new setting is one line here plus the code that uses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import Diagnostics, Span
from ..registry import REQUIRED, Choice, Component, Float, Int, Ref, suggest
from ..syntax import ast
from .values import Env, Invalid, blame, convert, evaluate

MONITORS = ("loss", "accuracy", "val_loss", "val_accuracy")


@dataclass(frozen=True)
class Key:
    doc: str
    value: Any = None  # annotation of the positional value; None: the key takes none
    default: Any = REQUIRED  # default of the value when the key is absent
    options: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # name -> (annotation, default)
    on: bool = False  # takes `on "pattern"`
    repeat: bool = False  # may appear more than once


TRAIN_KEYS: dict[str, Key] = {
    "loss": Key("the loss on the last layer's output", Ref("loss"), "softmax_cross_entropy"),
    "optimizer": Key("the optimizer", Ref("optimizer"), "adam"),
    "schedule": Key("learning-rate schedule, counted per step (batch) or per epoch", Ref("schedule"), "constant",
                    {"per": (Choice("epoch", "step"), "epoch"), "warmup": (Int(ge=0), 0),
                     "warmup_start": (Float(ge=0, le=1), 0.0)}),
    "epochs": Key("number of passes over the training data", Int(ge=1), 10),
    "batch": Key("minibatch size", Int(ge=1), 32),
    "seed": Key("seed of every random stream (init, shuffle, dropout)", Int(ge=0), 0),
    "validation": Key("hold out this fraction (<1) or count (>=1) of the training data, if the data has no "
                      "validation split", Float(ge=0), 0.0),
    "shuffle": Key("reshuffle the training data every epoch", bool, True),
    "early_stopping": Key("stop when the monitored metric stops improving", None, None,
                          {"monitor": (Choice(*MONITORS), "val_loss"), "mode": (Choice("auto", "min", "max"), "auto"),
                           "patience": (Int(ge=0), 5), "min_delta": (Float(ge=0), 0.0),
                           "restore_best": (bool, True)}),
    "checkpoint": Key("write an HDF5 checkpoint here each epoch; best= keeps the best epoch by that metric "
                      "(the latest state then goes to <name>.last.h5); every_steps=N also saves the latest state "
                      "every N updates", str, None,
                      {"best": (Choice("none", *MONITORS), "none"), "mode": (Choice("auto", "min", "max"), "auto"),
                       "every_steps": (Int(ge=0), 0), "snapshots": (bool, False)}),
    "cache_frozen": Key("compute the output of a frozen, deterministic prefix of the network once for the whole "
                        "data set and train the rest on it", bool, True),
    "log": Key("append per-epoch metrics (JSON lines) here; default: next to the checkpoint", str, None),
    "regularize": Key("add a weight penalty to the variables matching the pattern", Ref("regularizer"),
                      on=True, repeat=True),
    "constrain": Key("project the matching variables after every update", Ref("constraint"), on=True, repeat=True),
    "lr_mult": Key("multiply the learning rate of the matching variables (Caffe's lr_mult); the last "
                   "matching line wins", Float(ge=0), on=True, repeat=True),
    "average": Key("evaluate with an average of the weights: an exponential moving average (ema, "
                   "decay) or Polyak's running mean (polyak) from epoch `start`; training ends with the "
                   "averaged weights", Choice("ema", "polyak"), None,
                   {"decay": (Float(gt=0, lt=1), 0.999), "start": (Int(ge=0), 0)}),
    "clip_norm": Key("clip gradients to this global L2 norm", Float(gt=0), None),
    "clip_value": Key("clip each gradient element to [-v, v]", Float(gt=0), None),
}

TOP_KEYS: dict[str, Key] = {
    "freeze": Key("do not train the variables matching the pattern", str, options={"stats": (bool, False)},
                  repeat=True),
    "trainable": Key("train only the variables matching the pattern", str, repeat=True),
    "reuse": Key("load matching variables from another checkpoint before training", str,
                 options={"scope": (str, ""), "from": (str, ""), "to": (str, "")}, repeat=True),
    "collection": Key("name a list of variables, layers and outputs", None, repeat=True),
}


@dataclass(frozen=True)
class Pattern:
    text: str
    regex: re.Pattern
    span: Span | None

    def match(self, name: str) -> bool:
        return self.regex.match(name) is not None


@dataclass
class SettingValue:
    """A checked setting: its value, options and pattern."""

    key: str
    value: Any
    options: dict[str, Any]
    pattern: Pattern | None
    span: Span | None
    value_span: Span | None = None


def check_settings(settings, table: dict[str, Key], where: str, env: Env, diags: Diagnostics) -> dict[str, list[SettingValue]]:
    """Validate settings against a key table; returns key -> checked values (defaults filled)."""
    out: dict[str, list[SettingValue]] = {}
    for s in settings:
        key = table.get(s.key)
        if key is None:
            best = suggest(s.key, table)
            diags.error("E050", f"unknown {where} setting '{s.key}'" + (f" — did you mean '{best}'?" if best else ""),
                        s.span, hint=None if best else "known: " + ", ".join(table))
            continue
        if s.key in out and not key.repeat:
            first = out[s.key][0].span
            diags.error("E051", f"'{s.key}' is set twice" + (f" (first at {first.line}:{first.col})" if first else ""),
                        s.span)
            continue
        try:
            checked = _check_one(s, key, env, diags)
        except Invalid:
            continue
        out.setdefault(s.key, []).append(checked)
    return out


def _check_one(s: ast.Setting, key: Key, env: Env, diags: Diagnostics) -> SettingValue:
    ok = True
    value = None
    if key.value is None and s.value is not None and s.key != "collection":
        diags.error("E052", f"'{s.key}' takes no value, only options like name=value", s.value.span)
        ok = False
    elif key.value is not None:
        if s.value is None:
            diags.error("E052", f"'{s.key}' needs a value ({key.value})", s.span)
            ok = False
        else:
            try:
                value = convert(key.value, evaluate(s.value, env, diags), blame(s.value, env), diags, f"'{s.key}'")
            except Invalid:
                ok = False
    options: dict[str, Any] = {name: default for name, (_, default) in key.options.items()}
    if s.key == "collection":
        options = {}
        for k in s.kwargs:
            options[k.name] = k.value  # checked against the model later
    else:
        for k in s.kwargs:
            if k.name not in key.options:
                best = suggest(k.name, key.options)
                hint = f"did you mean '{best}'?" if best else (
                    "options: " + ", ".join(key.options) if key.options else f"'{s.key}' has no options")
                diags.error("E021", f"unknown option '{k.name}' for '{s.key}'", k.span, hint=hint)
                ok = False
                continue
            try:
                options[k.name] = convert(key.options[k.name][0], evaluate(k.value, env, diags), blame(k.value, env),
                                          diags, f"'{k.name}' of '{s.key}'")
            except Invalid:
                ok = False
    pattern = None
    if key.on:
        if s.on is None:
            diags.error("E053", f"'{s.key}' needs `on \"PATTERN\"` naming the variables it applies to", s.span)
            ok = False
        else:
            pattern = compile_pattern(s.on.value, s.on.span, diags)
            ok = ok and pattern is not None
    elif s.on is not None:
        diags.error("E053", f"'{s.key}' takes no `on` pattern", s.on.span)
        ok = False
    if s.key in ("freeze", "trainable") and isinstance(value, str):
        pattern = compile_pattern(value, s.value.span, diags)
        ok = ok and pattern is not None
    if s.key == "reuse" and options.get("scope"):
        ok = compile_pattern(options["scope"], s.span, diags) is not None and ok
    if not ok:
        raise Invalid
    return SettingValue(s.key, value, options, pattern, s.span, s.value.span if s.value is not None else None)


def compile_pattern(text: str, span: Span | None, diags: Diagnostics) -> Pattern | None:
    """A scope pattern: a Python regular expression matched from the start of a name."""
    try:
        return Pattern(text, re.compile(text), span)
    except re.error as e:
        diags.error("E054", f"invalid pattern {text!r}: {e}", span)
        return None


def value_of(settings: dict[str, list[SettingValue]], table: dict[str, Key], key: str) -> Any:
    """The checked value of a key, or its default (Ref defaults resolved by the caller)."""
    if key in settings:
        return settings[key][0].value
    return table[key].default


def default_component(kind: str, name: str) -> Component:
    from .values import resolve_component

    return resolve_component(kind, name, None, Diagnostics())
