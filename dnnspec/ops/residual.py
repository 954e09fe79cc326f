"""Residual blocks (He et al. 2016) with stochastic depth (Huang et al. 2016) as two ops that
bracket the block's body in the plan's flat op list:

    residual (begin)   remembers its input x; in training draws b ~ Bernoulli(p) once per batch
    ... the body ...   the branch f(x)
    residual_add (end) y = s + b·f(x) in training, y = s + p·f(x) at inference; s = x, or x @ P
                       (a learned projection, no bias: He et al.'s option B) when widths differ

The plan pairs them (`begin.end`, `end.begin`) and skips the body entirely, forward and
backward, in a batch where b = 0: faster, and a batch norm inside a dropped block keeps its
moving statistics, as in Huang et al.'s implementation. Backward: the end op keeps the skip's
gradient (dy, or dy @ P.T with dP = s.T @ dy) and passes b·dy into the body; the begin op adds
the two. `survival` here is the block's own p_l (the checker applies the linear decay).
"""

from __future__ import annotations

import numpy as np

from ..pool import matmul
from ..registry import Choice, Float, Int, Ref, Registry
from .base import Op, Var

RESIDUAL = Registry("residual block")  # the options a `residual` line takes (in --list)
BLOCK_OPS = Registry("block op", listed=False)  # the plan's closing op, never written in a spec


@RESIDUAL.register("residual")
class ResidualBegin(Op):
    """`residual [NAME](...) { body }`: body(x) + x (or x @ projection); survival < 1 is stochastic depth."""

    # The op opens the block in the plan: it keeps x and, with survival p < 1, draws whether the
    # body runs in this batch. decay=linear makes p the last block's (Huang et al. eq. 4).

    opens_block = True  # the plan pairs it with the next unmatched closing op
    end: ResidualAdd | None = None
    dropped = False  # the block is skipped in this batch (b = 0)
    training = False

    def __init__(self, survival: Float(gt=0, le=1) = 1.0, decay: Choice("linear", "none") = "linear",
                 projection: bool = False, init: Ref("initializer") = "auto"):
        self.survival, self.decay, self.projection, self.init = survival, decay, projection, init
        self.random = survival < 1.0  # only a stochastic block draws (and has a stream to save)

    def allocate(self, batch, n_in, dtype=np.float32):
        super().allocate(batch, n_in, dtype)
        self._y = None  # its output is its input (per-layer monitors read the buffers of the ops)

    def forward(self, x, training):
        # The body reads x, and so does the end op (no op writes into its input), so no copy.
        self.x, self.training = x, training
        self.dropped = training and self.random and self.rng.random() >= self.survival
        return x

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        skip = self.end.dskip
        if self.dropped:  # the body did not run: only the skip path carries a gradient
            return skip
        return np.add(dy, skip, out=self._dx[: len(dy)])

    def describe(self):
        return "residual" + (f" p={self.survival:.4g}" if self.random else "")


@BLOCK_OPS.register("residual_add")
class ResidualAdd(Op):
    """Closes a residual block: y = skip + b·branch (training) or skip + p·branch (inference)."""

    closes_block = True
    begin: ResidualBegin | None = None
    dskip: np.ndarray | None = None  # dL/dx through the skip path, for the begin op
    n_in: int | None = None

    def __init__(self, skip: Int(ge=1), survival: Float(gt=0, le=1) = 1.0, projection: bool = False,
                 init: Ref("initializer") = "auto"):
        self.skip, self.survival, self.projection, self.init = skip, survival, projection, init

    def variables(self, n_in):
        self.n_in = n_in
        return {"kernel": Var((self.skip, n_in), self.init, True, "kernel")} if self.projection else {}

    def allocate(self, batch, n_in, dtype=np.float32):
        super().allocate(batch, n_in, dtype)
        self._ds = np.empty((batch, self.skip), dtype) if self.projection else None

    def forward(self, x, training):
        begin = self.begin
        s, y = begin.x, self._y[: len(x)]
        if self.projection:
            matmul(s, self.vars["kernel"], y)
        else:
            np.copyto(y, s)
        if begin.dropped:
            return y
        if begin.training or self.survival == 1.0:  # b = 1
            y += x
        else:  # inference: the branch's expectation, p·f(x)
            t = self._dx[: len(x)]  # free until backward
            np.multiply(x, self.survival, out=t)
            y += t
        return y

    def backward(self, dy, need_dx=True):
        begin = self.begin
        if self.projection:
            if self.needs_grads:
                matmul(begin.x.T, dy, self.grads["kernel"])
            self.dskip = matmul(dy, self.vars["kernel"].T, self._ds[: len(dy)])
        else:
            self.dskip = dy  # read by the begin op before the op above writes it again
        if not need_dx or begin.dropped:
            return None
        if begin.training or self.survival == 1.0:
            return dy
        return np.multiply(dy, self.survival, out=self._dx[: len(dy)])

    def describe(self):
        what = f"add, projection {self.skip}->{self.n_in}" if self.projection else "add"
        return what + (f" (inference: p={self.survival:.4g})" if self.survival < 1.0 else "")
