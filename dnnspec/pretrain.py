"""Greedy layer-wise unsupervised pretraining (Hinton, Osindero & Teh 2006; Bengio et al. 2007).

The dense layers a `pretrain` line names are trained one at a time, bottom up, without labels:
each sees the inference-mode output of the layers below it (already pretrained) and learns as a
restricted Boltzmann machine (contrastive divergence, CD-k) or as a one-hidden-layer autoencoder.
Supervised training then starts from those weights.

One small class per method in a registry (like the optimizers); `Greedy` drives them and owns the
phase's state (layer, epoch, position inside the epoch, RNG streams, the method's own arrays:
visible bias, decoder, velocities), which `runstate` saves and restores for an exact resume.
Hot loops write into buffers allocated once per layer, in float32.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from .losses import LOSSES
from .ops.activations import Sigmoid
from .ops.base import Activation
from .plan import Plan
from .program import Pretrain
from .registry import Choice, Float, Int, Registry
from .rng import get_state, set_state, stream
from .train.loop import Diverged, prefix_outputs

PRETRAINERS = Registry("pretrainer")


class Method:
    """Trains one dense layer (kernel W [n_in, n_out], hidden bias c) on unlabeled inputs."""

    needs_sigmoid = False  # the layer's activation must be the logistic sigmoid (checked by the checker)

    def begin(self, W: np.ndarray, c: np.ndarray, act: Activation | None, rng: np.random.Generator,
              batch: int) -> None:
        """Bind the layer's variables (views: updates land in the model) and allocate buffers."""
        raise NotImplementedError

    def step(self, v: np.ndarray, lr: float, momentum: float) -> float:
        """One update on the minibatch v; returns its reconstruction error (before the update)."""
        raise NotImplementedError

    def arrays(self) -> dict[str, np.ndarray]:
        """The method's own state (visible bias, decoder, velocities), for checkpoints."""
        raise NotImplementedError


def _momentum_step(w: np.ndarray, u: np.ndarray, g: np.ndarray, scale: float, momentum: float) -> None:
    """u ← μ u + scale·g; w += u (Hinton's guide §9: the velocity carries the learning rate)."""
    u *= momentum
    g *= scale
    u += g
    w += u


