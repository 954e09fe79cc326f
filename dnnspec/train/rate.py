"""The learning rate's one owner: base rate, schedule, warm-up and the counting unit.

The base rate is the optimizer's `lr` hyper-parameter, read once here; from then on the updater
asks this object for the rate of each update and passes it to the update rule. It also records
the rate the last update used, which is what the per-epoch log reports.
"""

from __future__ import annotations

from ..program import TrainConfig
from ..schedules import Warmup


class LearningRate:
    def __init__(self, cfg: TrainConfig, base: float):
        schedule = cfg.schedule.build()
        self.schedule = Warmup(schedule, cfg.warmup, cfg.warmup_start) if cfg.warmup else schedule
        self.base = float(base)
        self.per_step = cfg.schedule_per == "step"
        self.warmup = cfg.warmup
        self.used: float | None = None  # the rate of the last update

    def index(self, step: int, epoch: int) -> int:
        """The schedule's counter for the update with 0-based index `step`, in 0-based `epoch`."""
        return step if self.per_step else epoch

    def __call__(self, step: int, epoch: int) -> float:
        return float(self.schedule(self.base, self.index(step, epoch)))

    def take(self, step: int, epoch: int) -> float:
        """The rate for this update, recorded as the one used."""
        self.used = self(step, epoch)
        return self.used

    def momentum(self, step: int, epoch: int) -> float | None:
        """The momentum (or Adam's beta1) a schedule sets for this update (onecycle), or None."""
        get = getattr(self.schedule, "momentum", None)
        return None if get is None else get(self.index(step, epoch))

    def restarts_after(self, steps_done: int, epoch: int) -> bool:
        """Whether the schedule jumps back up after epoch `epoch`: the end of a cycle (SGDR)."""
        k = steps_done if self.per_step else epoch + 1
        if k <= self.warmup or k == 0:
            return False
        return self.schedule(self.base, k) > self.schedule(self.base, k - 1)

    def observe(self, metric: float) -> None:
        self.schedule.observe(metric)

    def state_dict(self) -> dict:
        return self.schedule.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.schedule.load_state_dict(state)
