"""Optimizers, sorted in order of increasing complexity.

An optimizer is hyper-parameters plus a pure in-place update rule over flat arrays:

    opt.update(p, g, state, lr, t)

``p`` parameters and ``g`` gradients (same shape, float32), ``state`` a dict of arrays named by
``slots`` (persistent, saved in checkpoints, start at zero) and ``scratch`` (temporary buffers,
contents undefined between calls), ``lr`` the learning rate of this update after any schedule
and multiplier (a Python float, never a NumPy float64 scalar, which would upcast the math),
``t`` the 1-based update count. The runtime keeps ``p``, ``g`` and each slot as flat buffers
over all trainable variables, so one call updates the whole network in a few large passes.

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

    def hyperparameters(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


Beta = Float(ge=0, lt=1)  # a decay rate of a running average


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
        np.multiply(g, g, out=s)
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
        np.multiply(g, g, out=s)
        s *= 1.0 - rho
        v *= rho
        v += s  # v = ρv + (1-ρ)g²
        if self.centered:
            a = state["grad_avg"]
            a *= rho
            np.multiply(g, 1.0 - rho, out=s)
            a += s  # a = ρa + (1-ρ)g
            np.multiply(a, a, out=s)
            np.subtract(v, s, out=s)
            np.maximum(s, 0.0, out=s)  # v ≥ a² exactly, but rounding may cross zero
        else:
            np.copyto(s, v)
        np.sqrt(s, out=s)
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
        np.multiply(g, 1.0 - b1, out=s)
        m *= b1
        m += s  # m = β1 m + (1-β1) g
        np.multiply(g, g, out=s)
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

    def update(self, p, g, state, lr, t):
        lr, t = float(lr), int(t)
        m, v, s, d, b1, b2 = state["m"], state["v"], state["s"], state["d"], self.beta1, self.beta2
        mu, mu_next = self.mu(t), self.mu(t + 1)
        prod = self.mu_product(t)
        np.multiply(g, 1.0 - b1, out=s)
        m *= b1
        m += s
        np.multiply(g, g, out=s)
        s *= 1.0 - b2
        v *= b2
        v += s
        np.multiply(v, 1.0 / (1.0 - b2**t), out=d)
        np.sqrt(d, out=d)
        d += self.epsilon  # d = sqrt(v / (1-β2^t)) + eps
        # p -= lr(1-μ_t)/(1-Π_t)·g/d + lr·μ_{t+1}/(1-Π_t·μ_{t+1})·m/d
        np.divide(g, d, out=s)
        s *= lr * (1.0 - mu) / (1.0 - prod)
        p -= s
        np.divide(m, d, out=s)
        s *= lr * mu_next / (1.0 - prod * mu_next)
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


# ---------------------------------------------------------------- L-BFGS: closure-based, full batch
# A faithful NumPy port of torch.optim.LBFGS (torch 2.13, itself after minFunc and torch7's
# lbfgs.lua/lswolfe.lua). Scalars stay NumPy scalars of p's dtype where torch keeps 0-d tensors
# (dot products, 1/ys, H_diag), so float32 runs round like torch's and float64 runs match it.
def _absmax(a: np.ndarray):
    """max |a| without a temporary (NaN propagates, as torch's abs().max())."""
    return np.maximum(a.max(), -a.min())


def _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """Minimiser of the cubic through (x1, f1, f1'=g1) and (x2, f2, g2), clamped to bounds (polyinterp.lua)."""
    lo, hi = bounds if bounds is not None else ((x1, x2) if x1 <= x2 else (x2, x1))
    if x1 == x2:  # torch divides by zero here (never reached: the zoom stops first): take the middle
        return (lo + hi) / 2.0
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # inf/nan fall to the midpoint
        d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
        d2_square = d1 * d1 - g1 * g2
        if d2_square >= 0:
            d2 = np.sqrt(d2_square)
            if x1 <= x2:
                min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
            else:
                min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
            return min(max(min_pos, lo), hi)
    return (lo + hi) / 2.0


def _strong_wolfe(evaluate, keep, f, g0, gtd, t, d, spare, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    """torch's `_strong_wolfe` (lswolfe.lua): bracket a step satisfying the strong Wolfe conditions, then zoom.

    ``evaluate(t) -> (f, gtd)`` evaluates the loss and slope along d at x + t·d, leaving the gradient
    in the trainer's buffer; ``keep(buf)`` copies it into ``buf`` and returns ``buf``. ``g0`` is the
    gradient at t = 0 and ``spare`` two free buffers: the three arrays replace torch's clones.
    Returns (f, gradient array, t, evaluations) of the best point found.
    """
    d_norm = _absmax(d)
    b_prev, b_new = spare
    f_new, gtd_new = evaluate(t)
    evals, ls_iter, done = 1, 0, False
    t_prev, f_prev, g_prev, gtd_prev = 0, f, g0, gtd
    while ls_iter < max_ls:  # bracketing: grow t until the interval [t_prev, t] holds a Wolfe point
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):  # overshot: Armijo fails
            bracket, bf, bg, bgtd = [t_prev, t], [f_prev, f_new], [g_prev, keep(b_new)], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:  # both conditions hold: done
            bracket, bf, bg, done = [t], [f_new], [keep(b_new)], True
            break
        if gtd_new >= 0:  # the slope turned: a minimum lies in between
            bracket, bf, bg, bgtd = [t_prev, t], [f_prev, f_new], [g_prev, keep(b_new)], [gtd_prev, gtd_new]
            break
        # extrapolate: cubic minimiser within [t + 0.01(t - t_prev), 10 t]
        t_prev, t = t, _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new,
                                          bounds=(t + 0.01 * (t - t_prev), t * 10))
        f_prev, g_prev, gtd_prev = f_new, keep(b_prev), gtd_new
        f_new, gtd_new = evaluate(t)
        evals += 1
        ls_iter += 1
    if ls_iter == max_ls:
        bracket, bf, bg = [0, t], [f, f_new], [g0, keep(b_new)]

    # zoom: shrink the bracket by cubic interpolation until a point satisfies the conditions
    insuf_progress = False
    low, high = (0, 1) if len(bf) == 1 or bf[0] <= bf[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_interpolate(bracket[0], bf[0], bgtd[0], bracket[1], bf[1], bgtd[1])
        # too close to an end twice in a row (or outside): move 10% of the bracket inside
        top, bottom = max(bracket), min(bracket)
        eps = 0.1 * (top - bottom)
        if min(top - t, t - bottom) < eps:
            if insuf_progress or t >= top or t <= bottom:
                t = top - eps if abs(t - top) < abs(t - bottom) else bottom + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False
        f_new, gtd_new = evaluate(t)
        evals += 1
        ls_iter += 1
        if f_new > (f + c1 * t * gtd) or f_new >= bf[low]:
            # Armijo fails or no lower than the low end: t is the new high end
            bracket[high], bf[high], bgtd[high] = t, f_new, gtd_new
            keep(bg[high])
            low, high = (0, 1) if bf[0] <= bf[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high] - bracket[low]) >= 0:
                # old low becomes the high end; its buffer goes along, the old high's is free
                bracket[high], bf[high], bgtd[high] = bracket[low], bf[low], bgtd[low]
                bg[high], bg[low] = bg[low], bg[high]
            bracket[low], bf[low], bgtd[low] = t, f_new, gtd_new
            keep(bg[low])
    return bf[low], bg[low], bracket[low], evals


