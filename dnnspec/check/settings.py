"""The keys a spec may set in its `train` block and at top level, with their types.

A setting is ``key [value] [option=value ...] [on "pattern"]``. Each key is one `Key` entry in a
table, so a new setting is one line here plus the code that uses it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

from ..errors import Diagnostics, Span
from ..program import Pattern, PatternError, compile_pattern
from ..registry import REQUIRED, Choice, Component, Float, Int, Ref, suggest, type_text
from ..syntax import ast
from ..syntax.limits import MAX_NESTING
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
    # Where a train key lands in TrainConfig: the field `into` (default: the key's name) takes the
    # value (a repeated key: the list of (value, pattern)); `option_fields` maps options to fields.
    into: str = ""
    option_fields: dict[str, str] = field(default_factory=dict)


TRAIN_KEYS: dict[str, Key] = {
    "loss": Key("the loss on the last layer's output; target=input compares it with the input itself (an "
                "autoencoder: no labels, no accuracy)", Ref("loss"), "softmax_cross_entropy",
                {"target": (Choice("label", "input"), "label")}, option_fields={"target": "target"}),
    "optimizer": Key("the optimizer", Ref("optimizer"), "adam"),
    "schedule": Key("learning-rate schedule, counted per step (batch) or per epoch", Ref("schedule"), "constant",
                    {"per": (Choice("epoch", "step"), "epoch"), "warmup": (Int(ge=0), 0),
                     "warmup_start": (Float(ge=0, le=1), 0.0)},
                    option_fields={"per": "schedule_per", "warmup": "warmup", "warmup_start": "warmup_start"}),
    "epochs": Key("number of passes over the training data", Int(ge=1), 10),
    "batch": Key("minibatch size", Int(ge=1), 32),
    "seed": Key("seed of every random stream (init, shuffle, dropout)", Int(ge=0), 0),
    "validation": Key("hold out this fraction (<1) or count (>=1) of the training data, if the data has no "
                      "validation split", Float(ge=0), 0.0),
    "shuffle": Key("reshuffle the training data every epoch", bool, True),
    "early_stopping": Key("stop when the monitored metric stops improving", None, None,
                          {"monitor": (Choice(*MONITORS), "val_loss"), "mode": (Choice("auto", "min", "max"), "auto"),
                           "patience": (Int(ge=0), 5), "min_delta": (Float(ge=0), 0.0),
                           "restore_best": (bool, True)},
                          into="early_stopping"),
    "checkpoint": Key("write an HDF5 checkpoint here each epoch; best= keeps the best epoch by that metric "
                      "(the latest state then goes to <name>.last.h5); every_steps=N also saves the latest state "
                      "every N updates", str, None,
                      {"best": (Choice("none", *MONITORS), "none"), "mode": (Choice("auto", "min", "max"), "auto"),
                       "every_steps": (Int(ge=0), 0), "snapshots": (bool, False)},
                      option_fields={"best": "best", "mode": "best_mode", "every_steps": "every_steps",
                                     "snapshots": "snapshots"}),
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
                   {"decay": (Float(gt=0, lt=1), 0.999), "start": (Int(ge=0), 0)},
                   option_fields={"decay": "average_decay", "start": "average_start"}),
    "monitor": Key("record per-layer statistics (activations, dead units, gradient norms) every N updates in "
                   "the metrics log", Choice("layers"), None, {"every": (Int(ge=1), 100)},
                   option_fields={"every": "monitor_every"}),
    "clip_norm": Key("clip gradients to this global L2 norm", Float(gt=0), None),
    "clip_value": Key("clip each gradient element to [-v, v]", Float(gt=0), None),
}

TOP_KEYS: dict[str, Key] = {
    "freeze": Key("do not train the variables matching the pattern", str, options={"stats": (bool, False)},
                  repeat=True),
    "trainable": Key("train only the variables matching the pattern", str, repeat=True),
    "reuse": Key("load matching variables from another checkpoint before training", str,
                 options={"scope": (str, ""), "from": (str, ""), "to": (str, "")}, repeat=True),
    "pretrain": Key("before training, train the matching dense layers one at a time, bottom up, without labels "
                    "(greedy layer-wise pretraining): method=rbm(k=1) (sigmoid layers, CD-k) or "
                    "method=autoencoder(loss=mse, tied=true, noise=0), with SGD at lr and momentum; data=unlabeled "
                    "uses every training row (before train_limit), data=train the training set; checkpoint= saves "
                    "the pretrained weights after each layer", str,
                    options={"method": (Ref("pretrainer"), "rbm"), "epochs": (Int(ge=1), 5),
                             "batch": (Int(ge=1), 20), "lr": (Float(gt=0), 0.1), "momentum": (Float(ge=0, lt=1), 0.0),
                             "data": (Choice("unlabeled", "train"), "unlabeled"), "checkpoint": (str, "")}),
    "collection": Key("name a list of variables, layers and outputs", None, repeat=True),
    "allow": Key("silence a lint by its code, e.g. allow \"W108\"", str, repeat=True),
}


@dataclass
class SettingValue:
    """A checked setting: its value, options and pattern."""

    key: str
    value: Any
    options: dict[str, Any]
    pattern: Pattern | None
    span: Span | None
    value_span: Span | None = None


def _value_text(annotation: Any) -> str:
    """What a key's value is, as a user reads it: `a string in quotes`, `int in [1, inf)`, `optimizer`."""
    return "a string in quotes" if annotation is str else type_text(annotation)


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
            diags.error("E052", f"'{s.key}' needs a value ({_value_text(key.value)})", s.span)
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
            pattern = checked_pattern(s.on.value, s.on.span, diags)
            ok = ok and pattern is not None
    elif s.on is not None:
        diags.error("E053", f"'{s.key}' takes no `on` pattern", s.on.span)
        ok = False
    if s.key in ("freeze", "trainable", "pretrain") and isinstance(value, str):
        pattern = checked_pattern(value, s.value.span, diags)
        ok = ok and pattern is not None
    if s.key == "reuse" and options.get("scope"):
        ok = checked_pattern(options["scope"], s.span, diags) is not None and ok
    if not ok:
        raise Invalid
    return SettingValue(s.key, value, options, pattern, s.span, s.value.span if s.value is not None else None)


def checked_pattern(text: str, span: Span | None, diags: Diagnostics) -> Pattern | None:
    """A scope pattern, or None with an E054 diagnostic at `span`. Python's regex parser
    recurses once per group, so a pattern nesting more groups than MAX_NESTING is refused before
    it is compiled (no RecursionError), and its warnings ("possible set difference") stay quiet."""
    depth = deepest = 0
    escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth -= 1
    if deepest > MAX_NESTING:
        diags.error("E054", f"invalid pattern: groups nested more than {MAX_NESTING} deep", span)
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return compile_pattern(text, span=span)
    except PatternError as e:
        diags.error("E054", str(e), span)
        return None
    except (RecursionError, OverflowError, ValueError) as e:  # what re.compile raises besides re.error
        diags.error("E054", f"invalid pattern {text[:60]!r}: {type(e).__name__}: {e}", span)
        return None
