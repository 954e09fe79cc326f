"""Learning-rate schedules. ``schedule(lr0, k)`` is the rate of update k+1 (k counts from 0),
in the schedule's unit (per step or per epoch). Closed forms follow torch.optim.lr_scheduler.

Each schedule is a pure function of (lr0, k) except `reduce_on_plateau`, whose state changes
through ``observe(metric)`` and is saved with ``state_dict``. Where torch and Keras differ the
choice is stated on the entry and in docs/conventions.md. `Warmup` wraps any schedule.
"""


import math

from .registry import Choice, Float, Int, Registry

SCHEDULES = Registry("schedule")


class Schedule:
    """Base: implement ``__call__(lr0, k) -> float``. Stateful schedules also implement
    ``observe(metric)`` (called once per epoch) and ``state_dict``/``load_state_dict``; a schedule
    that drives momentum too (onecycle) overrides ``momentum(k)``."""

    def __call__(self, lr0: float, k: int) -> float:
        raise NotImplementedError

    def momentum(self, k: int) -> float | None:
        """The momentum of update k (SGD's momentum, or Adam's beta1: torch's ``betas[0]``), in the
        same unit and counting as ``__call__``; None (the default) leaves the optimizer's own."""
        return None

    def observe(self, metric: float) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


@SCHEDULES.register("constant")
class Constant(Schedule):
    """The base learning rate, unchanged."""

    def __init__(self):
        pass

    def __call__(self, lr0: float, k: int) -> float:
        return lr0


def cos_anneal(start: float, end: float, frac: float) -> float:
    """From start (frac=0) to end (frac=1) along half a cosine."""
    return end + (start - end) * (1.0 + math.cos(math.pi * frac)) / 2.0


# ---------------------------------------------------------------- piecewise constant
@SCHEDULES.register("step", "step_decay")
class Step(Schedule):
    """lr0·gamma^floor(k/step_size) (torch StepLR)."""

    def __init__(self, step_size: Int(ge=1), gamma: Float(gt=0) = 0.1):
        self.step_size, self.gamma = int(step_size), float(gamma)

    def __call__(self, lr0, k):
        return lr0 * self.gamma ** (int(k) // self.step_size)


def parse_milestones(text: str) -> list[int]:
    """"20,50,80" -> [20, 50, 80]; ValueError unless positive, strictly increasing integers."""
    try:
        values = [int(part) for part in str(text).replace(" ", "").split(",")]
    except ValueError:
        raise ValueError(f"milestones must be comma-separated integers like \"20,50,80\", got {text!r}") from None
    if values[0] < 1 or any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"milestones must be positive and strictly increasing, got {text!r}")
    return values


@SCHEDULES.register("multistep", "multistep_decay")
class MultiStep(Schedule):
    """lr0·gamma^(number of milestones ≤ k); milestones written "20,50,80" (torch MultiStepLR)."""

    def __init__(self, milestones: str, gamma: Float(gt=0) = 0.1):
        # Keras PiecewiseConstantDecay changes one step later: its boundary b is milestone b+1 here.
        self.milestones, self.gamma = str(milestones), float(gamma)
        self._ks = parse_milestones(milestones)

    @staticmethod
    def validate(milestones: str | None = None, **_) -> str | None:
        if milestones is None:  # missing: reported as such by the checker
            return None
        try:
            parse_milestones(milestones)
        except ValueError as e:
            return str(e)
        return None

    def __call__(self, lr0, k):
        return lr0 * self.gamma ** sum(m <= k for m in self._ks)


# ---------------------------------------------------------------- smooth decays
@SCHEDULES.register("exponential")
class Exponential(Schedule):
    """lr0·gamma^k (torch ExponentialLR)."""

    def __init__(self, gamma: Float(gt=0)):
        self.gamma = float(gamma)

    def __call__(self, lr0, k):
        return lr0 * self.gamma ** int(k)


