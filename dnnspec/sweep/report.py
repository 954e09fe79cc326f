"""`dnnspec sweep-report DIR`: the trials of a sweep as a table sorted by its metric (a column per
swept parameter), as CSV or JSON, and plots: the metric against each swept parameter, and the
learning curves of the trials (the validation metric per epoch, one line per trial)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from ..errors import UserError
from ..fileio import atomic_write
from .core import rank, read_manifest
from .runner import LOG
from .space import SPEC_AXIS

SHOWN = ("val_accuracy", "val_loss", "test_accuracy")
MAX_LABELLED = 12  # learning curves with a legend entry each; the rest are drawn thin and grey


def short_names(paths: list[str]) -> dict[str, str]:
    """train.optimizer.lr -> lr, unless two paths end alike."""
    last = [p.rsplit(".", 1)[-1] for p in paths]
    return {p: (s if last.count(s) == 1 else p) for p, s in zip(paths, last)}


def load(root) -> tuple[dict, list[dict], list[str]]:
    """(manifest, trials best first then the unranked, swept paths)."""
    doc = read_manifest(root)
    d = doc["definition"]
    metric, mode = d["metric"], d["mode"]
    ranked = rank(doc["trials"], metric, mode)
    seen = {t["index"] for t in ranked}
    rest = sorted((t for t in doc["trials"] if t["index"] not in seen), key=lambda t: t["index"])
    paths = [a["path"] for a in d["axes"]]
    return doc, ranked + rest, paths


def rows(root) -> tuple[list[dict], list[str], str]:
    """One dict per trial: trial, status, the swept values, the metrics, epochs, seconds."""
    doc, trials, paths = load(root)
    metric = doc["definition"]["metric"]
    names = short_names(paths)
    metrics = [metric] + [m for m in SHOWN if m != metric]
    out = []
    for t in trials:
        row = {"trial": t["name"], "status": t["status"]}
        for p in paths:
            v = t["values"].get(p)
            row[names[p]] = Path(v).stem if p == SPEC_AXIS and v else v
        for m in metrics:
            row[m] = (t.get("metrics") or {}).get(m)
        row["epochs"] = t.get("epochs")
        row["seconds"] = t.get("seconds")
        row["checkpoint"] = t.get("checkpoint")
        out.append(row)
    return out, [names[p] for p in paths], metric


def table(root) -> str:
    data, swept, metric = rows(root)
    cols = ["trial", "status", *swept, metric, *(m for m in SHOWN if m != metric), "epochs", "seconds"]

    def cell(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    cells = [[cell(r.get(c)) if c != "seconds" or r.get(c) is None else f"{r[c]:.1f}" for c in cols] for r in data]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(cols)]
    numeric = {metric, *SHOWN, "epochs", "seconds"}
    lines = ["  ".join(c.rjust(w) if c in numeric else c.ljust(w) for c, w in zip(cols, widths)).rstrip()]
    for r in cells:
        lines.append("  ".join(v.rjust(w) if c in numeric else v.ljust(w) for v, c, w in zip(r, cols, widths)).rstrip())
    return "\n".join(lines) + "\n"


def as_csv(root) -> str:
    data, _, _ = rows(root)
    buf = io.StringIO()
    if data:
        w = csv.DictWriter(buf, fieldnames=list(data[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(data)
    return buf.getvalue()


def as_json(root) -> str:
    data, swept, metric = rows(root)
    return json.dumps({"metric": metric, "swept": swept, "trials": data})


# ---------------------------------------------------------------- plots
def curve(root: Path, name: str, key: str) -> list[tuple[int, float]]:
    """(epoch, value) from a trial's metrics log; a resumed run's later lines win."""
    points = {}
    try:
        with open(Path(root) / name / LOG, encoding="utf-8") as fh:
            for line in fh:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if key in row and isinstance(row.get("epoch"), int) and row.get("phase") != "pretrain":
                    points[row["epoch"]] = float(row[key])
    except OSError:
        return []
    return sorted(points.items())


def _numeric(values: list) -> list[float] | None:
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        return None
    return out if all(math.isfinite(v) for v in out) else None


def plot(root, out_dir) -> list[Path]:
    """metric_vs_<param>.png for each swept parameter and learning_curves.png, in `out_dir`."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("--plot needs matplotlib: pip install 'dnnspec[plot]'") from None
    root, out_dir = Path(root), Path(out_dir)
    doc, trials, paths = load(root)
    d = doc["definition"]
    metric = d["metric"]
    names = short_names(paths)
    logs = {a["path"]: a.get("dist") == "loguniform" for a in d["axes"]}
    scored = [t for t in trials if (t.get("metrics") or {}).get(metric) is not None]
    written = []
    for p in paths:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        values = [t["values"].get(p) for t in scored]
        ys = [t["metrics"][metric] for t in scored]
        xs = None if p == SPEC_AXIS else _numeric(values)
        if xs is None:  # categories, in the order the sweep lists them
            axis = next(a for a in d["axes"] if a["path"] == p)
            order = list(dict.fromkeys([*axis.get("values", []), *values]))
            labels = [Path(v).stem if p == SPEC_AXIS else v for v in order]
            xs = [order.index(v) for v in values]
            ax.set_xticks(range(len(order)), labels, rotation=20 if max(map(len, labels), default=0) > 8 else 0,
                          ha="right" if max(map(len, labels), default=0) > 8 else "center", fontsize=8)
        elif logs.get(p) or (min(xs) > 0 and max(xs) / min(xs) >= 100):
            ax.set_xscale("log")
        done = [i for i, t in enumerate(scored) if t["status"] == "done"]
        stopped = [i for i, t in enumerate(scored) if t["status"] != "done"]
        ax.scatter([xs[i] for i in done], [ys[i] for i in done], label="trial", color="tab:blue", zorder=2)
        if stopped:
            ax.scatter([xs[i] for i in stopped], [ys[i] for i in stopped], label="stopped early (last epoch)",
                       marker="x", color="tab:gray", zorder=2)
        if scored:
            ax.scatter([xs[0]], [ys[0]], marker="*", s=220, color="tab:red", label=f"best ({scored[0]['name']})",
                       zorder=3)
        ax.set_xlabel(p)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} against {names[p]} ({len(scored)} trials)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(_save(fig, out_dir / f"{metric}_vs_{_file_part(names[p])}.png"))
        plt.close(fig)
    written.append(_curves(plt, root, out_dir, doc, trials, paths, metric))
    return written