@PRETRAINERS.register("rbm")
class RBM(Method):
    """Bernoulli RBM trained by contrastive divergence CD-k (Hinton 2002; "A Practical Guide to
    Training Restricted Boltzmann Machines", 2010).

    The variant (the guide's recommendations, §3): the data v0 are used as given (probabilities,
    e.g. pixel intensities in [0, 1]); the hidden states that drive the Gibbs chain are sampled
    (binary); visible reconstructions are probabilities; the final hidden statistics are the
    probabilities p(h_k | v_k). With h0 = σ(v0 W + c), v_k = σ(h_{k-1} W^T + b):

        ΔW = ε (v0^T p(h0) − v_k^T p(h_k)) / n,   Δb = ε mean(v0 − v_k),   Δc = ε mean(p(h0) − p(h_k))

    applied through a velocity (momentum). The reported error is mean((v0 − v_k)^2).
    """

    needs_sigmoid = True

    def __init__(self, k: Int(ge=1, le=1000) = 1):  # CD-1 to CD-25 in the literature; 10^9 would never finish a step
        self.k = k

    def begin(self, W, c, act, rng, batch):
        n_in, n_out = W.shape
        dt = W.dtype
        self.W, self.c, self.rng = W, c, rng
        self.b = np.zeros(n_in, dt)  # visible bias: only the RBM has one
        self.uW, self.ub, self.uc = np.zeros_like(W), np.zeros(n_in, dt), np.zeros(n_out, dt)
        # one per side: an activation's scratch buffer fits one width (else it would be reallocated each call)
        self.sigmoid_h, self.sigmoid_v = Sigmoid(), Sigmoid()
        self.ph0, self.h, self.phk, self.rand = (np.empty((batch, n_out), dt) for _ in range(4))
        self.pv, self.dv = np.empty((batch, n_in), dt), np.empty((batch, n_in), dt)
        self.gW, self.negW = np.empty_like(W), np.empty_like(W)
        self.gb, self.gc = np.empty(n_in, dt), np.empty(n_out, dt)
        self.ones = np.ones(batch, dt)

    def hidden(self, v: np.ndarray, out: np.ndarray) -> np.ndarray:
        """p(h=1 | v) = σ(v W + c)."""
        np.matmul(v, self.W, out=out)
        out += self.c
        self.sigmoid_h.f(out, out)
        return out

    def visible(self, h: np.ndarray, out: np.ndarray) -> np.ndarray:
        """p(v=1 | h) = σ(h W^T + b)."""
        np.matmul(h, self.W.T, out=out)
        out += self.b
        self.sigmoid_v.f(out, out)
        return out

    def sample(self, p: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Binary states: 1 where a uniform draw is below the probability."""
        u = self.rand[: len(p)]
        self.rng.random(out=u, dtype=u.dtype)
        np.less(u, p, out=out)
        return out

    def step(self, v, lr, momentum):
        m = len(v)
        ph0, h, phk, pv = self.hidden(v, self.ph0[:m]), self.h[:m], self.phk[:m], self.pv[:m]
        self.sample(ph0, h)
        for i in range(self.k):
            self.visible(h, pv)
            self.hidden(pv, phk)
            if i < self.k - 1:
                self.sample(phk, h)
        ones = self.ones[:m]
        np.matmul(v.T, ph0, out=self.gW)  # positive phase
        np.matmul(pv.T, phk, out=self.negW)  # negative phase
        self.gW -= self.negW
        dv = np.subtract(v, pv, out=self.dv[:m])
        np.matmul(ones, dv, out=self.gb)
        np.subtract(ph0, phk, out=phk)
        np.matmul(ones, phk, out=self.gc)
        error = float(np.vdot(dv, dv)) / dv.size
        scale = lr / m
        _momentum_step(self.W, self.uW, self.gW, scale, momentum)
        _momentum_step(self.b, self.ub, self.gb, scale, momentum)
        _momentum_step(self.c, self.uc, self.gc, scale, momentum)
        return error

    def free_energy(self, v: np.ndarray) -> np.ndarray:
        """F(v) = −v·b − Σ_j log(1 + e^{c_j + v W_j}) per row (float64; for tests and monitoring)."""
        x = v.astype(np.float64) @ self.W.astype(np.float64) + self.c
        return -(v.astype(np.float64) @ self.b) - np.logaddexp(0.0, x).sum(axis=1)

    def arrays(self):
        return {"visible_bias": self.b, "velocity_kernel": self.uW, "velocity_visible_bias": self.ub,
                "velocity_bias": self.uc}


@PRETRAINERS.register("autoencoder")
class Autoencoder(Method):
    """A one-hidden-layer autoencoder (Bengio et al. 2007; denoising: Vincent et al. 2008).

    Encoder h = f(x̃ W + c) with the layer's own activation f; decoder z = h W^T + b (tied, the
    default) or h V + b; the loss compares z (logits for sigmoid_cross_entropy, the output for
    mse) with the clean input x. x̃ is x with a fraction `noise` of its entries set to 0
    (masking noise). With tied weights the kernel's gradient is the sum of both uses:
    x̃^T (dh ⊙ f') + (dz^T h).

    The objective minimized is the loss summed over an example's features and averaged over the
    batch (Vincent et al. 2008), so `lr` has the scale it has for the RBM; the error reported is
    the loss's usual mean over all elements (what `loss ... target=input` reports).
    """

    def __init__(self, loss: Choice("mse", "sigmoid_cross_entropy") = "mse", tied: bool = True,
                 noise: Float(ge=0, lt=1) = 0.0):
        self.loss_name, self.tied, self.noise = loss, tied, noise

    def begin(self, W, c, act, rng, batch):
        n_in, n_out = W.shape
        dt = W.dtype
        self.W, self.c, self.act, self.rng = W, c, act, rng
        self.loss = LOSSES.get(self.loss_name).cls()
        self.b = np.zeros(n_in, dt)
        # an untied decoder starts as the encoder's transpose (a symmetric start, then free)
        self.V = None if self.tied else np.ascontiguousarray(W.T)
        self.uW, self.ub, self.uc = np.zeros_like(W), np.zeros(n_in, dt), np.zeros(n_out, dt)
        self.uV = None if self.tied else np.zeros_like(self.V)
        self.xt, self.mask, self.z, self.dx = (np.empty((batch, n_in), dt) for _ in range(4))
        self.a, self.h, self.dh, self.da = (np.empty((batch, n_out), dt) for _ in range(4))
        self.gW, self.gdec = np.empty_like(W), np.empty_like(W if self.tied else self.V)
        self.gb, self.gc = np.empty(n_in, dt), np.empty(n_out, dt)
        self.ones = np.ones(batch, dt)

    def decoder(self) -> np.ndarray:
        return self.W.T if self.tied else self.V

    def loss_and_gradients(self, x: np.ndarray) -> float:
        """Forward and backward on x; leaves dL/dW in gW (both uses, if tied), dL/dV in gdec,
        dL/db in gb, dL/dc in gc. Returns the loss."""
        m = len(x)
        xt = x
        if self.noise > 0:
            xt, mask = self.xt[:m], self.mask[:m]
            self.rng.random(out=mask, dtype=mask.dtype)
            np.greater_equal(mask, self.noise, out=mask)
            np.multiply(x, mask, out=xt)
        a, h = np.matmul(xt, self.W, out=self.a[:m]), self.h[:m]
        a += self.c
        if self.act is None:
            np.copyto(h, a)
        else:
            self.act.f(a, h)
        z = np.matmul(h, self.decoder(), out=self.z[:m])
        z += self.b
        loss = self.loss.forward(z, x)
        dz = self.loss.backward()
        ones = self.ones[:m]
        np.matmul(ones, dz, out=self.gb)
        dh = np.matmul(dz, self.decoder().T, out=self.dh[:m])
        if self.tied:
            np.matmul(dz.T, h, out=self.gdec)  # the decoder's use of W (n_in, n_out)
        else:
            np.matmul(h.T, dz, out=self.gdec)
        da = self.da[:m]
        if self.act is None:
            np.copyto(da, dh)
        else:
            self.act.df(a, h, dh, da)
        np.matmul(xt.T, da, out=self.gW)
        np.matmul(ones, da, out=self.gc)
        if self.tied:
            self.gW += self.gdec
        return loss

    def step(self, v, lr, momentum):
        loss = self.loss_and_gradients(v)
        scale = -lr * v.shape[1]  # descend; the per-element mean's gradient times the features: a sum per example
        _momentum_step(self.W, self.uW, self.gW, scale, momentum)
        _momentum_step(self.b, self.ub, self.gb, scale, momentum)
        _momentum_step(self.c, self.uc, self.gc, scale, momentum)
        if not self.tied:
            _momentum_step(self.V, self.uV, self.gdec, scale, momentum)
        return loss

    def arrays(self):
        out = {"visible_bias": self.b, "velocity_kernel": self.uW, "velocity_visible_bias": self.ub,
               "velocity_bias": self.uc}
        if not self.tied:
            out.update(decoder=self.V, velocity_decoder=self.uV)
        return out


# ---------------------------------------------------------------- the phase
@dataclass
class Position:
    """Where pretraining stands inside an epoch: enough to redo its permutation and continue."""

    shuffle_state: dict  # the shuffle stream before this epoch's permutation was drawn
    batch: int = 0
    loss_sum: float = 0.0
    seconds: float = 0.0


@dataclass
class PhaseState:
    layer: int = 0  # index into the pretrained layers: layers before it are done
    epoch: int = 0  # completed epochs of this layer
    position: Position | None = None
    history: list[dict] = field(default_factory=list)  # one row per (layer, epoch)


class Greedy:
    """The pretraining phase of a run: the listed dense layers, one at a time, bottom up."""

    def __init__(self, plan: Plan, cfg: Pretrain):
        self.plan, self.cfg = plan, cfg
        self.seed = plan.program.train.seed
        index = {spec.name: i for i, spec in reversed(list(enumerate(plan.program.ops)))}
        self.layers = [index[name] for name in cfg.layers]  # op index of each dense layer
        self.state = PhaseState()
        self.shuffle_rng: np.random.Generator | None = None  # the current layer's
        self.method: Method | None = None  # of the current layer, once begun
        self._method_rng: np.random.Generator | None = None
        self._pending: tuple[dict, dict[str, np.ndarray]] | None = None  # restored state for the method

    @property
    def done(self) -> bool:
        return self.state.layer >= len(self.layers)

    def layer_name(self, layer: int | None = None) -> str:
        return self.plan.program.ops[self.layers[self.state.layer if layer is None else layer]].name

    def _begin(self, batch: int) -> Method:
        i = self.layers[self.state.layer]
        ops, specs = self.plan.ops, self.plan.program.ops
        act = None
        if i + 1 < len(ops) and isinstance(ops[i + 1], Activation) and not specs[i + 1].variables:
            act = specs[i + 1].build()  # its own instance: the plan's keeps its buffers
        method = self.cfg.method.build()
        name = specs[i].name
        # each layer has its own streams: its training depends only on its inputs and the seed
        self._method_rng = stream(self.seed, "pretrain", name)
        self.shuffle_rng = stream(self.seed, "pretrain", "shuffle", name)
        W = self.plan.variables[f"{name}/kernel"]
        c = self.plan.variables[f"{name}/bias"]
        method.begin(W, c, act, self._method_rng, batch)
        if self._pending is not None:  # resuming inside this layer
            state, arrays = self._pending
            for key, arr in method.arrays().items():
                if key in arrays and arrays[key].shape == arr.shape:
                    arr[...] = arrays[key]
            set_state(self._method_rng, state["rng"])
            set_state(self.shuffle_rng, state["rng_shuffle"])
            self._pending = None
        return method

    def run(self, x: np.ndarray, on_step: Callable[["Greedy"], None] | None = None,
            on_epoch_end: Callable[["Greedy", dict], None] | None = None,
            on_layer_end: Callable[["Greedy", str], None] | None = None) -> list[dict]:
        """Pretrain what is left to pretrain on the unlabeled inputs x; returns the history rows
        this call added. Hooks run between steps, after an epoch, after a layer."""
        cfg, st = self.cfg, self.state
        done = len(st.history)
        x = x if x.dtype == self.plan.dtype else x.astype(self.plan.dtype)
        while not self.done:
            i = self.layers[st.layer]
            inputs = prefix_outputs(self.plan, x, i) if i > 0 else x  # the layers below, inference mode
            n = len(inputs)
            batch = min(cfg.batch, n)
            n_batches = -(-n // batch)
            self.method = self._begin(batch)
            vb = np.empty((batch, inputs.shape[1]), self.plan.dtype)
            while st.epoch < cfg.epochs:
                pos = st.position or Position(copy.deepcopy(get_state(self.shuffle_rng)))
                set_state(self.shuffle_rng, copy.deepcopy(pos.shuffle_state))
                order = self.shuffle_rng.permutation(n)
                st.position = pos
                for b in range(pos.batch, n_batches):
                    tick = time.perf_counter()
                    idx = order[b * batch:(b + 1) * batch]
                    m = len(idx)
                    np.take(inputs, idx, axis=0, out=vb[:m])
                    with np.errstate(over="ignore", invalid="ignore"):
                        loss = self.method.step(vb[:m], cfg.lr, cfg.momentum)
                    if not math.isfinite(loss):
                        raise Diverged(f"pretraining diverged at layer {self.layer_name()}, epoch {st.epoch + 1}: "
                                       f"the reconstruction error became {loss} (lower the pretrain lr)")
                    pos.loss_sum += loss * m
                    pos.batch = b + 1
                    pos.seconds += time.perf_counter() - tick
                    if on_step is not None and pos.batch < n_batches:
                        on_step(self)
                row = {"phase": "pretrain", "layer": self.layer_name(), "epoch": st.epoch + 1,
                       "loss": pos.loss_sum / n, "seconds": pos.seconds}
                st.position = None
                st.epoch += 1
                st.history.append(row)
                if on_epoch_end is not None:
                    on_epoch_end(self, row)
            name = self.layer_name()
            st.layer, st.epoch, self.method = st.layer + 1, 0, None
            if on_layer_end is not None:
                on_layer_end(self, name)
        return st.history[done:]

    # ------------------------------------------------------------ state (runstate saves it)
    def state_dict(self) -> tuple[dict, dict[str, np.ndarray]]:
        st = self.state
        state = {"layer": st.layer, "epoch": st.epoch, "done": self.done,
                 "position": asdict(st.position) if st.position else None, "history": st.history}
        arrays = {}
        if self.method is not None:  # inside a layer
            state["rng"], state["rng_shuffle"] = get_state(self._method_rng), get_state(self.shuffle_rng)
            arrays = {k: v.copy() for k, v in self.method.arrays().items()}
        return state, arrays

    def load_state_dict(self, state: dict, arrays: dict[str, np.ndarray]) -> None:
        st = self.state
        st.layer, st.epoch = int(state["layer"]), int(state["epoch"])
        st.position = Position(**state["position"]) if state.get("position") else None
        st.history = [dict(row) for row in state.get("history", [])]
        self.method = None
        self._pending = (state, arrays) if not self.done and "rng" in state else None

    def finish(self) -> None:
        """Mark the phase complete (a run restored from a checkpoint written after it)."""
        self.state.layer, self.state.epoch, self.state.position, self.method = len(self.layers), 0, None, None
