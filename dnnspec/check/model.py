"""Expanding a model body: blocks, scopes and repeats become a flat list of named ops with
inferred widths and declared variables (no arrays are allocated: only shapes)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import Diagnostics, Span
from ..ops.base import ACTIVATIONS, LAYERS, Var
from ..ops.residual import BLOCK_OPS, RESIDUAL
from ..program import OpSpec
from ..registry import Component, Int, suggest
from ..syntax import ast
from ..syntax.limits import MAX_NESTING
from .values import Bound, Env, Invalid, bind_arguments, blame, convert, evaluate, resolve_component


MAX_REPEAT = 100_000  # a hostile or mistyped `repeat 10**9` is an error, not a hang
MAX_PARAMETERS = 2**31  # 8 GiB of float32 weights: more is a mistake on the machines this targets
# Statements after expansion: every layer, activation, block instance, scope and repeat that
# `repeat` and blocks produce counts one. Checked before a repeat expands (from a lower bound of
# what its body gives) and while expanding, so `repeat 1000 { repeat 1000 { relu } }` is an error
# at once; `repeat 100000 { relu }` (the largest repeat) fits.
MAX_EXPANDED = 200_000


class _Stop(Exception):
    """Expansion stops: the model is too large (already reported)."""

INIT_FAMILIES = {"glorot": "glorot_uniform", "he": "he_normal", "lecun": "lecun_normal"}


class Expander:
    """Walks a model body with a scope prefix, a block-argument environment and name tables."""

    def __init__(self, blocks: dict[str, ast.Block], env: Env, diags: Diagnostics):
        self.blocks, self.env, self.diags = blocks, env, diags
        self.ops: list[OpSpec] = []
        self.input: tuple[str, int, Span | None] | None = None
        self.width: int | None = None
        self.used: dict[str, dict[str, Span | None]] = {}  # prefix -> names taken there
        self.next_auto: dict[tuple[str, str], int] = {}  # (prefix, base) -> the first number worth trying
        self.parameters = 0
        self.expanded = 0  # statements expanded so far (see MAX_EXPANDED)
        self.stopped = False  # expansion stopped at a limit
        self.skipped = 0  # lines skipped as invalid (an error of theirs, or a failed `let` they use)
        self._sizes: dict[int, int] = {}  # id(body) -> lower bound of its expansion (see `_size`)
        self._resolved: dict[tuple[int, int], tuple] = {}  # (id(line), id(env)) -> (env, what it means)
        self._shapes: dict[tuple[int, int], tuple] = {}  # (id(component), n_in) -> (component, n_out, vars, size)

    # ------------------------------------------------------------ naming
    def _claim(self, prefix: str, name: str, span: Span | None) -> bool:
        taken = self.used.setdefault(prefix, {})
        if name in taken:
            first = taken[name]
            where = f" (first at {first.line}:{first.col})" if first else ""
            scope = prefix.rstrip("/") or "the model"
            self.diags.error("E040", f"duplicate layer name '{name}' in {scope}{where}", span)
            return False
        taken[name] = span
        return True

    def _auto(self, prefix: str, base: str) -> str:
        """Keras-style: `base`, `base_1`, ... the first one free. Names are only ever added, so
        the search resumes where the last one for (prefix, base) ended: linear in all."""
        taken = self.used.setdefault(prefix, {})
        i = self.next_auto.get((prefix, base), 0)
        name = base if i == 0 else f"{base}_{i}"
        while name in taken:
            i += 1
            name = f"{base}_{i}"
        taken[name] = None
        self.next_auto[(prefix, base)] = i + 1
        return name

    # ------------------------------------------------------------ size
    def _size(self, items, blocks_open: tuple[str, ...] = ()) -> int:
        """A lower bound of the statements `items` expand to (see MAX_EXPANDED): each item counts
        one, a block instance adds its body, a repeat its body times its count where that is a
        literal or a `let` (else once). Memoized per body; nesting is bounded by MAX_NESTING."""
        key = id(items)
        if key in self._sizes:
            return self._sizes[key]
        total = 0
        if len(blocks_open) <= MAX_NESTING:
            for item in items:
                total += 1
                if isinstance(item, ast.Scope):
                    total += self._size(item.body, blocks_open + ("",))
                elif isinstance(item, ast.Repeat):
                    total += self._static_count(item.count) * self._size(item.body, blocks_open + ("",))
                elif isinstance(item, ast.Residual):
                    total += 1 + self._size(item.body, blocks_open + ("",))  # the add op counts too
                elif isinstance(item, ast.Layer) and item.kind in self.blocks and item.kind not in blocks_open:
                    total += self._size(self.blocks[item.kind].body, blocks_open + (item.kind,))
        self._sizes[key] = total
        return total

    def _static_count(self, expr: ast.Expr) -> int:
        """A repeat count known without the block arguments: a literal, or a `let`."""
        value = None
        if isinstance(expr, ast.Num):
            value = expr.value
        elif isinstance(expr, ast.Name) and expr.id in self.env:
            value = self.env[expr.id].value
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_REPEAT:
            return value
        return 1

    def _deeper(self, item, depth: int, detail: str = "") -> None:
        """Going into the body of `item`, one level below `depth`: at most MAX_NESTING levels
        (the parser bounds what is written inside each other; this, block instances in blocks)."""
        if depth + 1 > MAX_NESTING:
            self.diags.error("E002", f"blocks, scopes and repeats nested more than {MAX_NESTING} levels deep"
                             + detail, item.span, hint="flatten the nesting")
            raise Invalid

    def _count(self, span: Span | None, more: int = 1) -> None:
        """Count `more` expanded statements; past MAX_EXPANDED report it at `span` and stop."""
        self.expanded += more
        if self.expanded > MAX_EXPANDED:
            self.diags.error("E049", f"the model expands to more than {MAX_EXPANDED:,} layers, scopes and "
                             "repeats here (each one after `repeat` and blocks counts)", span,
                             hint="a smaller repeat count, or fewer layers in the repeated body")
            self.stopped = True
            raise _Stop

    # ------------------------------------------------------------ walking
    def model(self, model: ast.Model) -> None:
        try:
            self.body(model.body, "", self.env, "", (), 1)
        except _Stop:
            return
        if self.input is None and self.width is None:  # not yet reported by a layer before `input`
            self.diags.error("E041", f"model '{model.name}' has no input", model.span,
                             hint="start the model with `input x[WIDTH]`")

    def body(self, items, prefix: str, env: Env, suffix: str, stack: tuple[str, ...], depth: int) -> None:
        """Expand `items` at nesting level `depth` (the model body is 1; see MAX_NESTING)."""
        for item in items:
            self._count(item.span)
            try:
                if isinstance(item, ast.Input):
                    self._input(item, prefix, env)
                elif isinstance(item, ast.Scope):
                    self._deeper(item, depth)
                    name = item.name + suffix
                    self._claim(prefix, name, item.span)
                    self.body(item.body, f"{prefix}{name}/", env, "", stack, depth + 1)
                elif isinstance(item, ast.Repeat):
                    self._deeper(item, depth)
                    count = convert(Int(ge=1, le=MAX_REPEAT), evaluate(item.count, env, self.diags),
                                    blame(item.count, env), self.diags, "repeat count")
                    if not item.body:
                        continue
                    size = count * self._size(item.body, stack)
                    if self.expanded + size > MAX_EXPANDED:  # before expanding anything
                        self.diags.error("E049", f"this repeat expands the model to at least {self.expanded + size:,} "
                                         f"layers, scopes and repeats, more than {MAX_EXPANDED:,}",
                                         blame(item.count, env) or item.span,
                                         hint="a smaller repeat count, or fewer layers in the repeated body")
                        self.stopped = True
                        raise _Stop
                    for i in range(1, count + 1):
                        self.body(item.body, prefix, env, f"{suffix}{i}", stack, depth + 1)
                elif isinstance(item, ast.Residual):
                    self._residual(item, prefix, env, suffix, stack, depth)
                elif isinstance(item, ast.Layer):
                    self._layer(item, prefix, env, suffix, stack, depth)
            except Invalid:
                self.skipped += 1

    def _input(self, item: ast.Input, prefix: str, env: Env) -> None:
        if self.input is not None or self.ops or prefix:
            self.diags.error("E042", "`input` must come once, first, outside any scope", item.span)
            return
        width = convert(Int(ge=1), evaluate(item.width, env, self.diags), blame(item.width, env),
                        self.diags, "input width")
        self.input = (item.name, width, item.width.span or item.span)
        self.width = width

    def _need_input(self, span: Span | None) -> None:
        if self.width is None:
            if self.input is None:
                self.diags.error("E041", "a layer comes before the model's `input`", span,
                                 hint="start the model with `input x[WIDTH]`")
                self.width = -1  # report this once
            raise Invalid

    def _residual(self, item: ast.Residual, prefix: str, env: Env, suffix: str, stack, depth: int) -> None:
        """`residual [name](options) { body }`: an opening op, the body scoped under the block's
        name, and the closing add (with a projection kernel when asked). The survival
        probability is the block's p_L here; `stochastic_depth` applies the decay once all
        blocks are known."""
        self._need_input(item.span)
        self._deeper(item, depth)
        args = tuple(evaluate(a, env, self.diags) for a in item.args)
        spans = tuple(blame(a, env) for a in item.args)
        kwargs = tuple((k.name, evaluate(k.value, env, self.diags), blame(k.value, env), k.span)
                       for k in item.kwargs)
        bound = bind_arguments(RESIDUAL.get("residual"), args, spans, kwargs, item.span, "residual block", self.diags)
        if bound is None:
            raise Invalid
        if item.name is not None:
            name = item.name + suffix
            if not self._claim(prefix, name, item.name_span):
                raise Invalid
        else:
            name = self._auto(prefix, "residual")
        scope = f"{prefix}{name}/"
        end = "projection" if bound["projection"] else "add"
        self._claim(scope, end, item.span)  # the closing op's name: a body layer of that name is a duplicate
        n_skip, first, skipped = self.width, len(self.ops), self.skipped
        begin = Component(RESIDUAL.kind, "residual", (("survival", bound["survival"]), ("decay", bound["decay"])))
        self._add(begin, prefix + name, item.span)
        self.body(item.body, scope, env, "", stack, depth + 1)
        if self.skipped != skipped or self.width is None:  # the body's errors are reported already
            raise Invalid
        if len(self.ops) == first + 1:
            self.diags.error("E041", "a residual block with no layers", item.span,
                             hint="put the layers of the branch between the braces")
            raise Invalid
        if self.width != n_skip and not bound["projection"]:
            self.diags.error("E026", f"the residual block's body maps width {n_skip} to {self.width}, so its input "
                             "cannot be added to its output", item.span,
                             hint="add projection=true (a learned linear map of the input), or make the last layer "
                                  f"of the body {n_skip} wide")
            self.width = n_skip  # what the block would give: later lines are checked against it
            raise Invalid
        self._count(item.span)  # the closing op counts as a statement, as `_size` says
        args = (("skip", n_skip), ("survival", bound["survival"]))
        if bound["projection"]:  # the kernel's init (auto: chosen by the activation after the block)
            args += (("projection", True), ("init", bound["init"]))
        self._add(Component(BLOCK_OPS.kind, "residual_add", args), scope + end, item.span)
        self.ops[-1].layer = scope + end
        self.ops[-1].notes.append(f"adds the block's input ({n_skip} wide)" if not bound["projection"] else
                                  f"adds the block's input projected {n_skip} → {self.width} (no bias)")

    def _layer(self, item: ast.Layer, prefix: str, env: Env, suffix: str, stack, depth: int) -> None:
        self._need_input(item.span)
        # What a line means depends only on the line and its environment, so a line a repeat
        # expands 100,000 times is evaluated and bound once (`env` is kept in the entry: its id
        # cannot be reused while the cache holds it). Lines with errors are not cached.
        key = (id(item), id(env))
        hit = self._resolved.get(key)
        if hit is None:
            before = self.diags.count
            hit = (env, self._resolve(item, env))
            if self.diags.count == before:
                self._resolved[key] = hit
        resolved = hit[1]
        if isinstance(resolved, _Instance):
            return self._instance(resolved, item, prefix, suffix, stack, depth)
        entry_name, component, activation = resolved
        if item.name is not None:
            name = item.name + suffix
            if not self._claim(prefix, name, item.name_span):
                raise Invalid
        else:
            name = self._auto(prefix, entry_name)
        self._add(component, prefix + name, item.span)
        if activation is not None:
            self._add(activation, prefix + name, item.span)

    def _resolve(self, item: ast.Layer, env: Env):
        """A layer line's arguments evaluated and bound: (entry name, component, activation or
        None), or an `_Instance` of a block; Invalid after reporting an error."""
        args = tuple(evaluate(a, env, self.diags) for a in item.args)
        spans = tuple(blame(a, env) for a in item.args)
        kwargs = tuple((k.name, evaluate(k.value, env, self.diags), blame(k.value, env), k.span)
                       for k in item.kwargs)
        if item.kind in self.blocks:
            return self._bind_block(self.blocks[item.kind], item, args, spans, kwargs)
        registry = LAYERS if item.kind in LAYERS else ACTIVATIONS if item.kind in ACTIVATIONS else None
        if registry is None:
            known = [*LAYERS.all_names(), *ACTIVATIONS.all_names(), *self.blocks]
            best = suggest(item.kind, known)
            kind = "activation" if best in ACTIVATIONS else "layer"
            self.diags.error("E010", f"unknown {kind} '{item.kind}'" + (f" — did you mean '{best}'?" if best else ""),
                             item.span, hint=None if best else "see `dnnspec check --list`")
            raise Invalid
        entry = registry.get(item.kind)
        activation = None
        if getattr(entry.cls, "takes_activation", False):
            act = [k for k in kwargs if k[0] == "activation"]
            kwargs = tuple(k for k in kwargs if k[0] != "activation")
            if act:
                activation = resolve_component("activation", act[0][1], act[0][2], self.diags)
        bound = bind_arguments(entry, args, spans, kwargs, item.span, f"{registry.kind} '{entry.name}'", self.diags)
        if bound is None:
            raise Invalid
        return entry.name, Component(registry.kind, entry.name, tuple(bound.items())), activation

    def _add(self, component: Component, name: str, span: Span | None) -> None:
        key = (id(component), self.width)
        shapes = self._shapes.get(key)
        if shapes is None:
            op = _without_auto(component).build()  # shapes only; auto is resolved once all ops are known
            n_out = op.out_width(self.width)
            variables = op.variables(self.width) if n_out >= 1 else {}
            size = sum(math.prod(v.shape) for v in variables.values())
            shapes = self._shapes[key] = (component, n_out, variables, size)  # the component keeps its id
        _, n_out, variables, size = shapes
        n_in = self.width
        if n_out < 1:
            self.diags.error("E043", f"{component.name} gives no outputs for input width {n_in}", span)
            raise Invalid
        self.parameters += size
        if self.parameters > MAX_PARAMETERS:
            self.diags.error("E049", f"the model reaches {self.parameters:,} parameters here "
                             f"({self.parameters * 4 // 2**30:,} GiB of float32), more than {MAX_PARAMETERS:,}", span)
            self.width = None
            raise Invalid
        self.ops.append(OpSpec(name, name, component, n_in, n_out, dict(variables), span))  # Vars are frozen
        self.width = n_out

    def _bind_block(self, block: ast.Block, item: ast.Layer, args, spans, kwargs) -> _Instance:
        """A block instance's arguments matched to its parameters: the environment its body is
        expanded in; Invalid after reporting an error."""
        names = [p.name for p in block.params]
        what = f"block '{block.name}'"
        ok = True
        if len(args) > len(names):
            self.diags.error("E022", f"{what} takes {len(names)} argument{'s' * (len(names) != 1)}, got {len(args)}",
                             spans[len(names)] if len(spans) > len(names) else item.span)
            ok = False
        given: Env = {p.name: Bound(v, s) for p, v, s in zip(block.params, args, spans)}
        for k, v, s, name_span in kwargs:
            if k not in names:
                best = suggest(k, names)
                self.diags.error("E021", f"unknown parameter '{k}' for {what}", name_span,
                                 hint=f"did you mean '{best}'?" if best else f"parameters: {', '.join(names)}")
                ok = False
            elif k in given:
                self.diags.error("E023", f"parameter '{k}' of {what} given twice", name_span)
                ok = False
            else:
                given[k] = Bound(v, s)
        inner: Env = dict(self.env)  # lexical scope: `let` variables and the block's parameters
        for p in block.params:
            if p.name in given:
                inner[p.name] = given[p.name]
            elif p.default is None:
                self.diags.error("E024", f"{what} needs argument '{p.name}'", item.span)
                ok = False
            else:
                try:
                    inner[p.name] = Bound(evaluate(p.default, self.env, self.diags), p.default.span)
                except Invalid:
                    ok = False
        if not ok:
            raise Invalid
        return _Instance(block, inner)

    def _instance(self, resolved: _Instance, item: ast.Layer, prefix, suffix, stack, depth: int) -> None:
        block = resolved.block
        if block.name in stack:
            self.diags.error("E044", f"block '{block.name}' uses itself", item.span)
            raise Invalid
        self._deeper(item, depth, f" (block '{block.name}' used inside {len(stack)} other block instances)")
        name = item.name + suffix if item.name is not None else None
        if name is None:
            name = self._auto(prefix, block.name)
        elif not self._claim(prefix, name, item.name_span):
            raise Invalid
        first = len(self.ops)
        self.body(block.body, f"{prefix}{name}/", resolved.env, "", (*stack, block.name), depth + 1)
        for op in self.ops[first:]:  # a block instance is one row of the summary
            op.layer = prefix + name


@dataclass(frozen=True)
class _Instance:
    """A block instance line, bound: the block and the environment of its body."""

    block: ast.Block
    env: Env


def _without_auto(c: Component) -> Component:
    args = tuple((k, Component("initializer", "zeros") if isinstance(v, Component) and v.name == "auto" else v)
                 for k, v in c.args)
    return replace(c, args=args)


def stochastic_depth(ops: list[OpSpec]) -> None:
    """Each residual block's survival probability: with decay=linear, block l of the model's L
    blocks gets p_l = 1 - (l/L)(1 - p_L) (Huang et al. 2016, eq. 4), with decay=none p_L itself.
    Written into the block's two ops and noted for `dnnspec summary`."""
    number = {i: n for n, i in enumerate((i for i, op in enumerate(ops) if op.component.kind == RESIDUAL.kind), 1)}
    total, open_ = len(number), []
    for i, op in enumerate(ops):
        if op.component.kind == RESIDUAL.kind:
            open_.append(i)
        elif op.component.kind == BLOCK_OPS.kind:
            b = open_.pop()
            args = dict(ops[b].component.args)
            p_last = args["survival"]
            depth = number[b]
            p = 1.0 - depth / total * (1.0 - p_last) if args["decay"] == "linear" else p_last
            ops[b].component = replace(ops[b].component, args=(("survival", p),))
            op.component = replace(op.component, args=tuple((k, p if k == "survival" else v)
                                                            for k, v in op.component.args))
            if p_last < 1.0:
                linear = args["decay"] == "linear"
                how = f"linear decay from {p_last:g}, block {depth} of {total}" if linear else "no decay"
                ops[b].notes.append(f"stochastic depth: survival p={p:.4g} ({how})")
                op.notes.append(f"inference: input + {p:.4g}·body")


