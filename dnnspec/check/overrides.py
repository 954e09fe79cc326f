"""Command-line overrides: ``--set KEY=VALUE`` edits the AST before checking, so an override
gets exactly the validation a value written in the file gets.

Keys:  ``train.KEY`` (``train.epochs=3``, ``train.optimizer=sgd(lr=0.1)``),
``train.KEY.PARAM`` (``train.optimizer.lr=0.01``, ``train.early_stopping.patience=2``),
``data.PARAM`` (``data.path="other.npz"``), ``let.NAME`` or just ``NAME`` for a `let` variable.

Each override is a one-line source of its own, named ``--set KEY=VALUE`` (as typed), so its
errors read like a file's: ``--set train.epochs=(:1:15: error: syntax error: ...`` with the text, a
caret under the column of KEY=VALUE and the tokens the parser expected. The value is parsed by
the spec's own parser (`parse_expr`), except that a parameter declared as a string (``str``: a
path, a label column) takes the text after ``=`` as is unless it is quoted, so
``--set data.path=/data/mnist.npz`` needs no shell-escaped quotes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

from ..errors import Diagnostics, SpecError, Span
from ..registry import REGISTRIES, suggest
from ..syntax import ast
from ..syntax.parser import parse_expr
from .settings import TOP_KEYS, TRAIN_KEYS
from .values import annotation_text

EXAMPLE = "e.g. --set train.epochs=3, --set train.optimizer.lr=0.01, --set data.path=other.npz"


def apply_overrides(spec: ast.Spec, overrides, diags: Diagnostics, sources: dict[str, str]) -> ast.Spec:
    for text in overrides:
        spec = _override(spec, text, diags, sources)
    return spec


@dataclass
class _Target:
    """What a key names: how to put a value there, and the value's declared type."""

    apply: Callable[[ast.Expr], ast.Spec]
    annotation: Any = None  # None: not declared (a `let`; a parameter of an entry the checker finds unknown)


def _override(spec: ast.Spec, text: str, diags: Diagnostics, sources: dict[str, str]) -> ast.Spec:
    file = f"--set {text}"
    sources[file] = text
    key_text, sep, value_text = text.partition("=")
    key = key_text.strip()
    if not sep or not key:
        diags.error("E055", f"override {text!r} is not KEY=VALUE",
                    Span(file, 1, len(text) + 1) if not sep else Span(file, 1, 1, 1, 2),
                    hint=("expected '=' and a value after the key" if not sep else "expected a key before '='")
                    + f", {EXAMPLE}")
        return spec
    at = len(key_text) - len(key_text.lstrip())  # where the key starts (0-based)
    key_span = Span(file, 1, at + 1, 1, at + 1 + len(key))
    parts = key.split(".")
    spans, col = [], at + 1
    for part in parts:
        spans.append(Span(file, 1, col, 1, col + len(part)))
        col += len(part) + 1
    target = _resolve(spec, parts, spans, key_span, diags)
    if target is None:
        return spec
    start = len(key_text) + 1  # the value's offset in `text`
    value = value_text.strip()
    if not value:
        what = f" ({annotation_text(target.annotation)})" if target.annotation is not None else ""
        diags.error("E055", f"override '{key}' has no value", Span(file, 1, len(text) + 1),
                    hint=f"expected a value after '='{what}, {EXAMPLE}")
        return spec
    if target.annotation is str and not value.startswith('"'):
        # a string parameter (a path): the text as typed, quotes optional
        first = start + len(value_text) - len(value_text.lstrip()) + 1
        expr = ast.Str(value, Span(file, 1, first, 1, first + len(value)))
    else:
        try:
            expr = parse_expr(text, file, start)
        except SpecError as e:
            diags.items.extend(e.diagnostics)
            return spec
    return target.apply(expr)


