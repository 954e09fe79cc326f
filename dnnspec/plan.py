"""Compile a checked `Program` into a `Plan`: ordered ops over preallocated buffers, a variable
store with scoped names, the trainable set, and the frozen prefix.

Variables live in two flat float32 buffers — trainable ones contiguous in ``theta`` (so the
optimizer updates the whole network in a few large passes), the rest (frozen weights, moving
statistics) in ``fixed`` — and every name in ``variables`` is a view into one of them, so
``plan.variables[name][...] = w`` changes the model, and so does ``plan.variables[name] = w``
(`Variables` copies into the buffer, checking the shape). Gradients mirror ``theta`` in ``grad``.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass

import numpy as np

from .errors import UserError
from .losses import Reconstruction
from .program import Program
from .ops.base import Op, Var
from .registry import suggest
from .rng import stream

DTYPE = np.float32


@dataclass(frozen=True)
class VarInfo:
    name: str
    shape: tuple[int, ...]
    trainable: bool  # trained by the optimizer (declared trainable and not frozen)
    declared_trainable: bool  # the op's own flag (False for moving statistics)
    role: str
    init: str  # the initializer's name, for the record
    op: str


class UnknownVariable(UserError, KeyError):
    """A name that is not one of the model's variables (a KeyError too, as a mapping's should be)."""

    __str__ = Exception.__str__  # the message as written, not KeyError's repr of it


class Variables(MutableMapping):
    """Scoped name -> the model's float32 array, a view into its flat buffers.

    Reading gives the view (``variables[name][...] = w`` writes through it); assigning copies
    into it: ``variables[name] = w`` checks the shape and converts to the buffer's dtype, so the
    model (predict, training, save) sees the new values. The set of names is the spec's: an
    unknown name is refused, and so is deleting one."""

    __slots__ = ("_views",)

    def __init__(self, views: dict[str, np.ndarray]):
        self._views = views

    def _unknown(self, name) -> UnknownVariable:
        best = suggest(str(name), self._views)
        return UnknownVariable(f"the model has no variable {name!r}"
                               + (f" — did you mean {best!r}?" if best else f"; variables: {_listing(list(self._views))}"))

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self._views[name]
        except (KeyError, TypeError):
            raise self._unknown(name) from None

    def __setitem__(self, name: str, value) -> None:
        view = self[name]
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise UserError(f"variables[{name!r}] = ...: expected numbers, got an array of dtype {arr.dtype}")
        if arr.shape != view.shape:
            raise UserError(f"variables[{name!r}] = ...: shape {arr.shape} does not fit the variable's shape "
                            f"{view.shape}")
        view[...] = arr  # converted to the buffer's dtype (float32)

    def __delitem__(self, name: str) -> None:
        self[name]  # an unknown name says so
        raise UserError(f"cannot delete variable {name!r}: a model's variables are those its spec declares "
                        "(to zero it: variables[name][...] = 0)")

    def __contains__(self, name) -> bool:
        try:
            return name in self._views
        except TypeError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self._views)

    def __len__(self) -> int:
        return len(self._views)

    def __repr__(self) -> str:
        return "Variables({" + ", ".join(f"{n!r}: {v.dtype}{list(v.shape)}" for n, v in self._views.items()) + "})"


def _dropped(blocks: tuple[Op, ...]) -> bool:
    for b in blocks:
        if b.dropped:
            return True
    return False


def _listing(names: list[str]) -> str:
    return ", ".join(names) if len(names) <= 12 else ", ".join(names[:12]) + f", ... ({len(names)} in all)"


class Plan:
    """The executable form of a program."""

    def __init__(self, program: Program, dtype=DTYPE):
        self.program = program
        self.dtype = np.dtype(dtype)
        self.ops: list[Op] = [spec.build() for spec in program.ops]
        self.loss = program.train.loss.build()
        if program.train.target == "input":
            self.loss = Reconstruction(self.loss)
        self.infos: dict[str, VarInfo] = {}
        self._pair_blocks()
        self._declare()
        self._allocate_variables()
        self._mark_frozen()
        self.batch = 0  # rows the activation buffers hold
        self._penalized = [op for op in self.ops if getattr(op, "has_penalty", False)]

    # ------------------------------------------------------------ blocks
    def _pair_blocks(self) -> None:
        """Pair each block's opening and closing op (residual blocks: begin and add). `_inside[i]`
        holds the opening ops of the blocks whose body contains op i, so forward and backward
        skip op i while one of them is dropped (stochastic depth). `_block_start[i]` is where a
        cut before op i must move to: the opening op of the outermost block whose body or
        closing op is op i (the add needs the block's input), else i itself."""
        open_: list[int] = []
        inside: tuple[Op, ...] = ()  # one tuple per nesting, shared by the ops at that nesting
        self.blocks: list[tuple[int, int]] = []  # (opening, closing) op indices
        self._inside: list[tuple[Op, ...]] = []
        self._block_start = list(range(len(self.ops)))
        for i, op in enumerate(self.ops):
            if getattr(op, "closes_block", False):
                b = open_.pop()  # the checker emits them nested
                inside = inside[:-1]
                op.begin, self.ops[b].end = self.ops[b], op
                self.blocks.append((b, i))
                self._block_start[i] = open_[0] if open_ else b
            elif open_:
                self._block_start[i] = open_[0]
            self._inside.append(inside)
            if getattr(op, "opens_block", False):
                open_.append(i)
                inside = (*inside, op)

    # ------------------------------------------------------------ variables
    def _declare(self) -> None:
        self._vars: dict[str, Var] = {}
        for spec, op in zip(self.program.ops, self.ops):
            for local, var in op.variables(spec.n_in).items():
                name = f"{spec.name}/{local}"
                trainable = self.program.is_trainable(name, var.trainable)
                self._vars[name] = var
                self.infos[name] = VarInfo(name, tuple(var.shape), trainable, var.trainable, var.role,
                                           repr(var.init), spec.name)

    def _allocate_variables(self) -> None:
        sizes = {n: int(np.prod(i.shape)) for n, i in self.infos.items()}
        n_train = sum(s for n, s in sizes.items() if self.infos[n].trainable)
        n_fixed = sum(s for n, s in sizes.items() if not self.infos[n].trainable)
        self.theta = np.zeros(n_train, self.dtype)
        self.grad = np.zeros(n_train, self.dtype)
        self.fixed = np.zeros(n_fixed, self.dtype)
        self._fixed_grad = np.zeros(n_fixed, self.dtype)  # sink for gradients nobody uses
        views: dict[str, np.ndarray] = {}
        self.variables = Variables(views)
        self.grads: dict[str, np.ndarray] = {}
        self.offsets: dict[str, tuple[int, int]] = {}  # trainable name -> (start, stop) in theta
        pos = {True: 0, False: 0}
        for name, info in self.infos.items():
            buf, gbuf = (self.theta, self.grad) if info.trainable else (self.fixed, self._fixed_grad)
            start = pos[info.trainable]
            stop = start + sizes[name]
            pos[info.trainable] = stop
            views[name] = buf[start:stop].reshape(info.shape)
            self.grads[name] = gbuf[start:stop].reshape(info.shape)
            if info.trainable:
                self.offsets[name] = (start, stop)
        for spec, op in zip(self.program.ops, self.ops):
            names = {local: f"{spec.name}/{local}" for local in spec.variables}
            op.bind({k: self.variables[v] for k, v in names.items()}, {k: self.grads[v] for k, v in names.items()})
        self._tie()

    def _tie(self) -> None:
        """Bind each tied decoder (`dense(..., tied="L")`) to L's kernel, transposed (one variable,
        used twice). The decoder writes its share of the kernel's gradient into a buffer of its
        own, as every op overwrites its gradients; `backward` adds it after L's backward."""
        self._tied: list[tuple[np.ndarray, np.ndarray]] = []  # (shared kernel's gradient, decoder's share)
        self.tied_to: dict[int, str] = {}  # op index -> the shared kernel's name
        for i, op in enumerate(self.ops):
            source = getattr(op, "tied", "")
            if not source:
                continue
            kernel = f"{source}/kernel"
            share = np.zeros(self.variables[kernel].shape[::-1], self.dtype)
            op.vars["kernel"], op.grads["kernel"] = self.variables[kernel].T, share
            self.tied_to[i] = kernel
            if self.infos[kernel].trainable:
                self._tied.append((self.grads[kernel], share))

    def initialize(self, seed: int | None = None) -> None:
        """Fill every variable from its own stream derived from (seed, scoped name)."""
        seed = self.program.train.seed if seed is None else seed
        for name, var in self._vars.items():
            value = var.init(stream(seed, "init", name), tuple(var.shape), self.dtype)
            self.variables[name][...] = value

    def seed_ops(self, seed: int | None = None) -> None:
        """Give every random op (dropout, noise) its own stream."""
        seed = self.program.train.seed if seed is None else seed
        for op in self.ops:
            if op.random:
                op.rng = stream(seed, "op", op.name, type(op).registered_name)

    def _mark_frozen(self) -> None:
        """Ops whose variables are all frozen run in inference mode (a frozen batch norm keeps its
        statistics) unless the spec says `freeze ... stats=true`; backward stops at the lowest
        op with a trainable variable."""
        keep_stats = [p for p, stats in self.program.freeze if stats]
        self.inference_only = []
        for spec, op in zip(self.program.ops, self.ops):
            names = spec.variable_names()
            frozen = bool(names) and not any(self.infos[n].trainable for n in names)
            updates_stats = any(not self.infos[n].declared_trainable for n in names)
            if frozen and updates_stats and any(p.match(n) for p in keep_stats for n in names):
                frozen = False
            self.inference_only.append(frozen)
        trainable_ops = [i for i, spec in enumerate(self.program.ops)
                         if any(self.infos[n].trainable for n in spec.variable_names())
                         or (i in self.tied_to and self.infos[self.tied_to[i]].trainable)]
        self.first_trainable = trainable_ops[0] if trainable_ops else len(self.ops)
        for i, (spec, op) in enumerate(zip(self.program.ops, self.ops)):
            op.needs_grads = i in trainable_ops

    def cacheable_prefix(self) -> int:
        """How many leading ops compute the same output in training as at inference, so their
        output for the whole data set can be computed once (frozen-layer caching): the frozen
        prefix, if it holds no random op and no batch norm that still updates statistics, and the
        inputs are not augmented."""
        k = self.first_trainable
        if k >= len(self.ops) or self.program.augment is not None:  # augmented inputs change every batch
            return 0
        k = self._block_start[k]  # never between a block's begin and its add
        if k == 0:
            return 0
        for i in range(k):
            stateful = any(not self.infos[n].declared_trainable for n in self.program.ops[i].variable_names())
            if self.ops[i].random or (stateful and not self.inference_only[i]):
                return 0
        return k

    # ------------------------------------------------------------ buffers
    def allocate(self, batch: int) -> None:
        """Preallocate every op's buffers for batches of up to `batch` rows (once per size)."""
        if batch <= self.batch:
            return
        for spec, op in zip(self.program.ops, self.ops):
            op.allocate(batch, spec.n_in, self.dtype)
        self.batch = batch

    # ------------------------------------------------------------ execution
    def forward(self, x: np.ndarray, training: bool, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Run ops[start:stop] on x (start > 0 when x is a cached prefix output)."""
        self.allocate(len(x))
        steps = zip(self.ops[start:stop], self.inference_only[start:stop], self._inside[start:stop])
        for op, inference, inside in steps:
            if inside and _dropped(inside):
                continue  # the body of a block dropped in this batch: not run at all
            x = op.forward(x, training and not inference)
        return x

    def ran(self, i: int) -> bool:
        """Whether op i ran in the last forward pass (not in the body of a dropped block)."""
        return not (self._inside[i] and _dropped(self._inside[i]))

    def penalty(self) -> float:
        """Loss terms the ops add themselves (activity regularization), for the last forward."""
        return sum(op.penalty() for op in self._penalized) if self._penalized else 0.0

    def backward(self, dz: np.ndarray) -> None:
        """Back-propagate dL/dz down to the lowest trainable op and no further."""
        stop = self.first_trainable
        for i in range(len(self.ops) - 1, stop - 1, -1):
            op = self.ops[i]
            if not self.ran(i):  # not run forward: its gradients are zero
                for g in op.grads.values():
                    g.fill(0.0)
                continue
            dz = op.backward(dz, need_dx=i > stop)
        for grad, share in self._tied:  # a tied kernel's gradient: the encoder's use plus the decoder's
            np.add(grad, share.T, out=grad)

    @property
    def trainable_names(self) -> list[str]:
        return [n for n, i in self.infos.items() if i.trainable]

    def describe(self) -> list[str]:
        """The op list, one line per op, for `dnnspec plan`."""
        lines = []
        for i, (spec, op) in enumerate(zip(self.program.ops, self.ops)):
            flags = []
            if self.inference_only[i]:
                flags.append("frozen")
            if i < self.first_trainable:
                flags.append("no backward")
            lines.append(f"{i:>3}  {spec.name:<28} {op.describe():<32} {spec.n_in:>5} -> {spec.n_out:<5}"
                         + ("  [" + ", ".join(flags) + "]" if flags else ""))
        return lines