@SCHEDULES.register("exponential_decay")
class ExponentialDecay(Schedule):
    """lr0·decay_rate^(k/decay_steps), exponent floored if staircase (Keras ExponentialDecay)."""

    def __init__(self, decay_rate: Float(gt=0), decay_steps: Int(ge=1), staircase: bool = False):
        self.decay_rate, self.decay_steps, self.staircase = float(decay_rate), int(decay_steps), bool(staircase)

    def __call__(self, lr0, k):
        e = int(k) // self.decay_steps if self.staircase else int(k) / self.decay_steps
        return lr0 * self.decay_rate**e


@SCHEDULES.register("inverse_time")
class InverseTime(Schedule):
    """lr0/(1 + decay·k/decay_steps) (Keras InverseTimeDecay; Caffe "inv" with power 1)."""

    def __init__(self, decay: Float(ge=0), decay_steps: Int(ge=1) = 1):
        self.decay, self.decay_steps = float(decay), int(decay_steps)

    def __call__(self, lr0, k):
        return lr0 / (1.0 + self.decay * int(k) / self.decay_steps)


@SCHEDULES.register("power")
class Power(Schedule):
    """lr0/(1 + k/steps)^c, power scheduling of Hands-On ML ch. 11 (halved after `steps` updates when c=1)."""

    def __init__(self, steps: Int(ge=1), c: Float(gt=0) = 1.0):
        self.steps, self.c = int(steps), float(c)

    def __call__(self, lr0, k):
        return lr0 / (1.0 + int(k) / self.steps) ** self.c


@SCHEDULES.register("polynomial")
class Polynomial(Schedule):
    """(lr0 - end_lr)(1 - min(k,T)/T)^power + end_lr (torch PolynomialLR when end_lr=0; Keras PolynomialDecay)."""

    def __init__(self, total_steps: Int(ge=1), power: Float(gt=0) = 1.0, end_lr: Float(ge=0) = 0.0):
        self.total_steps, self.power, self.end_lr = int(total_steps), float(power), float(end_lr)

    def __call__(self, lr0, k):
        frac = min(int(k), self.total_steps) / self.total_steps
        return (lr0 - self.end_lr) * (1.0 - frac) ** self.power + self.end_lr


# ---------------------------------------------------------------- cosine family
@SCHEDULES.register("cosine")
class Cosine(Schedule):
    """Cosine from lr0 down to eta_min over total_steps (Loshchilov & Hutter 2017; torch CosineAnnealingLR)."""

    def __init__(self, total_steps: Int(ge=1), eta_min: Float(ge=0) = 0.0, clamp: bool = True):
        # clamp=True holds eta_min after total_steps (Keras CosineDecay); clamp=False keeps
        # following the cosine back up, as torch's CosineAnnealingLR does.
        self.total_steps, self.eta_min, self.clamp = int(total_steps), float(eta_min), bool(clamp)

    def __call__(self, lr0, k):
        k = min(int(k), self.total_steps) if self.clamp else int(k)
        return cos_anneal(lr0, self.eta_min, k / self.total_steps)


@SCHEDULES.register("cosine_restarts", "sgdr")
class CosineRestarts(Schedule):
    """SGDR: cosine restarted after t0, t0·t_mult, … updates (Loshchilov & Hutter 2017; torch form)."""

    def __init__(
        self, t0: Int(ge=1), t_mult: Int(ge=1) = 1, eta_min: Float(ge=0) = 0.0, m_mul: Float(gt=0) = 1.0
    ):
        # m_mul (Keras CosineDecayRestarts) scales cycle i's peak above eta_min by m_mul^i; torch has none (1).
        self.t0, self.t_mult, self.eta_min, self.m_mul = int(t0), int(t_mult), float(eta_min), float(m_mul)

    def cycle(self, k: int) -> tuple[int, int, int]:
        """(cycle index i, position in the cycle, cycle length) of update k, in exact integers."""
        k, i, length = int(k), 0, self.t0
        if self.t_mult == 1:
            return k // length, k % length, length
        while k >= length:
            k, i, length = k - length, i + 1, length * self.t_mult
        return i, k, length

    def __call__(self, lr0, k):
        i, pos, length = self.cycle(k)
        peak = self.eta_min + (lr0 - self.eta_min) * self.m_mul**i
        return cos_anneal(peak, self.eta_min, pos / length)


