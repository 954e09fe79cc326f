"""The checker: AST -> `Program`, or a `SpecError` listing every problem found.

Passes run in the order of `PASSES`; each reads and extends a `Context` and records
diagnostics instead of stopping, so one run reports all independent errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from .. import catalog
from ..errors import MAX_ERRORS, Diagnostic, Diagnostics, SpecError, TooManyErrors, UserError
from ..registry import suggestion_budget
from ..program import Augmentation, EarlyStopping, OpSpec, Pretrain, Program, Reuse, TrainConfig
from ..syntax import ast
from ..syntax.fmt import format_spec
from ..syntax.parser import parse
from .lints import LINTS
from .model import Expander, resolve_auto_init, stochastic_depth
from .overrides import apply_overrides
from .settings import TOP_KEYS, TRAIN_KEYS, SettingValue, check_settings
from .values import FAILED, Bound, Env, Invalid, evaluate, resolve_component

__all__ = ["check", "check_text", "check_file", "read_spec", "Program", "OpSpec", "data_shape_errors"]


@dataclass
class Context:
    spec: ast.Spec
    diags: Diagnostics
    env: Env = field(default_factory=dict)
    blocks: dict[str, ast.Block] = field(default_factory=dict)
    model: ast.Model | None = None
    expander: Expander | None = None
    train: dict[str, list[SettingValue]] = field(default_factory=dict)
    top: dict[str, list[SettingValue]] = field(default_factory=dict)
    program: Program | None = None


def _definitions(ctx: Context) -> None:
    """`let` values, block templates, and the single model / data / train statements."""
    from ..ops.base import ACTIVATIONS, LAYERS

    seen: dict[type, Any] = {}
    for st in ctx.spec.statements:
        if isinstance(st, ast.Let):
            if st.name in ctx.env:
                ctx.diags.error("E013", f"variable '{st.name}' is defined twice", st.span)
                continue
            try:
                ctx.env[st.name] = Bound(evaluate(st.value, ctx.env, ctx.diags))
            except Invalid:
                ctx.env[st.name] = Bound(FAILED)  # its uses are not errors of their own
        elif isinstance(st, ast.Block):
            if st.name in LAYERS or st.name in ACTIVATIONS:
                ctx.diags.error("E045", f"block '{st.name}' has the name of a built-in layer", st.span,
                                hint="choose another name")
            elif st.name in ctx.blocks:
                ctx.diags.error("E045", f"block '{st.name}' is defined twice", st.span)
            else:
                params = [p.name for p in st.params]
                for p in st.params:
                    if params.count(p.name) > 1:
                        ctx.diags.error("E045", f"parameter '{p.name}' of block '{st.name}' is declared twice", p.span)
                        break
                ctx.blocks[st.name] = st
        elif isinstance(st, (ast.Model, ast.Data, ast.Train)):
            word = {ast.Model: "model", ast.Data: "data", ast.Train: "train"}[type(st)]
            if type(st) in seen:
                ctx.diags.error("E046", f"a spec has one `{word}` declaration; this is a second one", st.span)
                continue
            seen[type(st)] = st
    ctx.model = seen.get(ast.Model)
    if ctx.model is None:
        ctx.diags.error("E041", "the spec declares no model", None,
                        hint="add `model NAME { input x[WIDTH] ... }`")


def _expand(ctx: Context) -> None:
    if ctx.model is None:
        return
    ex = Expander(ctx.blocks, ctx.env, ctx.diags)
    before = len(ctx.diags.errors)
    ex.model(ctx.model)
    if not ex.stopped and len(ctx.diags.errors) == before:  # blocks are only paired in a complete model
        stochastic_depth(ex.ops)
    resolve_auto_init(ex.ops, ctx.diags)
    ctx.expander = ex
    if ex.input is not None and not ex.ops and len(ctx.diags.errors) == before and not ex.skipped:
        ctx.diags.error("E041", f"model '{ctx.model.name}' has no layers", ctx.model.span)


def _training(ctx: Context) -> None:
    trains = ctx.spec.of_type(ast.Train)
    settings = trains[0].settings if trains else ()
    ctx.train = check_settings(settings, TRAIN_KEYS, "train", ctx.env, ctx.diags)
    ctx.top = check_settings(ctx.spec.of_type(ast.Setting), TOP_KEYS, "top-level", ctx.env, ctx.diags)


def _train_config(ctx: Context) -> TrainConfig:
    """TrainConfig from the settings table: each key's value and options land in the fields its
    `Key` names, so a new setting is one table entry and one TrainConfig field."""
    fields: dict[str, Any] = {}
    for key, spec in TRAIN_KEYS.items():
        given = ctx.train.get(key, [])
        into = spec.into or key
        if spec.repeat:
            fields[into] = [(s.value, s.pattern) for s in given]
            continue
        if spec.value is not None:
            kind = getattr(spec.value, "kind", None)
            default = resolve_component(kind, spec.default, None, ctx.diags) if kind else spec.default
            fields[into] = given[0].value if given else default
        options = given[0].options if given else {o: d for o, (_, d) in spec.options.items()}
        for option, name in spec.option_fields.items():
            fields[name] = options[option]
        if spec.value is None and spec.options and not spec.option_fields:  # a structured setting
            fields[into] = dict(options) if given else None
    es = fields["early_stopping"]
    if es is not None:
        fields["early_stopping"] = EarlyStopping(es["monitor"], _mode(es["mode"], es["monitor"]), es["patience"],
                                                 es["min_delta"], es["restore_best"])
    fields["best_mode"] = _mode(fields["best_mode"], fields["best"])
    fields["best"] = None if fields["best"] == "none" else fields["best"]
    return TrainConfig(**fields)


def _assemble(ctx: Context) -> None:
    ex = ctx.expander
    if ex is None or ex.input is None or ex.stopped:  # a model cut short would only add false errors
        return
    name, width, _ = ex.input
    program = Program(ctx.spec.file, ctx.model.name, name, width, ex.ops, _train_config(ctx))
    datas = ctx.spec.of_type(ast.Data)
    if datas:
        d = datas[0]
        try:
            call = evaluate(d.source, ctx.env, ctx.diags)
            program.data = resolve_component("dataset", call, d.source.span, ctx.diags)
            program.augment = _augmentation(program, call, ctx.diags)
        except Invalid:
            pass
    program.freeze = [(s.pattern, s.options["stats"]) for s in ctx.top.get("freeze", [])]
    program.trainable = [s.pattern for s in ctx.top.get("trainable", [])]
    program.reuse = [Reuse(s.value, s.options["scope"], s.options["from"], s.options["to"], s.span)
                     for s in ctx.top.get("reuse", [])]
    program.allow = [str(s.value).strip().upper() for s in ctx.top.get("allow", [])]
    for s in ctx.top.get("pretrain", []):
        o = s.options
        method = o["method"] if not isinstance(o["method"], str) else resolve_component(
            "pretrainer", o["method"], s.span, ctx.diags)
        program.pretrain = Pretrain(s.pattern, method, [], o["epochs"], o["batch"], o["lr"], o["momentum"],
                                    o["data"], o["checkpoint"] or None, s.span)
    program.setting_spans = {k: v[0].span for k, v in ctx.train.items() if v}
    ctx.program = program


def _augmentation(program: Program, call, diags) -> Augmentation | None:
    """The data's `augment=[...]` with its `image` shape; geometric augmentations need an image
    shape that holds exactly the input's width."""
    args = program.data.kwargs
    steps = args.get("augment", ())
    image = args.get("image", ())
    spans = {name: (value_span or name_span) for name, _, value_span, name_span in call.kwargs}
    image_span = spans.get("image")
    where = spans.get("augment", call.span)
    if image and image_span is not None and math.prod(image) != program.input_width:
        shape = "[" + ", ".join(map(str, image)) + "]"
        diags.error("E047", f"image={shape} holds {math.prod(image)} values per example but input "
                            f"'{program.input_name}' has width {program.input_width}", image_span)
    if not steps:
        return None
    geometric = [s.name for s in steps if s.build().geometric]
    if geometric and not image:
        diags.error("E025", f"augmentation '{geometric[0]}' moves pixels, so it needs the image shape: the data "
                            f"declares none", where, hint=f"add image=[height, width] to `{program.data.name}(...)`")
        raise Invalid
    return Augmentation(tuple(steps), tuple(image), where)


