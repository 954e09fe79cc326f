"""The job of `dnnspec run`: where its files go (checkpoint, best/last, snapshots, metrics log),
when it saves, and the summary it ends with. The Model (`api`) trains; this decides the files.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .api import Model
from .ckpt import hdf5
from .errors import CheckpointError
from .program import Program


def jsonl_path(program: Program) -> Path | None:
    cfg = program.train
    if cfg.log:
        return Path(cfg.log)
    if cfg.checkpoint:
        return Path(cfg.checkpoint).with_suffix(".jsonl")
    return None


def last_path(program: Program) -> Path | None:
    """Where the latest state goes: the checkpoint itself, or <name>.last.h5 when it keeps the best."""
    cfg = program.train
    if not cfg.checkpoint:
        return None
    path = Path(cfg.checkpoint)
    return path if cfg.best is None else path.with_name(path.stem + ".last" + path.suffix)


def snapshot_path(program: Program, i: int) -> Path:
    path = Path(program.train.checkpoint)
    return path.with_name(f"{path.stem}.snapshot{i}{path.suffix}")


def run(model: Model, reporter=None, log=print, resume=None) -> dict:
    """Train as the spec says, writing checkpoints and the metrics log; returns the final summary.

    `resume` is a checkpoint of this spec to continue from (weights, optimizer slots, schedule,
    early-stopping counters, RNG streams, position inside the epoch, history).
    """
    start = time.perf_counter()
    cfg = model.program.train
    if resume is not None:
        ckpt = hdf5.load(resume)
        if ckpt.state.get("derived"):
            raise CheckpointError(f"{resume}: a file made by `ckpt rename/extract/merge` holds no training run to "
                                  "resume; use it with `reuse` instead")
        model.restore(ckpt)
    splits = model.load_data()
    log_path = jsonl_path(model.program)
    run_id = time.strftime("%Y%m%dT%H%M%S")
    best_path = Path(cfg.checkpoint) if cfg.checkpoint and cfg.best is not None else None
    latest = last_path(model.program)
    snapshots: list[Path] = []

    def on_epoch_end(trainer, logs):
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "a") as fh:
                fh.write(json.dumps({"run": run_id, **{k: v for k, v in logs.items() if k != "best"}}) + "\n")
        if best_path is not None and logs.get("best"):
            model.save(best_path)
        if latest is not None:
            model.save(latest)
        last_epoch = trainer.state.epoch >= cfg.epochs or trainer.state.stopped_early
        if cfg.snapshots and (trainer.updater.rate.restarts_after(trainer.updater.t, trainer.state.epoch - 1) or last_epoch):
            snapshots.append(model.save(snapshot_path(model.program, len(snapshots) + 1)))

    def on_step(trainer):
        if cfg.every_steps and latest is not None and trainer.updater.t % cfg.every_steps == 0:
            model.save(latest)

    history = model.fit(splits.train[0], splits.train[1], validation_data=splits.val, reporter=reporter,
                        on_epoch_end=on_epoch_end, on_step=on_step)
    es = cfg.early_stopping
    if latest is not None and history and (cfg.average or (es is not None and es.restore_best)):
        model.save(latest)  # now holding the restored (or averaged) weights the run ends with
    if model.trainer.cache_report:
        log(model.trainer.cache_report)
    if best_path is not None and best_path.is_file():
        best = hdf5.load(best_path)  # the run's result is the best checkpoint's weights
        for n, arr in model.variables.items():
            arr[...] = best.variables[n].value
    last = history[-1] if history else {}
    result = {
        "epochs_run": len(history),
        "train_loss": last.get("loss"),  # running averages over the last epoch, as Keras reports them
        "train_accuracy": last.get("accuracy"),
        "val_loss": None,  # val and test: the final weights (the best checkpoint's, if best= is set)
        "val_accuracy": None,
        "test_loss": None,
        "test_accuracy": None,
        "stopped_early": model.trainer.state.stopped_early,
        "checkpoint": str(best_path or latest) if (best_path or latest) is not None else None,
        "log": str(log_path) if log_path is not None else None,
        "frozen_cache": model.trainer.cache_report,
        "snapshots": [str(p) for p in snapshots],
    }
    for split in ("val", "test"):
        data = getattr(splits, split)
        if data is not None:
            metrics = model.evaluate(*data)
            result[f"{split}_loss"] = metrics["loss"]
            result[f"{split}_accuracy"] = metrics.get("accuracy")
    result["seconds"] = round(time.perf_counter() - start, 3)
    return result
