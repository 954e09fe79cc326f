"""One trial of a sweep, as an executor's worker runs it: a `dnnspec run` of the spec with the
trial's overrides (`session.run`: the same checkpoint, metrics log, signals and summary), its
files in the trial's folder, its data given (loaded once per worker process, or shipped once
through Ray's object store) instead of loaded per trial.

A trial's folder holds `model.h5` (the checkpoint; with `best=` in the spec the best epoch, the
latest state being `model.last.h5`), `metrics.jsonl` (one line per epoch) and, once it has
ended, `result.json`. A trial that was interrupted resumes from its latest checkpoint: a resumed
dnnspec run continues exactly (docs/architecture.md), so the trial ends with the weights an
uninterrupted run has.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

from .. import api, session
from ..check import check_file
from ..errors import UserError
from ..fileio import write_text

CHECKPOINT, LOG, RESULT = "model.h5", "metrics.jsonl", "result.json"
FINAL = ("done", "stopped", "diverged")  # statuses a rerun keeps; others run again

_DATA: dict[str, object] = {}  # this worker's loaded data sets, by data_key


def system_overrides(trial_dir: Path) -> list[str]:
    """Where a trial writes: its own checkpoint and metrics log (absolute paths)."""
    trial_dir = Path(trial_dir).resolve()
    return [f"train.checkpoint={trial_dir / CHECKPOINT}", f"train.log={trial_dir / LOG}"]


def data_key(program) -> str:
    """Trials whose data declarations (and validation hold-out) agree share one loaded data set."""
    return repr((program.data, program.train.validation))


class TrialModel(api.Model):
    """A Model whose `load_data` returns data loaded elsewhere, and whose `fit` also reports each
    epoch to `hook(trainer, logs)` (after the run's own saves) and asks the run to stop at its next
    safe point once `should_stop()` says so."""

    def __init__(self, program, splits=None, hook=None, should_stop=None, apply_reuse: bool = True):
        super().__init__(program, apply_reuse)
        self._splits = splits
        self._hook = hook
        self._should_stop = should_stop

    def load_data(self):
        if self._splits is None:
            key = data_key(self.program)
            if key not in _DATA:
                _DATA[key] = super().load_data()
            self._splits = _DATA[key]
        return dataclasses.replace(self._splits)  # a run may set attributes; the arrays are only read

    def fit(self, *args, on_epoch_end=None, on_step=None, **kwargs):
        hook, should_stop = self._hook, self._should_stop
        asked = []

        def stop_check():
            if should_stop is not None and not asked and should_stop():
                asked.append(True)
                import signal

                handler = getattr(signal.getsignal(signal.SIGINT), "__self__", None)
                if getattr(handler, "received", None) is None:  # not already stopping (a second one abandons)
                    signal.raise_signal(signal.SIGINT)  # session.run's handler: stop at the next safe point

        def epoch_end(trainer, logs):
            if on_epoch_end is not None:
                on_epoch_end(trainer, logs)
            if hook is not None:
                hook(trainer, logs)
            stop_check()

        def step(trainer):
            stop_check()
            if on_step is not None:
                on_step(trainer)

        return super().fit(*args, on_epoch_end=epoch_end, on_step=step, **kwargs)


def read_result(trial_dir: Path) -> dict | None:
    try:
        return json.loads((Path(trial_dir) / RESULT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def run_trial(task: dict, splits=None, hook=None, should_stop=None) -> dict:
    """Run (or resume) one trial; returns its record. `task`: index, name, spec, overrides, dir."""
    from filelock import FileLock, Timeout

    from ..ckpt import hdf5
    from ..train.loop import Diverged, Silent

    trial_dir = Path(task["dir"])
    trial_dir.mkdir(parents=True, exist_ok=True)
    record = {"index": task["index"], "name": task["name"], "status": "failed", "result": None, "history": [],
              "error": None, "seconds": None, "resumed": False}
    start = time.perf_counter()
    try:
        # one process per trial: a sweep killed hard leaves workers that stop at their next safe point
        with FileLock(str(trial_dir / ".trial.lock"), timeout=300):
            done = read_result(trial_dir)
            if done is not None and done.get("status") in FINAL:
                return {**record, **{k: done.get(k) for k in record if k in done}, "skipped": True}
            program = check_file(task["spec"], [*task["overrides"], *system_overrides(trial_dir)])
            latest = session.last_path(program)
            resume = latest if latest is not None and latest.is_file() and hdf5.is_checkpoint(latest) else None
            if resume is None:
                _clear(trial_dir)  # a log of an attempt that saved nothing: start it again
            model = TrialModel(program, splits, hook, should_stop, apply_reuse=resume is None)
            record["resumed"] = resume is not None
            messages: list[str] = []
            try:
                result = session.run(model, reporter=Silent(), log=messages.append, resume=resume)
                record.update(status="done", result=result)
            except session.RunInterrupted as e:
                record.update(status="interrupted", error=str(e))
            except Diverged as e:
                record.update(status="diverged", error=str(e))
            except UserError as e:
                record.update(status="failed", error=str(e))
            except SystemExit:  # Ray Tune ends a trial its scheduler stopped by SystemExit in report()
                record.update(status="stopped", history=list(model.history),
                              seconds=round(time.perf_counter() - start, 3))
                _write_result(trial_dir, task, record)
                raise
            record["history"] = list(model.history)
    except Timeout:
        record["error"] = f"{trial_dir} is held by another process running this trial"
    record["seconds"] = round(time.perf_counter() - start, 3)
    if record["status"] in FINAL:
        _write_result(trial_dir, task, record)
    return record


def _clear(trial_dir: Path) -> None:
    for name in (LOG, RESULT):
        try:
            (trial_dir / name).unlink()
        except FileNotFoundError:
            pass


def _write_result(trial_dir: Path, task: dict, record: dict) -> None:
    doc = {"format": "dnnspec-trial", "version": 1, "spec": task.get("spec_given", task["spec"]),
           "overrides": task["overrides"], **record}
    write_text(trial_dir / RESULT, json.dumps(doc, indent=1, default=_jsonable) + "\n")


def _jsonable(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)


def worker_threads(threads: int) -> None:
    """Limit this process's BLAS (and OpenMP) thread pools."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(threads)
