"""Optimizers, sorted in order of increasing complexity.

An optimizer is hyper-parameters plus a pure in-place update rule over flat arrays:

    opt.update(p, g, state, lr, t)

``p`` parameters and ``g`` gradients (same shape, float32), ``state`` a dict of arrays named by
``slots`` (persistent, saved in checkpoints, start at zero) and ``scratch`` (temporary buffers,
contents undefined between calls), ``lr`` the learning rate of this update after any schedule
and multiplier (a Python float, never a NumPy float64 scalar, which would upcast the math),
``t`` the 1-based update count. The runtime keeps ``p``, ``g`` and each slot as flat buffers
over all trainable variables, and calls ``update`` on contiguous chunks of them (L2-sized, from
several threads at once: ``dnnspec.train.parallel``), so an update must be element-wise and must
not change the optimizer's attributes: its scalars are the same for every chunk of a step, and
``prepare(t)``, called once per step before the chunks, fills any cache they read (NAdam's
product of momenta).

Every rule follows torch.optim (which is the papers' form where the paper is precise); Keras
variants are options (docs/conventions.md). Updates never allocate an array: they write into
the slots and the ``scratch`` buffers with ``out=``, and every scalar is a Python float so
float32 stays float32 (and float64 arrays, used by the oracle tests, stay float64).
"""


import math
from typing import ClassVar

import numpy as np

from .registry import Choice, Float, Int, Registry

OPTIMIZERS = Registry("optimizer")