def _curves(plt, root, out_dir, doc, trials, paths, metric) -> Path:
    key = {"test_accuracy": "val_accuracy", "test_loss": "val_loss", "train_accuracy": "accuracy",
           "train_loss": "loss"}.get(metric, metric)
    differ = [p for p in paths if len({t["values"].get(p) for t in trials}) > 1]
    names = short_names(paths)
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    labelled = 0
    others = 0
    for t in trials:
        pts = curve(root, t["name"], key)
        if not pts:
            continue
        xs, ys = zip(*pts)
        if labelled < MAX_LABELLED:
            vals = ", ".join(f"{names[p]}={Path(t['values'][p]).stem if p == SPEC_AXIS else t['values'][p]}"
                             for p in differ)
            label = f"{t['name']}: {vals}" if vals else t["name"]
            ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.4, label=label)
            labelled += 1
        else:
            ax.plot(xs, ys, color="0.75", linewidth=0.8, label="other trials" if others == 0 else None)
            others += 1
    ax.set_xlabel("epoch")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(key)
    ax.set_title(f"learning curves: {key} per epoch" + (f" (best {MAX_LABELLED} labelled)" if others else ""))
    ax.grid(alpha=0.3)
    if labelled:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path = _save(fig, out_dir / "learning_curves.png")
    plt.close(fig)
    return path


def _file_part(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _save(fig, path: Path) -> Path:
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return path