def _resolve(spec: ast.Spec, path: list[str], spans: list[Span], key_span: Span, diags: Diagnostics) -> _Target | None:
    """The place a key names, or None after an error at the key (before its value is read)."""
    head = path[0]
    lets = [s.name for s in spec.of_type(ast.Let)]
    if head == "train" and len(path) in (2, 3) and all(path):
        key, param = path[1], path[2] if len(path) == 3 else None
        try:
            annotation = _train_annotation(spec, key, param, spans, diags)
        except _BadKey:
            return None
        return _Target(lambda v: _set_train(spec, key, param, v, spans), annotation)
    if head == "data" and len(path) in (2, 3) and all(path):
        datas = spec.of_type(ast.Data)
        if not datas:
            diags.error("E055", "override of data, but the spec has no `data` declaration", spans[0])
            return None
        target = datas[0] if len(path) == 2 else next((d for d in datas if d.name == path[1]), None)
        if target is None:
            diags.error("E055", f"no data declaration named '{path[1]}'", spans[1],
                        hint="data declarations: " + ", ".join(d.name for d in datas))
            return None
        param = path[-1]
        try:
            annotation = _param_annotation("dataset", target.source.name, param, spans[-1], diags)
        except _BadKey:
            return None

        def apply(v: ast.Expr) -> ast.Spec:
            source = set_call_param(target.source, param, v, "dataset", spans[-1])
            return _replace_statement(spec, target, replace(target, source=source))

        return _Target(apply, annotation)
    if head == "pretrain" and len(path) == 2 and all(path):
        return _pretrain_target(spec, path[1], spans, diags)
    name = path[1] if head == "let" and len(path) == 2 else head if len(path) == 1 else None
    if name is not None and name in lets:
        let = next(s for s in spec.of_type(ast.Let) if s.name == name)
        return _Target(lambda v: _replace_statement(spec, let, replace(let, value=v)))
    best = suggest(".".join(path), ["train", "data", *lets]) if len(path) == 1 else None
    diags.error("E055", f"unknown override key '{'.'.join(path)}'" + (f" — did you mean '{best}'?" if best else ""),
                key_span,
                hint="use train.KEY, train.KEY.PARAM, data.PARAM, pretrain.OPTION or the name of a `let` variable"
                     + (f" ({', '.join(sorted(lets))})" if lets else ""))
    return None


def _pretrain_target(spec: ast.Spec, option: str, spans: list[Span], diags: Diagnostics) -> _Target | None:
    """`pretrain.OPTION`: an option of the spec's `pretrain` line (`pretrain.epochs=1`)."""
    line = next((s for s in spec.of_type(ast.Setting) if s.key == "pretrain"), None)
    if line is None:
        diags.error("E055", "override of pretrain, but the spec has no `pretrain` line", spans[0])
        return None
    options = TOP_KEYS["pretrain"].options
    if option not in options:
        try:
            _unknown(option, f"option '{option}' for 'pretrain'", list(options), "", spans[1], diags)
        except _BadKey:
            return None

    def apply(v: ast.Expr) -> ast.Spec:
        kwargs = [k for k in line.kwargs if k.name != option] + [ast.Kwarg(option, v, spans[1])]
        return _replace_statement(spec, line, replace(line, kwargs=tuple(kwargs)))

    return _Target(apply, options[option][0])


class _BadKey(Exception):
    """The key names nothing (already reported)."""


def _train_annotation(spec: ast.Spec, key: str, param: str | None, spans: list[Span], diags: Diagnostics) -> Any:
    """The declared type of `train.KEY` or `train.KEY.PARAM`: None where it cannot be known (the
    file names an unknown optimizer, say: the checker reports that); `_BadKey` after an error for
    a key or parameter that does not exist."""
    entry = TRAIN_KEYS.get(key)
    if entry is None:
        best = suggest(key, TRAIN_KEYS)
        diags.error("E050", f"unknown train setting '{key}'" + (f" — did you mean '{best}'?" if best else ""),
                    spans[1], hint=None if best else "known: " + ", ".join(TRAIN_KEYS))
        raise _BadKey
    if param is None:
        return entry.value
    kind = _key_kind(key)  # as `_set_setting_param`: the component's parameter, else an option
    if kind is not None:
        current = _setting(spec, key)
        v = current.value if current is not None else None
        name = v.name if isinstance(v, ast.Call) else v.id if isinstance(v, ast.Name) else str(entry.default)
        registry = REGISTRIES[kind]
        if name in registry and registry.get(name).param(param) is not None:
            return registry.get(name).param(param).type
    if param in entry.options:
        return entry.options[param][0]
    if kind is None:
        _unknown(param, f"option '{param}' for '{key}'", list(entry.options), f"'{key}' has no options", spans[2], diags)
    return _param_annotation(kind, name, param, spans[2], diags, list(entry.options))