def _mode(mode: str, monitor: str) -> str:
    if mode != "auto":
        return mode
    return "max" if "accuracy" in monitor else "min"


def _patterns(ctx: Context) -> None:
    """Every scope pattern must match something; collections must name things that exist."""
    p = ctx.program
    if p is None:
        return
    names = p.variable_names()
    listing = ", ".join(names) if len(names) <= 12 else ", ".join(names[:12]) + f", ... ({len(names)} in all)"
    targets = [(pat, key) for key in ("regularize", "constrain", "lr_mult") for _, pat in getattr(p.train, key)]
    targets += [(pat, "freeze") for pat, _ in p.freeze] + [(pat, "trainable") for pat in p.trainable]
    for pat, key in targets:
        if not any(pat.match(n) for n in names):
            ctx.diags.error("E060", f"pattern {pat.text!r} of '{key}' matches no variable", pat.span,
                            hint=f"variables: {listing}")
    known = set(names) | {op.layer for op in p.ops} | {op.name for op in p.ops}
    known |= {p.input_name, "logits", "predictions", "loss", "accuracy"}
    for s in ctx.top.get("collection", []):
        for cname, expr in s.options.items():
            items = expr.items if isinstance(expr, ast.ListExpr) else (expr,)
            resolved = []
            for item in items:
                text = _path_text(item)
                if text is None:
                    ctx.diags.error("E061", "a collection lists names (x, dnn/hidden1/kernel) or strings",
                                    item.span)
                elif text not in known:
                    from ..registry import suggest

                    best = suggest(text, known)
                    ctx.diags.error("E061", f"collection '{cname}' names '{text}', which the model does not have"
                                    + (f" — did you mean '{best}'?" if best else ""), item.span)
                else:
                    resolved.append(text)
            if cname in p.collections:
                ctx.diags.error("E061", f"collection '{cname}' is defined twice", s.span)
            p.collections[cname] = resolved


