"""`dnnspec ensemble DIR --top K`: average the predicted probabilities of a sweep's best K trials
on the spec's data, next to the best single trial, and write `ensemble.json`, a manifest that
lists the member checkpoints (paths relative to the manifest's folder).

Each member is rebuilt from its own checkpoint (its stored spec), so members may differ in
architecture. The data is the best trial's (`Model.load_data` of its spec: relative paths mean
what they meant to the sweep, from the same working directory). The numbers are computed as
`dnnspec eval SPEC -c CKPT ... --json` computes them, so `--json` prints what eval prints.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError
from ..fileio import check_output, write_text
from .core import rank, read_manifest

FORMAT = "dnnspec-ensemble"


def is_ensemble_manifest(path) -> bool:
    try:
        with open(path, "rb") as fh:
            if fh.read(1) != b"{":
                return False
        return json.loads(Path(path).read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def expand_checkpoints(paths) -> list[str]:
    """`-c` arguments with each ensemble manifest replaced by its checkpoints (for `dnnspec eval`)."""
    out = []
    for p in paths:
        if str(p).endswith(".json") or is_ensemble_manifest(p):
            if not is_ensemble_manifest(p):
                raise UserError(f"{p}: not an ensemble manifest (format {FORMAT!r}) nor a checkpoint")
            doc = json.loads(Path(p).read_text(encoding="utf-8"))
            out += [str(Path(p).parent / c) for c in doc["checkpoints"]]
        else:
            out.append(str(p))
    return out


def evaluate(models, data: dict, loss_labels: str) -> dict:
    """eval's numbers: one model -> its own evaluate(); several -> the averaged probabilities."""
    import numpy as np

    from .. import metrics

    results = {}
    for n, (x, y) in data.items():
        if len(models) == 1:
            results[n] = models[0].evaluate(x, y)
            continue
        p = 0.0
        for m in models:
            p = p + m.predict(x)
        p = p / len(models)
        if loss_labels == "real":
            results[n] = {"loss": float(np.mean((p - np.asarray(y).reshape(p.shape)) ** 2))}
        else:
            results[n] = {"loss": metrics.log_loss(p, y), "accuracy": metrics.accuracy(p, y)}
    return results


def build(root, top: int, split: str = "all", out=None) -> dict:
    """Evaluate the ensemble of the best `top` trials and write its manifest; returns the report."""
    from .. import api

    root = Path(root)
    doc = read_manifest(root)
    d = doc["definition"]
    ranked = [t for t in rank(doc["trials"], d["metric"], d["mode"])
              if t["status"] == "done" and t.get("checkpoint") and (root / t["checkpoint"]).is_file()]
    if not ranked:
        raise UserError(f"{root}: no finished trial with a checkpoint to make an ensemble of")
    members = ranked[:top]
    models = [api.load_checkpoint(root / t["checkpoint"]) for t in members]
    splits = models[0].load_data()
    names = ["train", "val", "test"] if split == "all" else [split]
    data = {n: getattr(splits, n) for n in names if getattr(splits, n) is not None}
    if not data:
        raise UserError(f"the data has no {split} split")
    labels = models[0].plan.loss.labels
    ensemble = evaluate(models, data, labels)
    single = evaluate(models[:1], data, labels)
    each = [evaluate([m], data, labels) for m in models]
    out = Path(out) if out is not None else root / "ensemble.json"
    check_output(out, is_ensemble_manifest, "ensemble manifest", replace_ours=True)
    base = out.resolve().parent
    ckpts = [_relative((root / t["checkpoint"]).resolve(), base) for t in members]
    report = {
        "format": FORMAT, "version": 1, "sweep": _relative(root.resolve(), base), "metric": d["metric"],
        "checkpoints": ckpts,
        "members": [{"trial": t["name"], "values": t["values"], d["metric"]: t["metrics"][d["metric"]],
                     "checkpoint": c, "results": r} for t, c, r in zip(members, ckpts, each)],
        "ensemble": ensemble, "best_single": {"trial": members[0]["name"], **single},
    }
    if len(ranked) < top:
        report["note"] = f"only {len(ranked)} finished trials; the ensemble has them all"
    write_text(out, json.dumps(report, indent=1) + "\n")
    report["manifest"] = str(out)
    return report


def _relative(path: Path, base: Path) -> str:
    import os

    return Path(os.path.relpath(path, base)).as_posix()


def text(report: dict) -> str:
    k = len(report["checkpoints"])
    lines = [f"ensemble of the best {k} trial{'s' if k != 1 else ''} by {report['metric']} (average of probabilities): "
             + ", ".join(m["trial"] for m in report["members"])]
    if report.get("note"):
        lines.append(report["note"])
    best = report["best_single"]
    for n, row in report["ensemble"].items():
        single = best.get(n, {})
        for key in ("accuracy", "loss"):
            if key in row:
                lines.append(f"{n:<5} {key:<8}  ensemble {row[key]:.4f}   best single ({best['trial']}) "
                             f"{single.get(key, float('nan')):.4f}")
    lines.append(f"manifest: {report['manifest']}")
    return "\n".join(lines)
