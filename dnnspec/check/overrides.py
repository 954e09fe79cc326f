"""Command-line overrides: ``--set KEY=VALUE`` edits the AST before checking, so an override
gets exactly the validation a value written in the file gets.

Keys:  ``train.KEY`` (``train.epochs=3``, ``train.optimizer=sgd(lr=0.1)``),
``train.KEY.PARAM`` (``train.optimizer.lr=0.01``, ``train.early_stopping.patience=2``),
``data.PARAM`` (``data.path="other.npz"``), ``let.NAME`` or just ``NAME`` for a `let` variable.
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import Diagnostics, SpecError, Span
from ..registry import REGISTRIES
from ..syntax import ast
from ..syntax.parser import parse_expr


def apply_overrides(spec: ast.Spec, overrides, diags: Diagnostics, sources: dict[str, str]) -> ast.Spec:
    for text in overrides:
        key, sep, value_text = text.partition("=")
        key = key.strip()
        file = f"--set {key}"
        sources[file] = value_text
        where = Span(file, 1, 1)
        if not sep or not key or not value_text.strip():
            diags.error("E055", f"override {text!r} is not KEY=VALUE", where)
            continue
        try:
            value = parse_expr(value_text, file)
        except SpecError as e:
            diags.items.extend(e.diagnostics)
            continue
        except Exception:  # lark's own errors for an expression that does not parse
            diags.error("E001", f"syntax error in the value of override {text!r}", where)
            continue
        new = _apply(spec, key.split("."), value, where, diags)
        if new is not None:
            spec = new
    return spec


def _apply(spec: ast.Spec, path: list[str], value: ast.Expr, where: Span, diags: Diagnostics) -> ast.Spec | None:
    head = path[0]
    lets = {s.name for s in spec.of_type(ast.Let)}
    if head == "train" and len(path) in (2, 3):
        return _set_train(spec, path[1], path[2] if len(path) == 3 else None, value)
    if head == "data" and len(path) in (2, 3):
        datas = spec.of_type(ast.Data)
        if not datas:
            diags.error("E055", "override of data, but the spec has no `data` declaration", where)
            return None
        target = datas[0] if len(path) == 2 else next((d for d in datas if d.name == path[1]), None)
        if target is None:
            diags.error("E055", f"no data declaration named '{path[1]}'", where)
            return None
        new = replace(target, source=set_call_param(target.source, path[-1], value, "dataset"))
        return _replace_statement(spec, target, new)
    name = path[1] if head == "let" and len(path) == 2 else head if len(path) == 1 else None
    if name is not None and name in lets:
        target = next(s for s in spec.of_type(ast.Let) if s.name == name)
        return _replace_statement(spec, target, replace(target, value=value))
    diags.error("E055", f"unknown override key '{'.'.join(path)}'", where,
                hint="use train.KEY, train.KEY.PARAM, data.PARAM or the name of a `let` variable"
                     + (f" ({', '.join(sorted(lets))})" if lets else ""))
    return None


def _replace_statement(spec: ast.Spec, old, new) -> ast.Spec:
    statements = tuple(new if s is old else s for s in spec.statements)
    return replace(spec, statements=statements)


def _set_train(spec: ast.Spec, key: str, param: str | None, value: ast.Expr) -> ast.Spec:
    trains = spec.of_type(ast.Train)
    train = trains[0] if trains else ast.Train(())
    settings = list(train.settings)
    index = next((i for i, s in enumerate(settings) if s.key == key), None)
    setting = settings[index] if index is not None else ast.Setting(key)
    if param is None:
        setting = replace(setting, value=value)
    else:
        setting = _set_setting_param(setting, param, value)
    if index is None:
        settings.append(setting)
    else:
        settings[index] = setting
    new_train = replace(train, settings=tuple(settings))
    if trains:
        return _replace_statement(spec, train, new_train)
    return replace(spec, statements=(*spec.statements, new_train))


# Which registry a train key's value lives in, so `train.optimizer.lr` edits the call's `lr`.
_KEY_KINDS = {"loss": "loss", "optimizer": "optimizer", "schedule": "schedule",
              "regularize": "regularizer", "constrain": "constraint"}


def _set_setting_param(setting: ast.Setting, param: str, value: ast.Expr) -> ast.Setting:
    kind = _KEY_KINDS.get(setting.key)
    v = setting.value
    if kind is not None and isinstance(v, (ast.Call, ast.Name)) and _has_param(kind, v, param):
        call = v if isinstance(v, ast.Call) else ast.Call(v.id, span=v.span)
        return replace(setting, value=set_call_param(call, param, value, kind))
    if kind is not None and v is None:  # the key was absent: start from its default entry
        from .settings import TRAIN_KEYS

        call = ast.Call(str(TRAIN_KEYS[setting.key].default))
        if _has_param(kind, call, param):
            return replace(setting, value=set_call_param(call, param, value, kind))
    kwargs = [k for k in setting.kwargs if k.name != param] + [ast.Kwarg(param, value)]
    return replace(setting, kwargs=tuple(kwargs))


def _has_param(kind: str, v: ast.Call | ast.Name, param: str) -> bool:
    name = v.name if isinstance(v, ast.Call) else v.id
    registry = REGISTRIES.get(kind)
    if registry is None or name not in registry:
        return False
    return registry.get(name).param(param) is not None


def set_call_param(call: ast.Call, param: str, value: ast.Expr, kind: str) -> ast.Call:
    """Set one parameter of a call, replacing a positional argument if that is where it is."""
    registry = REGISTRIES.get(kind)
    if registry is not None and call.name in registry:
        names = [p.name for p in registry.get(call.name).params]
        if param in names and names.index(param) < len(call.args):
            args = list(call.args)
            args[names.index(param)] = value
            return replace(call, args=tuple(args))
    kwargs = [k for k in call.kwargs if k.name != param] + [ast.Kwarg(param, value)]
    return replace(call, kwargs=tuple(kwargs))
