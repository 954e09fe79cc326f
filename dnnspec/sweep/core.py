"""A sweep from start to end: plan the trials, check every one before any runs, run them on an
executor, record each in the sweep folder as it ends, narrow and run again (coarse to fine).

The sweep folder:

    DIR/manifest.json       the definition, the rounds, every trial's overrides, status, metrics
    DIR/trial-001/          model.h5 (+ model.last.h5 with `best=`), metrics.jsonl, result.json
    DIR/ray/                Ray Tune's own files (only with --executor ray)

`manifest.json` is rewritten atomically after every trial. Running the same command again
continues the sweep: trials that ended (done, stopped by a scheduler, diverged) are kept, an
interrupted trial resumes from its latest checkpoint, the others run. A trial is a deterministic
dnnspec run, so its results do not depend on the executor or on the interruption.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..check import check_file
from ..errors import SpecError, UserError
from ..fileio import RunLock, write_text
from . import runner
from .space import SPEC_AXIS, SweepDef, SweepError, Trial, plan_round

MANIFEST = "manifest.json"
FORMAT = "dnnspec-sweep"


class SweepInterrupted(UserError):
    exit_code = 130


class TrialSpecError(SpecError):
    """A trial's overrides do not check: the located errors, under the trial's number."""

    def __init__(self, failures: list[tuple[Trial, SpecError]], total: int):
        trial, first = failures[0]
        super().__init__(first.diagnostics, first.sources, first.file, first.stopped)
        parts = []
        for t, e in failures[:3]:
            parts.append(f"trial {t.index} of {total} ({t.name}: {t.describe()}) does not check; nothing was run:\n{e}")
        if len(failures) > 3:
            parts.append(f"... and {len(failures) - 3} more trials with errors")
        self.args = ("\n".join(parts),)
        self.trial = trial.index


# ---------------------------------------------------------------- records
def metrics_of(record: dict) -> dict:
    """The metrics a trial is ranked by, from its run's summary (or its last reported epoch)."""
    res = record.get("result") or {}
    out = {}
    if record.get("status") == "done":
        for k in ("val_accuracy", "val_loss", "test_accuracy", "test_loss", "train_accuracy", "train_loss"):
            out[k] = res.get(k)
        out["accuracy"], out["loss"] = res.get("train_accuracy"), res.get("train_loss")
    else:  # stopped: the metrics of its last epoch
        for k in ("val_accuracy", "val_loss", "accuracy", "loss"):
            out[k] = res.get(k)
        out["train_accuracy"], out["train_loss"] = res.get("accuracy"), res.get("loss")
    return out


def rank(trials: list[dict], metric: str, mode: str) -> list[dict]:
    """Trials with a value of `metric`, best first (ties: the lower trial number)."""
    scored = [t for t in trials
              if t.get("status") in ("done", "stopped") and (t.get("metrics") or {}).get(metric) is not None]
    sign = -1 if mode == "max" else 1
    return sorted(scored, key=lambda t: (sign * t["metrics"][metric], t["index"]))


class Manifest:
    """The sweep folder's manifest.json, rewritten atomically on every change."""

    def __init__(self, root: Path, doc: dict):
        self.root, self.doc = root, doc

    @property
    def path(self) -> Path:
        return self.root / MANIFEST

    @classmethod
    def open(cls, root: Path, d: SweepDef) -> "Manifest":
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise SweepError(f"{root} is a file; -o names the sweep's folder")
        path = root / MANIFEST
        if path.is_file():
            doc = read_manifest(root)
            if doc["definition"] != json.loads(json.dumps(d.to_json())):
                old = SweepDef.from_json(doc["definition"])
                raise SweepError(f"{root} holds another sweep ({_differs(old, d)}); rerun it with the same spec and "
                                 "options to continue it, or give a new folder with -o")
            return cls(root, doc)
        if root.is_dir() and any(root.iterdir()):
            raise SweepError(f"{root} exists and is not a sweep folder (no {MANIFEST}); "
                             "give a new or empty folder with -o")
        return cls(root, {"format": FORMAT, "version": 1, "definition": d.to_json(), "rounds": [], "trials": []})

    def save(self) -> None:
        write_text(self.path, json.dumps(self.doc, indent=1, default=runner._jsonable) + "\n")

    def trial(self, index: int) -> dict:
        return next(t for t in self.doc["trials"] if t["index"] == index)

    def record(self, rec: dict) -> dict:
        """Merge a finished (or stopped) trial's record into its manifest entry."""
        entry = self.trial(rec["index"])
        entry["status"] = rec.get("status", "failed")
        entry["error"] = rec.get("error")
        if rec.get("seconds") is not None:
            entry["seconds"] = rec["seconds"]
        if entry["status"] in ("done", "stopped"):
            entry["metrics"] = metrics_of(rec)
            history = rec.get("history") or []
            entry["epochs"] = len(history) or (rec.get("result") or {}).get("epochs_run") or rec.get("last_epoch")
            entry["stopped_early"] = bool((rec.get("result") or {}).get("stopped_early"))
        ckpt = self.root / entry["name"] / runner.CHECKPOINT
        entry["checkpoint"] = f"{entry['name']}/{runner.CHECKPOINT}" if ckpt.is_file() else None
        return entry