Momentum = Float(ge=0, lt=1)  # a momentum or beta1, bounded as the optimizers bound theirs


@SCHEDULES.register("onecycle", "one_cycle")
class OneCycle(Schedule):
    """1cycle: max_lr/div_factor up to max_lr, then far down (Smith & Topin 2017; torch OneCycleLR).

    Like torch it sets the rate itself (the optimizer's lr is ignored), and by default
    (cycle_momentum=true, torch's default) it also cycles the momentum inversely to the rate:
    ``momentum(k)`` goes from max_momentum (0.95) down to base_momentum (0.85) at the peak of the
    rate, then back up to max_momentum, with the same phases and anneal as the rate (torch's
    formula). The runtime sets it as SGD's momentum or Adam's beta1 (torch's ``betas[0]``) before
    each update; with cycle_momentum=false ``momentum(k)`` is None and the optimizer keeps its own.
    Past total_steps rate and momentum hold their final values (torch raises there).
    """

    def __init__(
        self,
        max_lr: Float(gt=0),
        total_steps: Int(ge=2),
        pct_start: Float(gt=0, lt=1) = 0.3,
        div_factor: Float(gt=0) = 25.0,
        final_div_factor: Float(gt=0) = 1e4,
        anneal: Choice("cos", "linear") = "cos",
        cycle_momentum: bool = True,
        base_momentum: Momentum = 0.85,
        max_momentum: Momentum = 0.95,
    ):
        # No three_phase (torch's option: back down to the initial rate, then the final descent).
        error = self.validate(total_steps=total_steps, pct_start=pct_start, base_momentum=base_momentum,
                              max_momentum=max_momentum)
        if error:
            raise ValueError(error)
        self.max_lr, self.total_steps, self.pct_start = float(max_lr), int(total_steps), float(pct_start)
        self.div_factor, self.final_div_factor, self.anneal = float(div_factor), float(final_div_factor), anneal
        self.cycle_momentum = bool(cycle_momentum)
        self.base_momentum, self.max_momentum = float(base_momentum), float(max_momentum)

    @staticmethod
    def validate(
        total_steps: int | None = None,
        pct_start: float = 0.3,
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
        **_,
    ) -> str | None:
        if total_steps is not None and pct_start * total_steps <= 1:
            n = pct_start * total_steps
            return f"pct_start·total_steps must be > 1 so the rising phase has a length, got {n:g}"
        if base_momentum > max_momentum:  # momentum falls while the rate rises
            return (f"base_momentum must be <= max_momentum, got base_momentum={base_momentum:g}, "
                    f"max_momentum={max_momentum:g}")
        return None

    def _phase(self, k) -> tuple[bool, float]:
        """(whether update k is in the rising phase, fraction of its phase done), as torch finds them."""
        # torch's phase boundaries: phase 1 ends at step pct·T - 1, phase 2 at T - 1 (the -1 is torch's)
        up_end, down_end = self.pct_start * self.total_steps - 1.0, self.total_steps - 1.0
        k = min(float(k), down_end)
        if k <= up_end:
            return True, k / up_end
        return False, (k - up_end) / (down_end - up_end)

    def _anneal(self, a: float, b: float, frac: float) -> float:
        if self.anneal == "linear":
            return a + (b - a) * frac
        return cos_anneal(a, b, frac)

    def __call__(self, lr0, k):
        start = self.max_lr / self.div_factor
        end = start / self.final_div_factor
        rising, frac = self._phase(k)
        return self._anneal(start, self.max_lr, frac) if rising else self._anneal(self.max_lr, end, frac)

    def momentum(self, k):
        if not self.cycle_momentum:
            return None
        rising, frac = self._phase(k)
        lo, hi = self.base_momentum, self.max_momentum
        return self._anneal(hi, lo, frac) if rising else self._anneal(lo, hi, frac)