def resolve_auto_init(ops: list[OpSpec], diags: Diagnostics) -> None:
    """Replace init=auto by the initializer suited to the activation that follows the op.

    Glorot for sigmoid/tanh/softmax/linear, He for the ReLU family, LeCun for SELU (each
    activation declares its `init_family`). The choice is noted for `dnnspec summary`.
    """
    done: dict[tuple[int, str, int], tuple] = {}  # (id(component), chosen, n_in) -> (original, new, variables)
    for i, spec in enumerate(ops):
        auto = [k for k, v in spec.component.args if isinstance(v, Component) and v.name == "auto"]
        if not auto:
            continue
        activation, family = "linear", "glorot"
        for j in range(i + 1, len(ops)):  # not ops[i+1:]: a copy per op would be quadratic
            nxt = ops[j]
            if nxt.component.kind == "activation":
                cls = ACTIVATIONS.get(nxt.kind).cls
                activation, family = nxt.kind, getattr(cls, "init_family", "glorot")
                break
            if nxt.variables and any(v.role == "kernel" for v in nxt.variables.values()):
                break  # the next weight layer: this one's output is linear
        chosen = INIT_FAMILIES[family]
        for k in auto:
            spec.notes.append(f"{k}=auto → {chosen} (for {activation})")
        key = (id(spec.component), chosen, spec.n_in)
        if key not in done:  # the same line repeated: one component, one build
            args = dict(spec.component.args)
            for k in auto:
                args[k] = Component("initializer", chosen)
            component = replace(spec.component, args=tuple(args.items()))
            variables = OpSpec(spec.name, spec.layer, component, spec.n_in, spec.n_out, {}, None).build().variables(
                spec.n_in)
            done[key] = (spec.component, component, variables)  # the original keeps its id
        _, spec.component, variables = done[key]
        spec.variables = dict(variables)