class Optimizer:
    """Base: declare ``slots``/``scratch`` and implement ``update``."""

    slots: ClassVar[tuple[str, ...]] = ()
    scratch: ClassVar[tuple[str, ...]] = ()
    lr: float

    def update(self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray], lr: float, t: int) -> None:
        raise NotImplementedError

    def prepare(self, t: int) -> None:
        """Called once per step before ``update`` runs on the chunks of the buffers."""

    def hyperparameters(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


Beta = Float(ge=0, lt=1)  # a decay rate of a running average


def momentum_attribute(optimizer) -> str | None:
    """The hyper-parameter a momentum schedule (onecycle) drives: beta1 where there is one, else
    momentum (torch: betas[0], else momentum); None for optimizers without one (sgd, adagrad,
    rmsprop without momentum, whose slots would not exist)."""
    if hasattr(optimizer, "beta1"):
        return "beta1"
    if getattr(optimizer, "momentum", 0.0) > 0.0:
        return "momentum"
    return None


@OPTIMIZERS.register("sgd")
class SGD(Optimizer):
    """Plain gradient descent: p -= lr·g (Robbins & Monro 1951)."""

    scratch = ("s",)

    def __init__(self, lr: Float(gt=0) = 0.01):
        self.lr = float(lr)

    def update(self, p, g, state, lr, t):
        s = state["s"]
        np.multiply(g, float(lr), out=s)
        p -= s


@OPTIMIZERS.register("momentum")
class Momentum(Optimizer):
    """Heavy-ball momentum, torch form: b = μb + g; p -= lr·b (Polyak 1964)."""

    slots = ("b",)
    scratch = ("s",)

    def __init__(self, lr: Float(gt=0) = 0.01, momentum: Beta = 0.9):
        self.lr, self.momentum = float(lr), float(momentum)

    def update(self, p, g, state, lr, t):
        # b starts at 0, so the first step gives b = g exactly as torch's special case does.
        # lr multiplies the buffer at use (torch), not on entry (Keras): they differ under a schedule.
        b, s = state["b"], state["s"]
        b *= self.momentum
        b += g
        np.multiply(b, float(lr), out=s)
        p -= s


@OPTIMIZERS.register("nesterov", "nag")
class Nesterov(Momentum):
    """Nesterov momentum, Sutskever form as torch: b = μb + g; p -= lr·(g + μb) (Sutskever et al. 2013)."""

    def update(self, p, g, state, lr, t):
        b, s = state["b"], state["s"]
        b *= self.momentum
        b += g
        np.multiply(b, self.momentum, out=s)
        s += g
        s *= float(lr)
        p -= s


@OPTIMIZERS.register("adagrad")
class Adagrad(Optimizer):
    """AdaGrad, torch form: s += g²; p -= lr·g/(sqrt(s0 + s) + eps) (Duchi et al. 2011)."""

    slots = ("sum_sq",)
    scratch = ("s",)

    def __init__(
        self, lr: Float(gt=0) = 0.01, initial_accumulator: Float(ge=0) = 0.0, epsilon: Float(ge=0) = 1e-10
    ):
        self.lr, self.initial_accumulator, self.epsilon = float(lr), float(initial_accumulator), float(epsilon)

    def update(self, p, g, state, lr, t):
        # The slot holds Σg² (it starts at zero like every slot); the initial accumulator is added
        # at use. Keras' Adagrad is initial_accumulator=0.1, epsilon=1e-7 (eps placement moves < 1e-6).
        acc, s = state["sum_sq"], state["s"]
        np.square(g, out=s)
        acc += s
        np.add(acc, self.initial_accumulator, out=s)
        np.sqrt(s, out=s)
        s += self.epsilon
        np.divide(g, s, out=s)
        s *= float(lr)
        p -= s


@OPTIMIZERS.register("rmsprop")
class RMSprop(Optimizer):
    """RMSProp, torch form with eps outside the sqrt; optional centering and momentum (Hinton 2012, lecture 6e)."""

    scratch = ("s",)

    def __init__(
        self,
        lr: Float(gt=0) = 0.001,
        rho: Beta = 0.9,
        momentum: Beta = 0.0,
        centered: bool = False,
        epsilon: Float(ge=0) = 1e-8,
    ):
        # rho = 0.9 as Hinton's lecture, Keras and Hands-On ML; torch's alpha defaults to 0.99.
        self.lr, self.rho, self.momentum = float(lr), float(rho), float(momentum)
        self.centered, self.epsilon = bool(centered), float(epsilon)

    @property
    def slots(self) -> tuple[str, ...]:
        return ("sq_avg",) + (("grad_avg",) if self.centered else ()) + (("b",) if self.momentum else ())

    def update(self, p, g, state, lr, t):
        v, s, rho = state["sq_avg"], state["s"], self.rho
        np.square(g, out=s)
        s *= 1.0 - rho
        v *= rho
        v += s  # v = ρv + (1-ρ)g²
        if self.centered:
            a = state["grad_avg"]
            a *= rho
            np.multiply(g, 1.0 - rho, out=s)
            a += s  # a = ρa + (1-ρ)g
            np.square(a, out=s)
            np.subtract(v, s, out=s)
            np.maximum(s, 0.0, out=s)  # v ≥ a² exactly, but rounding may cross zero
            np.sqrt(s, out=s)
        else:
            np.sqrt(v, out=s)  # straight from the slot: no copy pass
        s += self.epsilon
        np.divide(g, s, out=s)
        if self.momentum:
            b = state["b"]
            b *= self.momentum
            b += s  # b = μb + g/d; lr multiplies at use (torch; Keras puts lr inside b)
            np.multiply(b, float(lr), out=s)
        else:
            s *= float(lr)
        p -= s


@OPTIMIZERS.register("adam")
class Adam(Optimizer):
    """Adam, Algorithm 1 of Kingma & Ba 2014 (torch form); amsgrad (Reddi et al. 2018); Keras' epsilon_hat."""

    scratch = ("s",)

    def __init__(
        self,
        lr: Float(gt=0) = 0.001,
        beta1: Beta = 0.9,
        beta2: Beta = 0.999,
        epsilon: Float(ge=0) = 1e-8,
        amsgrad: bool = False,
        epsilon_hat: bool = False,
    ):
        self.lr, self.beta1, self.beta2, self.epsilon = float(lr), float(beta1), float(beta2), float(epsilon)
        self.amsgrad, self.epsilon_hat = bool(amsgrad), bool(epsilon_hat)

    @property
    def slots(self) -> tuple[str, ...]:
        return ("m", "v") + (("v_max",) if self.amsgrad else ())

    def update(self, p, g, state, lr, t):
        self.adam_step(p, g, state, float(lr), int(t))

    def adam_step(self, p, g, state, lr, t):
        m, v, s, b1, b2 = state["m"], state["v"], state["s"], self.beta1, self.beta2
        # 12 passes over the chunk, each one NumPy call: the fewest for these formulas without a
        # fused multiply-add (bias corrections and eps folded into two scalars below)
        np.multiply(g, 1.0 - b1, out=s)
        m *= b1
        m += s  # m = β1 m + (1-β1) g
        np.square(g, out=s)  # the bits of g·g, at the cost of a one-input pass (half of multiply(g, g))
        s *= 1.0 - b2
        v *= b2
        v += s  # v = β2 v + (1-β2) g²
        if self.amsgrad:
            np.maximum(state["v_max"], v, out=state["v_max"])  # on the raw v, as torch and Keras
            v = state["v_max"]
        bc1, bc2 = 1.0 - b1**t, 1.0 - b2**t  # Python floats: no float64 NumPy scalars
        np.sqrt(v, out=s)
        if self.epsilon_hat:
            # Keras / paper §2: eps added to the uncorrected sqrt(v), corrections folded into the step
            s += self.epsilon
            step = lr * math.sqrt(bc2) / bc1
        else:
            # Algorithm 1, eps added after bias-correcting sqrt(v): sqrt(v)/sqrt(bc2) + eps equals
            # (sqrt(v) + eps·sqrt(bc2))/sqrt(bc2), which saves one pass over every parameter
            s += self.epsilon * math.sqrt(bc2)
            step = lr * math.sqrt(bc2) / bc1
        np.divide(m, s, out=s)
        s *= step
        p -= s


@OPTIMIZERS.register("adamw")
class AdamW(Adam):
    """Adam with decoupled weight decay, first p *= 1 - lr·wd (Loshchilov & Hutter 2019; torch/Keras form)."""

    def __init__(
        self,
        lr: Float(gt=0) = 0.001,
        weight_decay: Float(ge=0) = 0.01,
        beta1: Beta = 0.9,
        beta2: Beta = 0.999,
        epsilon: Float(ge=0) = 1e-8,
        amsgrad: bool = False,
        epsilon_hat: bool = False,
    ):
        super().__init__(lr, beta1, beta2, epsilon, amsgrad, epsilon_hat)
        self.weight_decay = float(weight_decay)

    def update(self, p, g, state, lr, t):
        # Decay scaled by the whole lr (torch, Keras); the paper scales it by the schedule multiplier only.
        lr = float(lr)
        p *= 1.0 - lr * self.weight_decay
        self.adam_step(p, g, state, lr, int(t))


@OPTIMIZERS.register("nadam")
class NAdam(Optimizer):
    """Adam with Nesterov momentum and Dozat's momentum schedule, torch form (Dozat 2016)."""

    slots = ("m", "v")
    scratch = ("s", "d")

    def __init__(
        self,
        lr: Float(gt=0) = 0.002,
        beta1: Beta = 0.9,
        beta2: Beta = 0.999,
        epsilon: Float(ge=0) = 1e-8,
        momentum_decay: Float(ge=0) = 0.004,
    ):
        # momentum_decay=1.0 with epsilon=1e-7 is Keras' Nadam (its μ_t decays with 0.96^t).
        self.lr, self.beta1, self.beta2 = float(lr), float(beta1), float(beta2)
        self.epsilon, self.momentum_decay = float(epsilon), float(momentum_decay)
        self._prod = (0, 1.0)  # cache (t, Π_{i≤t} μ_i); Π_0 = 1

    def mu(self, t: int) -> float:
        """μ_t = β1·(1 - 0.5·0.96^(t·ψ))."""
        return self.beta1 * (1.0 - 0.5 * 0.96 ** (t * self.momentum_decay))

    def mu_product(self, t: int) -> float:
        """Π_{i=1..t} μ_i, multiplied in order so a resumed run gets the same bits as an unbroken one."""
        t0, prod = self._prod
        if t < t0:
            t0, prod = 0, 1.0
        for i in range(t0 + 1, t + 1):  # one multiplication per step in a run; all t after a resume
            prod *= self.mu(i)
        self._prod = (t, prod)
        return prod

    def prepare(self, t: int) -> None:
        self.mu_product(int(t))  # the chunks' calls then read the cache, never extend it

    def state_dict(self) -> tuple[dict, dict]:
        """Π μ_i so far: with a cycled beta1 (onecycle) it cannot be recomputed on resume."""
        return {"mu_product": list(self._prod)}, {}

    def load_state_dict(self, scalars: dict, arrays: dict) -> None:
        t, prod = scalars["mu_product"]
        self._prod = (int(t), float(prod))

    def update(self, p, g, state, lr, t):
        lr, t = float(lr), int(t)
        m, v, s, d, b1, b2 = state["m"], state["v"], state["s"], state["d"], self.beta1, self.beta2
        mu, mu_next = self.mu(t), self.mu(t + 1)
        prod = self.mu_product(t)
        np.multiply(g, 1.0 - b1, out=s)
        m *= b1
        m += s
        np.square(g, out=s)
        s *= 1.0 - b2
        v *= b2
        v += s
        # p -= lr(1-μ_t)/(1-Π_t)·g/d + lr·μ_{t+1}/(1-Π_t·μ_{t+1})·m/d, d = sqrt(v/(1-β2^t)) + eps.
        # The two terms share d, and d = (sqrt(v) + eps·r)/r with r = sqrt(1-β2^t), so r moves
        # into the terms' coefficients: one division and one subtraction for both, and no pass
        # scaling v (14 passes instead of 16; the last bits differ from dividing each term)
        r = math.sqrt(1.0 - b2**t)
        np.multiply(g, lr * (1.0 - mu) / (1.0 - prod) * r, out=s)
        np.multiply(m, lr * mu_next / (1.0 - prod * mu_next) * r, out=d)
        s += d
        np.sqrt(v, out=d)
        d += self.epsilon * r
        np.divide(s, d, out=s)
        p -= s


@OPTIMIZERS.register("adamax")
class Adamax(Optimizer):
    """Adam with the infinity norm, torch form u = max(β2·u, |g| + eps) (Kingma & Ba 2014, §7.1)."""

    slots = ("m", "u")
    scratch = ("s",)

    def __init__(
        self, lr: Float(gt=0) = 0.002, beta1: Beta = 0.9, beta2: Beta = 0.999, epsilon: Float(ge=0) = 1e-8
    ):
        self.lr, self.beta1, self.beta2, self.epsilon = float(lr), float(beta1), float(beta2), float(epsilon)

    def update(self, p, g, state, lr, t):
        m, u, s, b1 = state["m"], state["u"], state["s"], self.beta1
        np.multiply(g, 1.0 - b1, out=s)
        m *= b1
        m += s
        np.abs(g, out=s)
        s += self.epsilon  # eps inside the max (torch); Keras adds it to u at use
        u *= self.beta2
        np.maximum(u, s, out=u)
        np.divide(m, u, out=s)
        s *= float(lr) / (1.0 - b1 ** int(t))
        p -= s