def _path_text(e: ast.Expr) -> str | None:
    """`dnn/hidden1/kernel` parses as a division of names; read it back as a path."""
    if isinstance(e, ast.Str):
        return e.value
    if isinstance(e, ast.Name):
        return e.id
    if isinstance(e, ast.BinOp) and e.op == "/":
        left, right = _path_text(e.left), _path_text(e.right)
        return f"{left}/{right}" if left and right else None
    return None


def _pretraining(ctx: Context) -> None:
    """The layers a `pretrain` line names: dense layers with a bias (what is pretrained is a
    kernel and a hidden bias), bottom up; an RBM needs sigmoid units."""
    p = ctx.program
    if p is None or p.pretrain is None:
        return
    pre, ops = p.pretrain, p.ops
    matched = [i for i, op in enumerate(ops) if op.variables and any(pre.pattern.match(n) for n in op.variable_names())]
    if not matched:
        names = p.variable_names()
        listing = ", ".join(names) if len(names) <= 12 else ", ".join(names[:12]) + f", ... ({len(names)} in all)"
        ctx.diags.error("E060", f"pattern {pre.pattern.text!r} of 'pretrain' matches no variable", pre.pattern.span,
                        hint=f"variables: {listing}")
        return
    method = pre.method.build()
    output = max((i for i, op in enumerate(ops) if "kernel" in op.variables or op.component.kwargs.get("tied")),
                 default=None)  # the last layer with a kernel (its own, or a tied one)
    for i in matched:
        op = ops[i]
        if i == output:  # its units are the net's outputs, which the labels (or targets) train
            ctx.diags.error("E062", f"pretrain matches '{op.layer}', the output layer: greedy pretraining trains "
                                    "the hidden layers below it, and the output layer learns from the labels "
                                    "(or targets) in supervised training", pre.pattern.span or pre.span,
                            hint="narrow the pattern to the hidden layers, e.g. \"dnn/hidden\"")
            continue
        if op.kind != "dense" or "bias" not in op.variables or "kernel" not in op.variables:
            why = (f"it is a {op.kind} layer" if op.kind != "dense" else "it has no bias" if "bias" not in op.variables
                   else "its kernel is another layer's (tied)")
            ctx.diags.error("E062", f"pretrain matches '{op.layer}', which cannot be pretrained: {why}; only dense "
                                    "layers with a bias (a kernel and a hidden bias) are pretrained",
                            pre.pattern.span or pre.span,
                            hint="narrow the pattern to dense layers")
            continue
        after = ops[i + 1].kind if i + 1 < len(ops) and ops[i + 1].component.kind == "activation" else "linear"
        if method.needs_sigmoid and after != "sigmoid":
            ctx.diags.error("E062", f"pretrain method={pre.method.name} on '{op.layer}', whose units are {after}: "
                                    "contrastive divergence samples binary stochastic units, whose probability of "
                                    "being on is σ(x W + c), so an RBM layer must be a sigmoid layer", pre.span,
                            hint="use activation=sigmoid on that layer, or method=autoencoder")
            continue
        pre.layers.append(op.name)


