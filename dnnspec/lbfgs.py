"""L-BFGS: a closure-based, full-batch optimizer (torch.optim.LBFGS semantics).

Unlike the rules in `optim`, it re-evaluates the loss inside a step, so the runtime drives it
through `step(p, g, closure, lr)`; its history is internal state that `state_dict` hands to the
run state for exact resume.
"""

from typing import ClassVar

import numpy as np

from .optim import OPTIMIZERS, Optimizer
from .registry import Choice, Float, Int


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
