"""The job of `dnnspec run`: where its files go (checkpoint, best/last, snapshots, metrics log),
when it saves, what it refuses, how it stops, and the summary it ends with. The Model (`api`)
trains; this decides the files.

Guarantees (docs/reliability.md): every output is checked before training starts (a file that is
not dnnspec's own is never replaced, the folders are writable); one run at a time writes a
checkpoint (an advisory lock); the metrics log gets an epoch's line only after that epoch's
checkpoints are on disk; Ctrl-C (or SIGTERM) at any moment ends the run at the next safe point
with a resumable checkpoint, and a second Ctrl-C ends the process at once (a save in progress is abandoned; the
previous checkpoint stays).
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .api import Model
from .ckpt import hdf5
from .errors import CheckpointError, UserError
from .fileio import RunLock, append_line, check_output, check_writable
from .program import Program


class RunInterrupted(UserError):
    """The run was stopped by a signal; the message names the checkpoint to resume from."""

    exit_code = 130


class _Stop(Exception):
    """Raised from a hook at a safe point (between steps, after an epoch's saves)."""


# ---------------------------------------------------------------- where the files go
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


def is_metrics_log(path: Path) -> bool:
    """A JSON-lines file whose lines are objects with a "run" key: a log dnnspec appends to."""
    try:
        with open(path, encoding="utf-8") as fh:
            first = fh.readline()
        return first == "" or (isinstance(row := json.loads(first), dict) and "run" in row)
    except (OSError, ValueError):
        return False


@dataclass
class Outputs:
    best: Path | None
    latest: Path | None
    log: Path | None
    snapshots: list[Path] = field(default_factory=list)

    @classmethod
    def of(cls, program: Program) -> "Outputs":
        cfg = program.train
        best = Path(cfg.checkpoint) if cfg.checkpoint and cfg.best is not None else None
        return cls(best, last_path(program), jsonl_path(program))

    def check(self, program: Program) -> None:
        """Before any work: refuse files that are not dnnspec's own, and unwritable folders."""
        for path in (self.best, self.latest):
            if path is not None:
                check_output(path, hdf5.is_checkpoint, "checkpoint", replace_ours=True)
        if self.log is not None:
            check_output(self.log, is_metrics_log, "metrics log (JSON lines)", replace_ours=True)
        if program.pretrain is not None and program.pretrain.checkpoint:
            check_output(Path(program.pretrain.checkpoint), hdf5.is_checkpoint, "checkpoint", replace_ours=True)
            check_writable(Path(program.pretrain.checkpoint))
        if program.train.snapshots and program.train.checkpoint:
            for i in (1, 2):  # the names snapshots take: ordinary checkpoints of this run
                check_output(snapshot_path(program, i), hdf5.is_checkpoint, "checkpoint", replace_ours=True)
            check_writable(snapshot_path(program, 1))

    def lock_path(self) -> Path | None:
        return self.latest or self.log

    def existing(self) -> str | None:
        """The file a user should use: the best checkpoint if written, else the latest state."""
        for path in (self.best, self.latest):
            if path is not None and path.is_file():
                return str(path)
        return None


# ---------------------------------------------------------------- signals
class Interrupts:
    """SIGINT/SIGTERM while training: the first asks the run to stop at the next safe point (a
    save in progress completes); a second one ends the process at once (exit 130/143) without
    unwinding: a save in progress is abandoned atomically (its temporary file is cleaned by the
    next save) and the previous checkpoint stays. Ending at once, rather than raising
    KeyboardInterrupt, cannot be swallowed by a destructor or a weakref callback."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self, last_good=lambda: None, after_stop=None):
        self.received: int | None = None
        self.last_good = last_good  # -> the path of the last complete checkpoint, for the message
        # The handler a further signal meets once a signal has stopped the run and the run is on its
        # way out: None gives the caller back its own handlers (a library user); the CLI, which then
        # prints the run's message and exits, passes SIG_IGN (a KeyboardInterrupt on the way out
        # would replace the message that names the checkpoint to resume).
        self.after_stop = after_stop
        self._old: dict[int, object] = {}

    def _handle(self, signum, frame):
        if self.received is None:
            self.received = signum
            return
        path = self.last_good()
        where = f"; the last complete state is {path}: continue it with --resume {path}" if path else ""
        os.write(2, f"error: interrupted again: stopped at once{where}\n".encode())
        os._exit(128 + signum)

    def __enter__(self) -> "Interrupts":
        if threading.current_thread() is threading.main_thread():  # handlers live in the main thread
            for name in self.SIGNALS:
                num = getattr(signal, name, None)
                if num is not None:
                    self._old[num] = signal.signal(num, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        keep = self.after_stop if self.received is not None else None
        for num, old in self._old.items():
            signal.signal(num, old if keep is None else keep)

    @property
    def exit_code(self) -> int:
        return 128 + int(self.received or signal.SIGINT)


# ---------------------------------------------------------------- resume
def check_resume(model: Model, ckpt: hdf5.Checkpoint, path, log) -> None:
    """Refuse a checkpoint of another model or optimizer; warn where only settings differ."""
    if ckpt.state.get("derived"):
        raise CheckpointError(f"{path}: a file made by `ckpt rename/extract/merge` holds no training run to "
                              "resume; use it with `reuse` instead")
    mine = {n: tuple(i.shape) for n, i in model.plan.infos.items()}
    theirs = {n: tuple(r.value.shape) for n, r in ckpt.variables.items()}
    problems = [f"missing {n}" for n in mine if n not in theirs]
    problems += [f"extra {n}" for n in theirs if n not in mine]
    problems += [f"{n} is {theirs[n]} there, {mine[n]} here" for n in mine if n in theirs and theirs[n] != mine[n]]
    if problems:
        shown = "; ".join(problems[:6]) + (f"; ... ({len(problems)} differences)" if len(problems) > 6 else "")
        raise CheckpointError(f"{path} is a checkpoint of a different model and cannot be resumed by this spec: "
                              f"{shown}")
    wanted = model.program.train.optimizer.name
    if ckpt.optimizer is not None and ckpt.optimizer["name"] != wanted:
        slots = ", ".join(ckpt.optimizer.get("slots", {})) or "none"
        raise CheckpointError(f"{path} was trained with {ckpt.optimizer['name']} (optimizer slots: {slots}); "
                              f"this spec uses {wanted}: resuming would lose the optimizer's state "
                              "(use `reuse` to start a new run from its weights)")
    if ckpt.spec.strip() != model.program.canonical.strip():
        diff = [line for line in difflib.unified_diff(ckpt.spec.splitlines(), model.program.canonical.splitlines(),
                                                      lineterm="", n=0)
                if line[:1] in "+-" and not line.startswith(("+++", "---"))]
        log(f"warning: resuming {path} with settings that differ from the spec it was trained with:\n  "
            + "\n  ".join(diff[:20]))


def _nothing_to_do(model: Model) -> str | None:
    st, cfg = model.trainer.state, model.program.train
    if st.stopped_early:
        es = cfg.early_stopping
        why = f" ({es.monitor} stopped improving for {es.patience} epochs)" if es is not None else ""
        return (f"nothing to train: the resumed run had stopped early at epoch {st.epoch}{why}; early stopping "
                "ended it, so a larger train.epochs does not continue it")
    if st.epoch >= cfg.epochs:
        return (f"nothing to train: the resumed run has completed {st.epoch} of {cfg.epochs} epochs; raise "
                "train.epochs (--set train.epochs=N) to train on")
    return None


# ---------------------------------------------------------------- the job
def run(model: Model, reporter=None, log=print, resume=None, monitor=None, hooks=(), after_stop=None) -> dict:
    """Train as the spec says, writing checkpoints and the metrics log; returns the final summary.

    `resume` is a checkpoint of this spec to continue from (weights, optimizer slots, schedule,
    early-stopping counters, RNG streams, position inside the epoch, history). `monitor` (a
    `diagnose.LayerMonitor`) adds per-layer rows to the log every N updates; each of `hooks` (e.g.
    a TensorBoard writer) gets `epoch_end(logs)` and `layer_stats(step, stats)`, and is closed at
    the end. They are built by the caller, so nothing here depends on diagnostics. `after_stop`: the
    handler for SIGINT/SIGTERM once a signal has stopped the run (None: the caller's own again).
    """
    start = time.perf_counter()
    program, cfg = model.program, model.program.train
    out = Outputs.of(program)
    out.check(program)
    ckpt = None
    if resume is not None:
        ckpt = hdf5.load(resume)
        check_resume(model, ckpt, resume, log)
    lock = RunLock(out.lock_path()) if out.lock_path() is not None else contextlib.nullcontext()
    last_good = lambda: str(out.latest) if out.latest is not None and out.latest.is_file() else None  # noqa: E731
    # the handlers first: a signal while the lock is taken stops the run at its first safe point
    with Interrupts(last_good, after_stop) as signals, lock:
        try:
            if ckpt is not None:
                model.restore(ckpt)
                idle = _nothing_to_do(model)
                if idle:
                    log(idle)
            splits = model.load_data()
            run_id = time.strftime("%Y%m%dT%H%M%S")
            if model.pretraining is not None and not model.pretraining.done:
                _pretrain(model, splits, out, signals, run_id, log)
            try:
                history = _train(model, splits, out, reporter, signals, monitor, hooks, run_id)
            finally:
                for hook in hooks:
                    hook.close()
            es = cfg.early_stopping
            if out.latest is not None and history and (cfg.average or (es is not None and es.restore_best)):
                model.save(out.latest)  # now holding the restored (or averaged) weights the run ends with
            if model.trainer.cache_report:
                log(model.trainer.cache_report)
            if model.trainer.thread_report:
                log(model.trainer.thread_report)
            return _result(model, splits, out, history, start)
        except KeyboardInterrupt:  # a second signal: whatever was being saved was abandoned
            raise _interrupted(model, out, signals.exit_code, saved=False) from None


def _pretrain(model: Model, splits, out: Outputs, signals: Interrupts, run_id: str, log) -> None:
    """The pretraining phase with the same saving and stopping as training: the latest state
    (with the phase record) after every epoch and at a signal, the pretrain checkpoint after
    every layer, a metrics-log line per layer and epoch."""
    pre = model.program.pretrain
    target = Path(pre.checkpoint) if pre.checkpoint else None

    def on_step(greedy):
        if signals.received is not None:
            raise _Stop

    def on_epoch_end(greedy, row):
        if out.latest is not None:
            model.save(out.latest)
        if out.log is not None:
            append_line(out.log, json.dumps({"run": run_id, **row}))
        log(f"pretrain {row['layer']} epoch {row['epoch']}/{pre.epochs}: reconstruction error {row['loss']:.4f} "
            f"({row['seconds']:.1f}s)")
        if signals.received is not None:
            raise _Stop

    def on_layer_end(greedy, name):
        if target is not None:
            model.save(target)
            log(f"pretrained {name}: saved {target}")

    try:
        model.pretrain(model.unlabeled_inputs(splits), on_step=on_step, on_epoch_end=on_epoch_end,
                       on_layer_end=on_layer_end)
    except _Stop:
        if out.latest is not None:
            model.save(out.latest)  # the phase's state at this step: resumable exactly
        raise _interrupted(model, out, signals.exit_code, saved=True) from None


def _train(model: Model, splits, out: Outputs, reporter, signals: Interrupts, monitor=None, hooks=(),
           run_id: str | None = None) -> list[dict]:
    """Fit with the saving hooks; a signal stops at the next safe point with the state saved."""
    program, cfg = model.program, model.program.train
    run_id = run_id or time.strftime("%Y%m%dT%H%M%S")
    saved_at: list[int] = []  # the step of the last save of the latest state

    def save_latest(trainer):
        if out.latest is not None:
            model.save(out.latest)
            saved_at[:] = [trainer.updater.t]

    def on_epoch_end(trainer, logs):
        if out.best is not None and logs.get("best"):
            model.save(out.best)
        save_latest(trainer)
        last_epoch = trainer.state.epoch >= cfg.epochs or trainer.state.stopped_early
        rate = trainer.updater.rate
        if cfg.snapshots and (rate.restarts_after(trainer.updater.t, trainer.state.epoch - 1) or last_epoch):
            out.snapshots.append(model.save(snapshot_path(program, len(out.snapshots) + 1)))
        if out.log is not None:  # after the saves: the log never lists an epoch that is not on disk
            append_line(out.log, json.dumps({"run": run_id, **{k: v for k, v in logs.items() if k != "best"}}))
        for hook in hooks:
            hook.epoch_end(logs)
        if signals.received is not None:
            raise _Stop

    def on_step(trainer):
        if monitor is not None and (row := monitor.on_step(trainer)) is not None:
            if out.log is not None:
                append_line(out.log, json.dumps({"run": run_id, **row}))
            for hook in hooks:
                hook.layer_stats(row["step"], row["layers"])
        if cfg.every_steps and trainer.updater.t % cfg.every_steps == 0:
            save_latest(trainer)
        if signals.received is not None:
            raise _Stop

    try:
        return model.fit(splits.train[0], splits.train[1], validation_data=splits.val, reporter=reporter,
                         on_epoch_end=on_epoch_end, on_step=on_step)
    except _Stop:
        if out.latest is not None and saved_at != [model.step]:
            model.save(out.latest)  # the state at this step, mid-epoch or not: resumable exactly
        raise _interrupted(model, out, signals.exit_code, saved=True) from None


def _interrupted(model: Model, out: Outputs, code: int, saved: bool) -> RunInterrupted:
    st = model.trainer.state
    where = f"epoch {st.epoch + (1 if st.position else 0)}, step {model.step}"
    greedy = model.pretraining
    if greedy is not None and not greedy.done:
        ps = greedy.state
        where = f"pretraining {greedy.layer_name()}, epoch {ps.epoch + (1 if ps.position else 0)}"
    resumable = str(out.latest) if out.latest is not None and out.latest.is_file() else None
    if resumable is None:
        msg = f"interrupted at {where}; nothing saved (the spec writes no checkpoint)"
    elif saved:
        msg = f"interrupted at {where}; the run is saved in {resumable}: continue it with --resume {resumable}"
    else:
        msg = (f"interrupted again while saving at {where}; that save was abandoned, the last complete state is "
               f"{resumable}: continue it with --resume {resumable}")
    err = RunInterrupted(msg)
    err.exit_code = code
    return err


def _result(model: Model, splits, out: Outputs, history: list[dict], start: float) -> dict:
    cfg, st = model.program.train, model.trainer.state
    es = cfg.early_stopping
    weights, weights_epoch = "last", st.epoch
    if out.best is not None and out.best.is_file():
        best = hdf5.load(out.best)  # the run's result is the best checkpoint's weights
        for n, arr in model.variables.items():
            arr[...] = best.variables[n].value
        weights, weights_epoch = "best checkpoint", st.best_epoch
    elif es is not None and es.restore_best and st.es_best is not None and model.trainer.best_weights is not None:
        weights = "early stopping's best"
        weights_epoch = next((row["epoch"] for row in model.history if row.get(es.monitor) == st.es_best), None)
    elif cfg.average and model.trainer.updater.averaged:
        weights, weights_epoch = f"{cfg.average} average", None
    last = model.history[-1] if model.history else {}
    result = {
        "epochs_run": len(model.history),  # of the whole run, resumed parts included
        "epochs_trained_now": len(history),
        "last_epoch": st.epoch,
        # running averages over the last epoch while its weights changed, as Keras reports them
        "train_loss": last.get("loss"),
        "train_accuracy": last.get("accuracy"),
        # val and test: the weights the run ends with, from `weights_epoch` ("weights" says which)
        "val_loss": None,
        "val_accuracy": None,
        "test_loss": None,
        "test_accuracy": None,
        "weights": weights,
        "weights_epoch": weights_epoch,
        "best_epoch": st.best_epoch if cfg.best else None,
        "stopped_early": st.stopped_early,
        "checkpoint": out.existing(),
        "log": str(out.log) if out.log is not None and out.log.is_file() else None,
        "frozen_cache": model.trainer.cache_report,
        "threads": model.trainer.thread_report,
        "snapshots": [str(p) for p in out.snapshots],
    }
    final = {}
    for split in ("train", "val", "test"):
        data = getattr(splits, split)
        if data is not None:
            metrics = model.evaluate(*data)
            final[f"{split}_loss"], final[f"{split}_accuracy"] = metrics["loss"], metrics.get("accuracy")
            if split != "train":
                result[f"{split}_loss"], result[f"{split}_accuracy"] = final[f"{split}_loss"], final[f"{split}_accuracy"]
    result["final_weights"] = final  # every split, in inference mode, of the weights the run ends with
    result["seconds"] = round(time.perf_counter() - start, 3)
    return result