def _tied(ctx: Context) -> None:
    """`dense(..., tied="L")`: L is an earlier dense layer with a kernel of its own, whose
    transpose fits this layer (L maps n -> m, this one m -> n)."""
    p = ctx.program
    if p is None:
        return
    layers = {op.name: (i, op) for i, op in enumerate(p.ops) if op.component.kind == "layer"}
    for i, op in enumerate(p.ops):
        source = op.component.kwargs.get("tied") if op.kind == "dense" else None
        if not source:
            continue
        if source not in layers:
            from ..registry import suggest

            best = suggest(source, layers)
            ctx.diags.error("E010", f"'{op.name}' is tied to '{source}', which is not a layer of the model"
                            + (f" — did you mean '{best}'?" if best else ""), op.span,
                            hint=None if best else "tied= names a dense layer by its scoped name, e.g. dnn/hidden1")
            continue
        j, target = layers[source]
        if target.kind != "dense" or "kernel" not in target.variables or j >= i:
            why = ("that is the layer itself" if j == i else "it comes after it" if j > i
                   else "it has no kernel of its own" if target.kind == "dense" else f"it is a {target.kind} layer")
            ctx.diags.error("E025", f"'{op.name}' cannot be tied to '{source}': {why}; tied= names an earlier "
                                    "dense layer, whose kernel this one uses transposed", op.span)
        elif (target.n_in, target.n_out) != (op.n_out, op.n_in):
            ctx.diags.error("E025", f"'{op.name}' ({op.n_in} -> {op.n_out}) cannot use the transpose of "
                                    f"'{source}''s kernel ({target.n_in} x {target.n_out}): a tied layer maps "
                                    f"{target.n_out} -> {target.n_in}", op.span)
        else:
            op.notes[:] = [n for n in op.notes if not n.startswith("init=")]  # it initializes no kernel
            op.notes.append(f"kernel: {source}/kernel transposed (tied)")


def _reconstruction(ctx: Context) -> None:
    """`loss ... target=input`: the output reconstructs the input, and there is no accuracy."""
    p = ctx.program
    if p is None or p.train.target != "input":
        return
    span = p.setting_spans.get("loss")
    if p.ops and p.output_width != p.input_width and not ctx.expander.skipped:  # a skipped layer: already reported
        last = p.ops[-1]
        ctx.diags.error("E048", f"the last layer '{last.layer}' has width {p.output_width}, but loss target=input "
                                f"reconstructs input '{p.input_name}' of width {p.input_width}", last.span,
                        hint=f"make the last layer {p.input_width} wide")
    cfg = p.train
    uses = [("early_stopping", cfg.early_stopping.monitor)] if cfg.early_stopping else []
    uses += [("checkpoint", cfg.best)] if cfg.best else []
    for key, metric in uses:
        if "accuracy" in metric:
            ctx.diags.error("E025", f"{key} uses {metric}, but a reconstruction (loss target=input) has no accuracy",
                            p.setting_spans.get(key) or span, hint="monitor val_loss (or loss) instead")


def _data_shapes(ctx: Context) -> None:
    """Built-in datasets know their widths statically: check them against input and output."""
    p = ctx.program
    if p is None or p.data is None:
        return
    sig = p.data.build().signature()
    if sig is not None:
        ctx.diags.items.extend(data_shape_errors(p, *sig, input_span=ctx.expander.input[2]))