def read_manifest(root) -> dict:
    path = Path(root) / MANIFEST
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{root} is not a sweep folder: no {MANIFEST}") from None
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot read the manifest: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UserError(f"{path} is not a dnnspec sweep manifest")
    return doc


def _differs(old: SweepDef, new: SweepDef) -> str:
    a, b = old.to_json(), new.to_json()
    keys = [k for k in a if a[k] != b.get(k)]
    return "its " + ", ".join(keys) + " differ" if keys else "it differs"


# ---------------------------------------------------------------- the sweep
def check_trials(trials: list[Trial], d: SweepDef, root: Path, total: int) -> dict[int, object]:
    """Every trial's spec and overrides through the checker; programs by trial index, or a
    TrialSpecError naming the trials that do not check (nothing has run yet)."""
    programs, failures = {}, []
    for t in trials:
        try:
            programs[t.index] = check_file(t.spec, [*t.overrides(d.base), *runner.system_overrides(root / t.name)])
        except SpecError as e:
            failures.append((t, e))
        except UserError as e:  # a missing spec file
            raise UserError(f"trial {t.index} of {total} ({t.name}: {t.describe()}): {e}") from None
    if failures:
        raise TrialSpecError(failures, total)
    return programs


def run_sweep(d: SweepDef, root, executor: str = "local", workers: int | None = None, threads: int | None = None,
              address: str | None = None, scheduler: str = "none", log=print) -> dict:
    """Run (or continue) the sweep `d` in folder `root`; returns a summary. Raises
    SweepInterrupted (exit 130) after Ctrl-C, with the finished trials recorded."""
    d.finish()
    root = Path(root)
    if executor not in ("local", "ray"):
        raise SweepError(f"unknown executor {executor!r}: local or ray")
    if scheduler != "none" and executor != "ray":
        raise SweepError(f"--scheduler {scheduler} stops trials early on Ray Tune: add --executor ray "
                         "(the local executor runs every trial to its end)")
    if executor == "ray":
        from .ray_tune import import_ray

        import_ray()  # before any work: a clear error naming the extra
    manifest = Manifest.open(root, d)
    first = plan_round(d, d.axes, 1, 1)
    first_programs = check_trials(first, d, root, len(first))  # before the folder is even created
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with RunLock(manifest.path):
        axes = d.axes
        for r in range(1, d.refine + 2):
            rounds = manifest.doc["rounds"]
            if len(rounds) >= r:  # planned by an earlier run of this sweep
                trials = [Trial(t["index"], t["round"], t["spec"], dict(t["values"]))
                          for t in manifest.doc["trials"] if t["round"] == r]
            else:
                if r > 1:
                    axes = _narrowed(manifest, d, axes, r, log)
                trials = first if r == 1 else plan_round(d, axes, r, len(manifest.doc["trials"]) + 1)
                rounds.append({"round": r, "axes": [a.to_json() for a in axes]})
                for t in trials:
                    manifest.doc["trials"].append({"index": t.index, "name": t.name, "round": r, "spec": t.spec,
                                                   "values": t.values, "overrides": t.overrides(d.base),
                                                   "status": "pending", "metrics": {}, "checkpoint": None,
                                                   "error": None})
            programs = first_programs if r == 1 else check_trials(trials, d, root, len(manifest.doc["trials"]))
            if not _run_round(manifest, d, trials, programs, r, executor, workers, threads, address, scheduler, log):
                done = sum(t["status"] in runner.FINAL for t in manifest.doc["trials"])
                total = len(manifest.doc["trials"])
                raise SweepInterrupted(f"interrupted; {done} of {total} trials ended and are kept in {root}: "
                                       "rerun the same command to continue")
            axes = [_axis(a) for a in manifest.doc["rounds"][r - 1]["axes"]]
    return summary(manifest, d, time.perf_counter() - start, log)


def _axis(j):
    from .space import Axis

    return Axis.from_json(j)