@OPTIMIZERS.register("lbfgs", "l_bfgs")
class LBFGS(Optimizer):
    """Limited-memory BFGS (Liu & Nocedal 1989), torch.optim.LBFGS semantics; for full-batch training.

    It re-evaluates the loss at new points, so it has no ``update``: the trainer calls
    ``step(p, g, closure, lr)`` once per epoch with a closure over the whole training set. One
    step runs up to ``max_iter`` quasi-Newton iterations and ``max_eval`` closure calls. Without a
    line search the step length is ``lr`` (``min(1, 1/|g|₁)·lr`` on the very first iteration);
    ``strong_wolfe`` searches from there with torch's bracketing and cubic zoom (c1=1e-4, c2=0.9).
    """

    closure_based: ClassVar[bool] = True

    def __init__(
        self,
        lr: Float(gt=0) = 1.0,
        max_iter: Int(ge=1) = 20,
        max_eval: Int(ge=0) = 0,
        tolerance_grad: Float(ge=0) = 1e-7,
        tolerance_change: Float(ge=0) = 1e-9,
        history_size: Int(ge=1) = 100,
        line_search: Choice("none", "strong_wolfe") = "none",
    ):
        # max_eval 0 stands for torch's None: max_iter·5//4
        self.lr, self.max_iter, self.max_eval = float(lr), int(max_iter), int(max_eval)
        self.tolerance_grad, self.tolerance_change = float(tolerance_grad), float(tolerance_change)
        self.history_size, self.line_search = int(history_size), str(line_search)
        self._reset()

    def _reset(self) -> None:
        # torch's state: counters, last direction d and step t, the gradient before the last
        # iteration, the (y, s, 1/y·s) history oldest first, and the initial inverse-Hessian scale
        self._n_iter, self._func_evals = 0, 0
        self._t, self._H_diag, self._prev_loss = None, 1, None
        self._d = self._prev_flat_grad = None
        self._old_dirs, self._old_stps, self._ro = [], [], []
        self._buf: dict[str, np.ndarray] = {}  # scratch, allocated on first use

    def update(self, p, g, state, lr, t):
        raise TypeError("lbfgs needs a closure: it re-evaluates the loss at new points, so the trainer calls "
                        "step(p, g, closure, lr) with a closure over the full batch instead of update()")

    def _scratch(self, name: str, like: np.ndarray) -> np.ndarray:
        buf = self._buf.get(name)
        if buf is None or buf.shape != like.shape or buf.dtype != like.dtype:
            buf = self._buf[name] = np.empty_like(like)
        return buf

    def step(self, p: np.ndarray, g: np.ndarray, closure, lr: float) -> float:
        """One torch LBFGS.step: ``closure()`` evaluates the loss at the current p, writes the gradient into g
        and returns the loss; p is updated in place. Returns the loss at the starting point."""
        if self._d is not None and (self._d.shape != p.shape or self._d.dtype != p.dtype):
            raise ValueError(f"lbfgs state is for {self._d.size} {self._d.dtype} parameters, got {p.size} {p.dtype}")
        lr, max_iter, history_size = float(lr), self.max_iter, self.history_size
        max_eval = self.max_eval or max_iter * 5 // 4
        tolerance_grad, tolerance_change = self.tolerance_grad, self.tolerance_change
        flat_grad, tmp = self._scratch("flat_grad", p), self._scratch("tmp", p)
        old_dirs, old_stps, ro = self._old_dirs, self._old_stps, self._ro

        orig_loss = loss = float(closure())
        current_evals = 1
        self._func_evals += 1
        np.copyto(flat_grad, g)
        if _absmax(flat_grad) <= tolerance_grad:
            return orig_loss

        d, t, H_diag, prev_flat_grad, prev_loss = self._d, self._t, self._H_diag, self._prev_flat_grad, self._prev_loss
        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            self._n_iter += 1

            # ---- direction: steepest descent at first, then the two-loop recursion
            if self._n_iter == 1:
                d = np.negative(flat_grad)
                for history in (old_dirs, old_stps, ro):
                    history.clear()
                H_diag = 1
            else:
                y, s = self._scratch("y", p), self._scratch("s", p)
                np.subtract(flat_grad, prev_flat_grad, out=y)
                np.multiply(d, t, out=s)
                ys = np.dot(y, s)
                if ys > 1e-10:  # keep the pair only where the curvature condition holds
                    if len(old_dirs) == history_size:  # forget the oldest pair, reuse its memory
                        self._buf["y"], self._buf["s"] = old_dirs.pop(0), old_stps.pop(0)
                        ro.pop(0)
                    else:  # the history keeps these two; fresh scratch next time
                        del self._buf["y"], self._buf["s"]
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    H_diag = ys / np.dot(y, y)  # scale of the initial inverse Hessian
                num_old = len(old_dirs)
                al = [None] * num_old
                np.negative(flat_grad, out=d)  # q, then r, in d's buffer (s above no longer needs it)
                for i in range(num_old - 1, -1, -1):
                    al[i] = np.dot(old_stps[i], d) * ro[i]
                    np.multiply(old_dirs[i], -al[i], out=tmp)
                    d += tmp
                d *= H_diag
                for i in range(num_old):
                    be_i = np.dot(old_dirs[i], d) * ro[i]
                    np.multiply(old_stps[i], al[i] - be_i, out=tmp)
                    d += tmp

            if prev_flat_grad is None:
                prev_flat_grad = flat_grad.copy()
            else:
                np.copyto(prev_flat_grad, flat_grad)
            prev_loss = loss

            # ---- step length: lr, shortened on the very first iteration to at most lr/|g|₁
            if self._n_iter == 1:
                np.abs(flat_grad, out=tmp)
                t = min(1.0, 1.0 / tmp.sum()) * lr
            else:
                t = lr
            gtd = np.dot(flat_grad, d)  # directional derivative
            if gtd > -tolerance_change:
                break

            ls_func_evals = 0
            if self.line_search == "strong_wolfe":
                x = self._scratch("x", p)
                np.copyto(x, p)

                def evaluate(t):
                    np.multiply(d, t, out=tmp)
                    np.add(x, tmp, out=p)
                    f = float(closure())
                    np.copyto(p, x)  # torch restores p after every trial point
                    return f, np.dot(g, d)

                def keep(buf):
                    np.copyto(buf, g)
                    return buf

                loss, new_grad, t, ls_func_evals = _strong_wolfe(
                    evaluate, keep, loss, flat_grad, gtd, t, d, (self._scratch("g1", p), self._scratch("g2", p)),
                    max_ls=max_eval - current_evals)  # torch leaves the search's tolerance_change at 1e-9
                if new_grad is not flat_grad:
                    np.copyto(flat_grad, new_grad)
                np.multiply(d, t, out=tmp)
                p += tmp
                opt_cond = _absmax(flat_grad) <= tolerance_grad
            else:
                np.multiply(d, t, out=tmp)
                p += tmp
                if n_iter != max_iter:  # the last iteration's point is evaluated by the next step
                    loss = float(closure())
                    np.copyto(flat_grad, g)
                    opt_cond = _absmax(flat_grad) <= tolerance_grad
                    ls_func_evals = 1
            current_evals += ls_func_evals
            self._func_evals += ls_func_evals

            # ---- stopping tests, in torch's order
            if n_iter == max_iter or current_evals >= max_eval or opt_cond:
                break
            if _absmax(d) * abs(t) <= tolerance_change:  # = max|t·d|: rounding is monotone
                break
            if abs(loss - prev_loss) < tolerance_change:
                break

        self._d, self._t, self._H_diag = d, t, H_diag
        self._prev_flat_grad, self._prev_loss = prev_flat_grad, prev_loss
        return orig_loss

    def state_dict(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-able scalars, arrays): everything a fresh instance needs to continue bit for bit."""
        scalars = {
            "n_iter": self._n_iter,
            "func_evals": self._func_evals,
            "t": None if self._t is None else float(self._t),
            "H_diag": float(self._H_diag),
            "prev_loss": self._prev_loss,
        }
        if self._d is None:
            return scalars, {}
        n, dtype = self._d.size, self._d.dtype
        arrays = {
            "d": self._d.copy(),
            "prev_flat_grad": self._prev_flat_grad.copy(),
            "old_dirs": np.array(self._old_dirs, dtype).reshape(-1, n),  # y history, oldest first
            "old_stps": np.array(self._old_stps, dtype).reshape(-1, n),  # s history
            "ro": np.array(self._ro, dtype),  # 1/(y·s)
        }
        return scalars, arrays

    def load_state_dict(self, scalars: dict, arrays: dict[str, np.ndarray]) -> None:
        """Restore what `state_dict` returned (scalars may have been through JSON)."""
        self._reset()
        self._n_iter, self._func_evals = int(scalars["n_iter"]), int(scalars["func_evals"])
        self._t, self._prev_loss = scalars["t"], scalars["prev_loss"]
        self._H_diag = float(scalars["H_diag"])  # t and H_diag only ever scale arrays: exact as floats
        if not arrays:
            return
        self._d, self._prev_flat_grad = np.array(arrays["d"]), np.array(arrays["prev_flat_grad"])
        dtype = self._d.dtype
        self._old_dirs = [np.array(row, dtype) for row in arrays["old_dirs"]]  # one buffer each, as in a run
        self._old_stps = [np.array(row, dtype) for row in arrays["old_stps"]]
        self._ro = [dtype.type(r) for r in arrays["ro"]]