def _param_annotation(kind: str, name: str, param: str, span: Span, diags: Diagnostics, options=()) -> Any:
    """The type of parameter `param` of registry entry `name` (None if the entry is unknown: the
    checker reports that); `_BadKey` after an error if the entry has no such parameter."""
    registry = REGISTRIES.get(kind)
    if registry is None or name not in registry:
        return None
    entry = registry.get(name)
    p = entry.param(param)
    if p is None:
        names = [q.name for q in entry.params] + list(options)
        _unknown(param, f"parameter '{param}' for {kind} '{entry.name}'", names,
                 f"{kind} '{entry.name}' takes no parameters", span, diags)
    return p.type


def _unknown(param: str, what: str, names: list[str], none: str, span: Span, diags: Diagnostics):
    best = suggest(param, names)
    hint = f"did you mean '{best}'?" if best else ("parameters: " + ", ".join(names) if names else none)
    diags.error("E021", f"unknown {what}", span, hint=hint)
    raise _BadKey


def _setting(spec: ast.Spec, key: str) -> ast.Setting | None:
    trains = spec.of_type(ast.Train)
    return next((s for s in trains[0].settings if s.key == key), None) if trains else None


def _replace_statement(spec: ast.Spec, old, new) -> ast.Spec:
    statements = tuple(new if s is old else s for s in spec.statements)
    return replace(spec, statements=statements)


def _set_train(spec: ast.Spec, key: str, param: str | None, value: ast.Expr, spans: list[Span]) -> ast.Spec:
    trains = spec.of_type(ast.Train)
    train = trains[0] if trains else ast.Train(())
    settings = list(train.settings)
    index = next((i for i, s in enumerate(settings) if s.key == key), None)
    # a setting the file lacks points at the override's key, so the checker's errors do too
    setting = settings[index] if index is not None else ast.Setting(key, span=spans[1])
    if param is None:
        setting = replace(setting, value=value)
    else:
        setting = _set_setting_param(setting, param, value, spans)
    if index is None:
        settings.append(setting)
    else:
        settings[index] = setting
    new_train = replace(train, settings=tuple(settings))
    if trains:
        return _replace_statement(spec, train, new_train)
    return replace(spec, statements=(*spec.statements, new_train))


def _key_kind(key: str) -> str | None:
    """The registry a train key's value lives in (from the settings table), so
    `train.optimizer.lr` edits the call's `lr`."""
    entry = TRAIN_KEYS.get(key)
    return getattr(entry.value, "kind", None) if entry is not None else None


def _set_setting_param(setting: ast.Setting, param: str, value: ast.Expr, spans: list[Span]) -> ast.Setting:
    kind = _key_kind(setting.key)
    v = setting.value
    if kind is not None and isinstance(v, (ast.Call, ast.Name)) and _has_param(kind, v, param):
        call = v if isinstance(v, ast.Call) else ast.Call(v.id, span=v.span)
        return replace(setting, value=set_call_param(call, param, value, kind, spans[2]))
    if kind is not None and v is None:  # the key was absent: start from its default entry
        call = ast.Call(str(TRAIN_KEYS[setting.key].default), span=spans[1])
        if _has_param(kind, call, param):
            return replace(setting, value=set_call_param(call, param, value, kind, spans[2]))
        if call.name in REGISTRIES[kind]:  # an option (`train.schedule.per=step`): keep the default value
            setting = replace(setting, value=ast.Name(call.name, span=spans[1]))
    kwargs = [k for k in setting.kwargs if k.name != param] + [ast.Kwarg(param, value, spans[2])]
    return replace(setting, kwargs=tuple(kwargs))


def _has_param(kind: str, v: ast.Call | ast.Name, param: str) -> bool:
    name = v.name if isinstance(v, ast.Call) else v.id
    registry = REGISTRIES.get(kind)
    return registry is not None and name in registry and registry.get(name).param(param) is not None


def set_call_param(call: ast.Call, param: str, value: ast.Expr, kind: str, span: Span | None = None) -> ast.Call:
    """Set one parameter of a call, replacing a positional argument if that is where it is.

    `span` is where a new keyword's name was written (the override's key)."""
    registry = REGISTRIES.get(kind)
    if registry is not None and call.name in registry:
        names = [p.name for p in registry.get(call.name).params]
        if param in names and names.index(param) < len(call.args):
            args = list(call.args)
            args[names.index(param)] = value
            return replace(call, args=tuple(args))
    kwargs = [k for k in call.kwargs if k.name != param] + [ast.Kwarg(param, value, span)]
    return replace(call, kwargs=tuple(kwargs))