# ---------------------------------------------------------------- metric-driven
@SCHEDULES.register("reduce_on_plateau", "plateau")
class ReduceOnPlateau(Schedule):
    """Rate times factor after more than patience epochs without improvement (torch ReduceLROnPlateau)."""

    def __init__(
        self,
        factor: Float(gt=0, lt=1) = 0.1,
        patience: Int(ge=0) = 10,
        threshold: Float(ge=0) = 1e-4,
        threshold_mode: Choice("rel", "abs") = "rel",
        cooldown: Int(ge=0) = 0,
        min_lr: Float(ge=0) = 0.0,
        mode: Choice("min", "max") = "min",
        eps: Float(ge=0) = 1e-8,
    ):
        # torch semantics (Keras differs: it drops on the patience-th bad epoch, counts the last
        # cooldown epoch, and has only an absolute threshold). Drops on bad epoch patience+1.
        self.factor, self.patience, self.threshold = float(factor), int(patience), float(threshold)
        self.threshold_mode, self.cooldown, self.min_lr = threshold_mode, int(cooldown), float(min_lr)
        self.mode, self.eps = mode, float(eps)
        self.load_state_dict({})

    def improves(self, a: float) -> bool:
        best, th = self.best, self.threshold
        if self.mode == "min":
            return a < (best * (1.0 - th) if self.threshold_mode == "rel" else best - th)
        return a > (best * (1.0 + th) if self.threshold_mode == "rel" else best + th)

    def observe(self, metric: float) -> None:
        a = float(metric)
        if self.improves(a):
            self.best, self.bad_epochs = a, 0
        else:
            self.bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.bad_epochs = 0  # epochs in cooldown do not count
        if self.bad_epochs > self.patience:
            self.reductions += 1
            self.cooldown_counter, self.bad_epochs = self.cooldown, 0

    def __call__(self, lr0, k):
        # Replay the reductions from lr0 (a few at most): same multiplications, same bits as torch's
        # in-place lr, and the lr0 of the optimizer need not be stored.
        lr = lr0
        for _ in range(self.reductions):
            new = max(lr * self.factor, self.min_lr)
            if lr - new > self.eps:
                lr = new
        return lr

    def state_dict(self) -> dict:
        return {
            "best": self.best,
            "bad_epochs": self.bad_epochs,
            "cooldown_counter": self.cooldown_counter,
            "reductions": self.reductions,
        }

    def load_state_dict(self, state: dict) -> None:
        self.best = float(state.get("best", math.inf if self.mode == "min" else -math.inf))
        self.bad_epochs = int(state.get("bad_epochs", 0))
        self.cooldown_counter = int(state.get("cooldown_counter", 0))
        self.reductions = int(state.get("reductions", 0))


# ---------------------------------------------------------------- composition
class Warmup(Schedule):
    """Linear warm-up from start_factor·lr0 to lr0 over `steps` updates, then `inner` restarted at 0.

    torch ``SequentialLR([LinearLR(start_factor, 1.0, total_iters=steps), inner], milestones=[steps])``:
    lr[k] = lr0·(start_factor + (1 - start_factor)·k/steps) for k < steps, inner(lr0, k - steps) after.
    Keras' ``CosineDecay(warmup_steps=…)`` has the same shape (its warm-up starts at
    initial_learning_rate rather than a factor of the target).
    """

    def __init__(self, inner: Schedule, steps: int, start_factor: float = 0.0):
        if steps < 1 or not 0.0 <= start_factor <= 1.0:
            raise ValueError(f"warmup needs steps >= 1 and 0 <= start_factor <= 1, got {steps}, {start_factor}")
        self.inner, self.steps, self.start_factor = inner, int(steps), float(start_factor)

    def __call__(self, lr0, k):
        if k < self.steps:
            return lr0 * (self.start_factor + (1.0 - self.start_factor) * int(k) / self.steps)
        return self.inner(lr0, int(k) - self.steps)

    def momentum(self, k):
        # inner's momentum from k = steps on, shifted as the rate is; during the warm-up the value it
        # starts from (onecycle: max_momentum), as torch's SequentialLR leaves it there
        return self.inner.momentum(max(int(k) - self.steps, 0))

    def observe(self, metric: float) -> None:
        self.inner.observe(metric)

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)
