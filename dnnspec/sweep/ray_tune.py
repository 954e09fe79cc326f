"""The Ray executor (`pip install "dnnspec[ray]"`): the same trials on Ray Tune, on a local Ray
started on demand (`ray.init(num_cpus=workers × threads)`) or on a running cluster
(`--address`). Each trial is a Tune function trainable that runs `runner.run_trial` (so the
same files and the same results as the local executor) and reports every epoch's metrics to
Tune from the run's on_epoch_end hook, so ASHA or median stopping can end bad trials early.
Each distinct data set is loaded once here and put in the object store (`ray.put`); trials read
it from there (zero-copy), not from disk.

On a cluster of several machines the sweep folder must be on a file system every node sees
(trials write their checkpoints there), and dnnspec must be installed on every node.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserError
from .space import SweepError

# a sweep metric and the key of an epoch's log row it is tracked by while trials run
EPOCH_METRIC = {"val_accuracy": "val_accuracy", "val_loss": "val_loss", "train_accuracy": "accuracy",
                "train_loss": "loss", "accuracy": "accuracy", "loss": "loss"}


def import_ray():
    try:
        import ray
        from ray import tune
    except ImportError:
        raise UserError("--executor ray needs Ray Tune, which is not installed: pip install \"dnnspec[ray]\" "
                        "(or leave out --executor ray: the local executor needs nothing)") from None
    return ray, tune


def _trainable(config, tasks=None, data=None, threads=1, cwd=None):
    """One trial inside a Ray worker."""
    import ray
    from ray import tune

    from .runner import run_trial, worker_threads

    worker_threads(threads)
    if cwd and os.path.isdir(cwd):
        os.chdir(cwd)  # relative paths of a spec (reuse, data) mean what they meant to the sweep
    task = tasks[config["index"]]
    splits = ray.get(data[task["data_key"]])

    def report(trainer, logs):
        cfg = trainer.cfg
        if trainer.state.epoch >= cfg.epochs or trainer.state.stopped_early:
            return  # the last epoch: the trial ends by itself, with its summary (a report could stop it first)
        tune.report({k: (int(v) if k == "epoch" else float(v)) for k, v in logs.items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool)})

    record = run_trial(task, splits=splits, hook=report)
    if record["status"] not in ("done", "diverged"):  # Tune records it as an error, with this message
        raise RuntimeError(f"{task['name']} {record['status']}: {record.get('error')}")


def run_ray(tasks: list[dict], data_loaders: dict, workers: int | None, threads: int | None, address: str | None,
            scheduler: str, metric: str, mode: str, max_epochs: int, storage: Path, name: str, on_done, log) -> bool:
    """Run `tasks` on Ray Tune; `on_done(record)` after each (in this process). `data_loaders`:
    data_key -> a function returning the loaded Splits. Returns False when interrupted."""
    if not tasks:
        return True
    ray, tune = import_ray()
    from ray.tune import Callback

    from .runner import read_result

    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's older output, silenced by _quiet() below
    sched = None
    if scheduler != "none":
        tracked = EPOCH_METRIC.get(metric)
        if tracked is None:
            raise SweepError(f"--scheduler {scheduler} stops trials on a metric of every epoch; {metric} is known only "
                             f"at the end (use val_accuracy, val_loss, train_accuracy or train_loss)")
        from ray.tune.schedulers import ASHAScheduler, MedianStoppingRule

        sched = (ASHAScheduler(time_attr="epoch", metric=tracked, mode=mode, max_t=max(max_epochs, 1), grace_period=1,
                               reduction_factor=3) if scheduler == "asha" else
                 MedianStoppingRule(time_attr="epoch", metric=tracked, mode=mode, grace_period=1,
                                    min_samples_required=3))
    from .local import plan_workers

    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:  # a local Ray with the CPUs the trials are to use
            w, th, _ = plan_workers(len(tasks), workers, threads)
            ray.init(num_cpus=w * th, include_dashboard=False, log_to_driver=False,
                     configure_logging=True, logging_level="ERROR")
        started = True
    cpus = int(ray.cluster_resources().get("CPU", 0))
    if cpus < (threads or 1):
        raise UserError(f"the Ray cluster has {cpus} CPUs; a trial needs {threads or 1} (--threads)")
    workers, threads, note = plan_workers(len(tasks), workers, threads, cores=cpus)
    log(f"ray: {'the cluster at ' + address if address else 'local Ray'}, {note.replace('cores', 'Ray CPUs')}"
        + (f"; {scheduler} early stopping on {EPOCH_METRIC.get(metric)}" if sched else ""))
    try:
        refs = {key: ray.put(load()) for key, load in data_loaders.items()}  # once per data set
        by_index = {t["index"]: t for t in tasks}
        trainable = tune.with_parameters(_trainable, tasks=by_index, data=refs, threads=threads, cwd=os.getcwd())
        trainable = tune.with_resources(trainable, {"cpu": threads})
        recorder = _Recorder(by_index, on_done, read_result, Callback)
        tuner = tune.Tuner(
            trainable,
            param_space={"index": tune.grid_search(sorted(by_index))},
            tune_config=tune.TuneConfig(scheduler=sched, max_concurrent_trials=workers, reuse_actors=True),
            run_config=tune.RunConfig(name=name, storage_path=str(Path(storage).resolve()), verbose=0,
                                      callbacks=[recorder.callback, _quiet()]),
        )
        try:
            tuner.fit()
        except KeyboardInterrupt:
            recorder.finish_unreported(interrupted=True)
            return False
        recorder.finish_unreported(interrupted=False)
        return not recorder.interrupted
    finally:
        if started:
            ray.shutdown()


class _Recorder:
    """A Tune callback (in this process) that turns each ended Tune trial into a sweep record."""

    def __init__(self, tasks: dict, on_done, read_result, base):
        self.tasks, self.on_done, self.read_result = tasks, on_done, read_result
        self.reported: set[int] = set()
        self.interrupted = False
        outer = self

        class Cb(base):
            def on_trial_complete(self, iteration, trials, trial, **info):
                outer.complete(trial, error=None)

            def on_trial_error(self, iteration, trials, trial, **info):
                outer.complete(trial, error=_error_text(trial))

        self.callback = Cb()

    def complete(self, trial, error) -> None:
        index = trial.config["index"]
        task = self.tasks[index]
        if index in self.reported:
            return
        self.reported.add(index)
        doc = self.read_result(task["dir"])
        last = dict(trial.last_result or {})
        if doc is not None and doc.get("status") in ("done", "diverged"):
            record = {k: doc.get(k) for k in ("index", "name", "status", "result", "history", "error", "seconds",
                                              "resumed")}
        elif error is not None:
            record = {"index": index, "name": task["name"], "status": "failed", "error": str(error)[-2000:]}
        else:  # ended by the scheduler before its last epoch
            history = (doc or {}).get("history") or []
            record = {"index": index, "name": task["name"], "status": "stopped", "history": history,
                      "last_epoch": int(last["epoch"]) if "epoch" in last else None,
                      "seconds": last.get("time_total_s"),
                      "result": {k: last[k] for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in last}}
        self.on_done(record)

    def finish_unreported(self, interrupted: bool) -> None:
        for index, task in self.tasks.items():
            if index not in self.reported:
                self.reported.add(index)
                self.interrupted = True
                self.on_done({"index": index, "name": task["name"],
                              "status": "interrupted" if interrupted else "pending",
                              "error": "the sweep ended before this trial did"})


def _error_text(trial) -> str:
    """The last line of the trial's exception (the dnnspec message), not Ray's traceback."""
    try:
        err = trial.get_pickled_error() or trial.get_error()
    except Exception:  # noqa: BLE001 - any failure to read it: say so
        err = None
    text = str(err) if err is not None else "the trial failed in Ray"
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    dnnspec_line = next((ln for ln in reversed(lines) if "RuntimeError: trial-" in ln or ln.startswith("trial-")), None)
    return (dnnspec_line or (lines[-1] if lines else text)).split("RuntimeError: ", 1)[-1]


def _quiet():
    """Tune's per-trial progress lines, silenced: the sweep prints its own line per trial."""
    from ray.tune.progress_reporter import TrialProgressCallback

    class Quiet(TrialProgressCallback):
        def log_result(self, trial, result, error=False):
            pass

        def on_trial_complete(self, iteration, trials, trial, **info):
            pass

    return Quiet()
