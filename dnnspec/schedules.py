"""Learning-rate schedules. ``schedule(lr0, k)`` is the rate of update k+1 (k counts from 0),
in the schedule's unit (per step or per epoch). Closed forms follow torch.optim.lr_scheduler.
"""

from __future__ import annotations

from .registry import Registry

SCHEDULES = Registry("schedule")


class Schedule:
    """Base: implement ``__call__(lr0, k) -> float``. Stateful schedules also implement
    ``observe(metric)`` (called once per epoch) and ``state_dict``/``load_state_dict``."""

    def __call__(self, lr0: float, k: int) -> float:
        raise NotImplementedError

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