def data_shape_errors(program: Program, n_features: int, n_classes: int | None, label_width: int | None = None,
                      input_span=None, classes_note: str | None = None):
    """Diagnostics for a model whose input or output width does not fit the data.

    `classes_note` says where `n_classes` came from when the data declares no class count (the
    caller inferred it from the labels, leaving out stray ones: see `Splits.label_census`); it
    becomes E048's hint."""
    out = Diagnostics()
    if n_features != program.input_width:
        out.error("E047", f"input '{program.input_name}' has width {program.input_width} but the data has "
                          f"{n_features} features", input_span)
    if program.train.target == "input":  # the output reconstructs the input: its width is checked statically
        return out.items
    loss = program.train.loss.build()
    want = loss.out_width(n_classes, label_width)
    if want is not None and program.ops and want != program.output_width:
        last = program.ops[-1]
        out.error("E048", f"the last layer '{last.layer}' has width {program.output_width} but "
                          f"{program.train.loss.name} on this data needs {want}", last.span, hint=classes_note)
    return out.items


def _lints(ctx: Context) -> None:
    from .lints import CODES

    for s in ctx.top.get("allow", []):
        if str(s.value).strip().upper() not in CODES:
            ctx.diags.error("E050", f"allow {s.value!r}: no lint has that code", s.span,
                            hint="codes: " + ", ".join(CODES))
    if ctx.program is not None:
        for lint in LINTS:
            lint(ctx.program, ctx.diags)


PASSES = (_definitions, _expand, _training, _assemble, _patterns, _tied, _pretraining, _reconstruction, _data_shapes,
          _lints)


def check(spec: ast.Spec, overrides: Sequence[str] = ()) -> Program:
    """Check a parsed spec (after applying `--set` overrides); raise SpecError on any error.

    Checking stops at MAX_ERRORS errors (the report says so); "did you mean" hints share one
    budget of comparisons (`registry.suggestion_budget`), so a hostile spec cannot make either
    slow."""
    catalog.load()
    diags = Diagnostics(limit=MAX_ERRORS)
    sources = {spec.file: spec.source}
    stopped = False
    with suggestion_budget():
        try:
            spec = apply_overrides(spec, overrides, diags, sources)
            ctx = Context(spec, diags)
            for run in PASSES:
                run(ctx)
        except TooManyErrors:
            stopped = True
    if diags.errors:
        raise SpecError(sorted(diags.items, key=_position), sources, stopped=stopped)
    program = ctx.program
    program.warnings = diags.warnings
    program.canonical = format_spec(spec)
    program.sources = sources
    return program


def _position(d) -> tuple:
    s = d.span
    return (0, "", 0, 0) if s is None else (1, s.file, s.line, s.col)


def check_text(text: str, file: str = "<spec>", overrides: Sequence[str] = ()) -> Program:
    """Parse and check a spec. Raises SpecError (a located report) or UserError, nothing else:
    the limits of `dnnspec.syntax.limits` and `model` keep recursion and memory bounded, and a
    RecursionError or MemoryError that still happens (a machine with very little memory or
    stack) becomes a UserError that says so."""
    try:
        return check(parse(text, file), overrides)
    except RecursionError:
        raise UserError(f"{file}: the spec is nested too deeply to check here") from None
    except MemoryError:
        raise UserError(f"{file}: out of memory while checking the spec") from None


def check_file(path, overrides: Sequence[str] = ()) -> Program:
    """Check the spec in a file (UTF-8, a byte order mark allowed); see `check_text`."""
    text = read_spec(path)
    return check_text(text, str(path), overrides)


def read_spec(path) -> str:
    """The text of a spec file: UTF-8 (a leading byte order mark is dropped), at most
    MAX_SOURCE_CHARS characters (read no further: a huge file is E003, not a MemoryError); a
    missing, unreadable or non-UTF-8 file is a UserError."""
    from pathlib import Path

    from ..syntax.limits import MAX_SOURCE_CHARS

    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read(MAX_SOURCE_CHARS + 1)
    except FileNotFoundError:
        raise UserError(f"{path}: no such spec file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, not a spec file") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read spec: {e.strerror or e}") from None
    if len(text) > MAX_SOURCE_CHARS:
        raise SpecError([Diagnostic("E003", f"the spec is longer than the limit of {MAX_SOURCE_CHARS:,} characters")],
                        {str(path): ""}, str(path))
    return text