def _narrowed(manifest: Manifest, d: SweepDef, axes, r: int, log) -> list:
    ranked = rank(manifest.doc["trials"], d.metric, d.mode)
    if not ranked:
        raise UserError(f"round {r - 1} has no trial with a {d.metric} to narrow around; nothing to refine")
    best = ranked[0]
    new = [a.narrowed(best["values"][a.path], d.shrink) for a in axes]
    log(f"round {r}: around {best['name']} ({d.metric} {best['metrics'][d.metric]:.4f}): "
        + ", ".join(a.describe() for a in new if a.kind == "sample" and a.dist != "choice"))
    return new


def _run_round(manifest: Manifest, d: SweepDef, trials: list[Trial], programs: dict, r: int, executor: str,
               workers, threads, address, scheduler, log) -> bool:
    root = manifest.root
    todo = []
    for t in trials:
        entry = manifest.trial(t.index)
        doc = runner.read_result(root / t.name)
        if entry["status"] not in runner.FINAL and doc is not None and doc.get("status") in runner.FINAL:
            manifest.record(doc)  # ended while the sweep that ran it was being killed
        if entry["status"] in runner.FINAL:
            continue
        todo.append(t)
    kept = len(trials) - len(todo)
    grid = " × ".join(str(len(a.values)) for a in d.axes if a.kind == "grid" and r == 1)
    shape = ", ".join(filter(None, [f"grid {grid}" if grid else "",
                                    f"{d.trials} samples" + (" per grid point" if grid else "")
                                    if any(a.kind == "sample" for a in d.axes) else ""]))
    label = f"round {r}: " if d.refine else ""
    log(f"{label}{len(trials)} trials ({shape}), all checked" + (f"; {kept} already ended, kept" if kept else ""))
    manifest.save()
    if not todo:
        return True
    tasks = [{"index": t.index, "name": t.name, "spec": str(Path(t.spec).resolve()), "spec_given": t.spec,
              "overrides": t.overrides(d.base), "dir": str((root / t.name).resolve()),
              "data_key": runner.data_key(programs[t.index])} for t in todo]
    from .local import plan_workers

    w, th, note = plan_workers(len(todo), workers, threads)
    count = [0]

    def on_done(rec: dict) -> None:
        entry = manifest.record(rec) if not rec.get("cancelled") else manifest.trial(rec["index"])
        manifest.save()
        if rec.get("cancelled"):
            return
        count[0] += 1
        value = (entry.get("metrics") or {}).get(d.metric)
        if value is not None:
            shown = f"{d.metric} {value:.4f}"
        elif entry["status"] in ("interrupted", "pending"):
            shown = "(continues on the next run of this command)"
        else:
            shown = ((entry.get("error") or "").splitlines() or [""])[0][:200]
        secs = f" {entry['seconds']:.1f}s" if entry.get("seconds") is not None else ""
        log(f"[{count[0]}/{len(todo)}] {entry['name']} {entry['status']}{secs}  {shown}  "
            f"{' '.join(f'{p}={v}' for p, v in entry['values'].items())}")

    if executor == "local":
        from .local import run_local

        log(f"local executor: {note}")
        return run_local(tasks, w, th, on_done, log)
    from .ray_tune import run_ray

    keys = {}
    for t in todo:
        keys.setdefault(runner.data_key(programs[t.index]), programs[t.index])
    loaders = {k: (lambda p=p: _load(p)) for k, p in keys.items()}
    max_epochs = max(programs[t.index].train.epochs for t in todo)
    return run_ray(tasks, loaders, workers, threads, address, scheduler, d.metric, d.mode, max_epochs, root / "ray",
                   f"round{r}-{time.strftime('%Y%m%dT%H%M%S')}", on_done, log)


def _load(program):
    from .. import api

    return api.Model(program, apply_reuse=False).load_data()


def summary(manifest: Manifest, d: SweepDef, seconds: float, log) -> dict:
    trials = manifest.doc["trials"]
    counts = {}
    for t in trials:
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    ranked = rank(trials, d.metric, d.mode)
    out = {"dir": str(manifest.root), "trials": len(trials), "status": counts, "metric": d.metric, "mode": d.mode,
           "seconds": round(seconds, 3), "best": None}
    log("ended: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + f" in {seconds:.1f}s")
    if ranked:
        b = ranked[0]
        out["best"] = {"trial": b["name"], d.metric: b["metrics"][d.metric], "values": b["values"],
                       "checkpoint": str(manifest.root / b["checkpoint"]) if b.get("checkpoint") else None}
        log(f"best: {b['name']} {d.metric} {b['metrics'][d.metric]:.4f}  "
            + " ".join(f"{p}={v}" for p, v in b["values"].items()))
        log(f"table: dnnspec sweep-report {manifest.root}")
    return out
