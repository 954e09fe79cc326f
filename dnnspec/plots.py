"""Figures: activation histograms and gradient norms by depth (`dnnspec diagnose --plot`),
learning curves and per-layer monitor curves of runs (`dnnspec plot`).

matplotlib is the `plot` extra; without it every function here raises a UserError that says how
to install it. Figures are written through `dnnspec.fileio` (`save`): an existing file is
replaced only with `force`, and only if it is a figure (PNG, SVG or PDF).

Sits above `api`; nothing below imports it.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .errors import UserError

FORMATS = ("png", "svg", "pdf")


def pyplot():
    """matplotlib.pyplot on the Agg backend, or a UserError saying how to get it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("plots need matplotlib: pip install 'dnnspec[plot]'") from None
    return plt


def is_figure(path: Path) -> bool:
    """A file a figure may replace (with --force): a PNG, SVG or PDF."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except OSError:
        return False
    return head.startswith(b"\x89PNG\r\n\x1a\n") or head.startswith(b"%PDF") or b"<svg" in head or (
        head.lstrip().startswith(b"<?xml") and path.suffix.lower() == ".svg")


def figure_format(path) -> str:
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise UserError(f"{path}: give a figure name ending in .png, .svg or .pdf")
    return fmt


def check_figure(path, force: bool = False) -> Path:
    """Before any work: the figure can be written (see `fileio.check_output`)."""
    from .fileio import check_output

    figure_format(path)
    return check_output(path, is_figure, "figure", force)


def save(fig, path, force: bool = False, dpi: int = 110) -> Path:
    """Write `fig` atomically (its format from the suffix) and close it."""
    from .fileio import atomic_write

    path = check_figure(path, force)
    try:
        with atomic_write(path) as tmp:  # savefig picks the format from the name; the temporary one has none
            fig.savefig(tmp, dpi=dpi, format=figure_format(path), bbox_inches="tight")
    finally:
        pyplot().close(fig)
    return path


# ---------------------------------------------------------------- diagnose figures
SATURATING_RANGE = {"sigmoid": (0.0, 1.0), "hard_sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "softsign": (-1.0, 1.0)}
RECTIFIERS = {"relu"}  # outputs exactly 0 for a negative input


def _hist_layers(report: dict, phase: str) -> list[dict]:
    layers = report[phase]["layers"]
    acts = [r for r in layers if r.get("activation") and "_values" in r]
    return acts or [r for r in layers if "_values" in r]


def activation_histograms(reports: Sequence[dict], phase: str = "init", title: str | None = None):
    """One row of per-layer activation histograms per variation (the layers with an activation;
    every layer if none has one): the textbook figure of saturation (sigmoid piled at 0 and 1)
    and of signals that shrink or grow with depth. Bounded activations are drawn over their
    range, others over one range per row; ReLU's exact zeros are left out of the bars and
    written as a fraction in the corner. Bars are fractions of all the layer's outputs."""
    import numpy as np

    plt = pyplot()
    rows = [(rep, _hist_layers(rep, phase)) for rep in reports if phase in rep and rep[phase]["layers"]]
    if not rows:
        raise UserError("nothing to draw: no layer statistics")
    ncols = max(len(layers) for _, layers in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.55 * ncols + 1.2, 1.45 * len(rows) + 1.1),
                             squeeze=False)
    handles = []
    for i, (rep, layers) in enumerate(rows):
        color = f"C{i % 10}"
        samples = []
        for r in layers:
            values = np.asarray(r["_values"], dtype=np.float64)
            samples.append(values[np.isfinite(values)])
        # one x range per row (unbounded activations), so a signal that grows or fades with depth shows;
        # the exact zeros of the ReLU family are counted apart (a spike at 0 would flatten the rest)
        rectified = [r.get("activation") in RECTIFIERS for r in layers]
        shown = [v[v != 0] if rect else v for v, rect in zip(samples, rectified)]
        kept = [v for v in shown if v.size]
        row_lo = min((float(np.percentile(v, 0.5)) for v in kept), default=0.0)
        row_hi = max((float(np.percentile(v, 99.5)) for v in kept), default=1.0)
        for j in range(ncols):
            ax = axes[i][j]
            if j >= len(layers):
                ax.axis("off")
                continue
            r, values = layers[j], shown[j]
            lo, hi = SATURATING_RANGE.get(r.get("activation"), (row_lo, row_hi))
            if rectified[j]:
                lo = 0.0
            if hi <= lo:
                lo, hi = lo - 0.5, hi + 0.5
            bars = ax.hist(values, bins=40, range=(lo, hi), color=color, alpha=0.85,
                           weights=np.full(values.size, 1.0 / max(samples[j].size, 1)))
            if j == 0:
                handles.append(bars[2][0] if len(bars[2]) else None)
            if rectified[j] and samples[j].size:
                zeros = 1.0 - values.size / samples[j].size
                ax.text(0.97, 0.93, f"zeros {zeros:.0%}", transform=ax.transAxes, ha="right", va="top", fontsize=7)
            ax.set_yticks([])
            ax.tick_params(axis="x", labelsize=7)
            if i == 0:
                ax.set_title(r["name"], fontsize=9)
            if i == len(rows) - 1:
                ax.set_xlabel(r.get("activation") or "output", fontsize=8)
            if j == 0:
                ax.set_ylabel(_wrap(rep["label"], 18), fontsize=8)
    labels = [rep["label"] for rep, _ in rows]
    fig.legend([h for h in handles if h is not None], [lab for h, lab in zip(handles, labels) if h is not None],
               loc="lower center", ncol=min(len(labels), 4), fontsize=9, frameon=False, bbox_to_anchor=(0.5, -0.01))
    n = rows[0][0].get("batches", 0) * rows[0][0].get("batch_size", 0)
    when = "at initialization" if phase == "init" else f"after {rows[0][0][phase].get('steps', '?')} steps"
    fig.suptitle(title or f"Activations per layer {when} (fraction of outputs; {n} training examples)", fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    return fig


def gradient_norms(reports: Sequence[dict], title: str | None = None):
    """Gradient norm by depth, one line per variation: ‖∂L/∂W‖ of each layer's kernel and the
    same relative to ‖W‖ (how fast the layer learns), at initialization (solid) and after the
    training steps, if any (dashed)."""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    names: list[str] = []
    differ = False
    for i, rep in enumerate(reports):
        color = f"C{i % 10}"
        for phase, style in (("init", "-"), ("after", "--")):
            if phase not in rep or not rep[phase]["layers"]:
                continue
            layers = [r for r in rep[phase]["layers"] if r.get("grad_norm") is not None]
            layer_names = [r["name"] for r in layers]
            if names and layer_names[:len(names)] != names[:len(layer_names)]:
                differ = True  # different models (--compare-spec): number the layers instead
            if len(layers) > len(names):
                names = layer_names
            xs = list(range(1, len(layers) + 1))
            label = rep["label"] + ("" if phase == "init" else f" (after {rep[phase]['steps']} steps)")
            ax1.plot(xs, [_positive(r["grad_norm"]) for r in layers], style, color=color, marker="o", ms=3,
                     label=label)
            ax2.plot(xs, [_positive(r["grad_ratio"]) for r in layers], style, color=color, marker="o", ms=3,
                     label=label)
    for ax, what in ((ax1, "‖∂L/∂W‖ (kernel gradient norm)"), (ax2, "‖∂L/∂W‖ / ‖W‖ (relative to the weights)")):
        ax.set_yscale("log")
        ax.set_xticks(range(1, len(names) + 1))
        if differ:
            ax.set_xticklabels([str(n) for n in range(1, len(names) + 1)], fontsize=8)
            ax.set_xlabel("layer with a kernel, by depth (input → output)")
        else:
            ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
            ax.set_xlabel("layer (input → output)")
        ax.set_ylabel(what)
        ax.grid(True, which="major", alpha=0.3)
    ax1.set_title("gradient norm by depth", fontsize=10)
    ax2.set_title("relative gradient by depth", fontsize=10)
    ax2.legend(fontsize=8)
    steps = next((rep["after"]["steps"] for rep in reports if rep.get("after", {}).get("layers")), None)
    when = "at initialization" + (f" (solid) and after {steps} training steps (dashed)" if steps else "")
    fig.suptitle(title or f"Gradients per layer {when}, mean over the batches", fontsize=11)
    fig.tight_layout()
    return fig


def _positive(v):
    return v if v is not None and v > 0 and math.isfinite(v) else float("nan")


def _wrap(text: str, width: int) -> str:
    words, lines, cur = text.replace(",", ", ").split(), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    lines.append(cur)
    return "\n".join(lines).replace(",  ", ", ")


# ---------------------------------------------------------------- runs
@dataclass
class Run:
    """One run's history: per-epoch rows, per-layer monitor rows, and its spec when known."""

    path: Path
    run_id: str | None
    epochs: list[dict] = field(default_factory=list)
    layers: list[dict] = field(default_factory=list)
    spec: str | None = None  # the canonical spec text (checkpoints)
    label: str = ""
    note: str | None = None


def load_runs(paths: Sequence[str]) -> list[Run]:
    """Runs from metrics logs (JSON lines: every run id in a file; a resumed run, whose epochs
    continue the previous id's, joins it) and checkpoints (their stored history and spec; the
    per-layer rows from the spec's metrics log when it exists)."""
    runs: list[Run] = []
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise UserError(f"{path}: no such run (give a metrics log .jsonl or a checkpoint .h5)")
        from .ckpt import hdf5

        if hdf5.is_checkpoint(path):
            runs.append(_checkpoint_run(path))
        else:
            runs.extend(read_jsonl(path))
    for run in runs:
        if not run.epochs and not run.layers:
            raise UserError(f"{run.path}: no epochs recorded" + (f" for run {run.run_id}" if run.run_id else ""))
    label_runs(runs)
    return runs


def read_jsonl(path: Path) -> list[Run]:
    runs: list[Run] = []
    by_id: dict[str, Run] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read the metrics log: {e}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise UserError(f"{path}:{n}: not a JSON line (a metrics log has one JSON object per line)") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{n}: not a JSON object")
        if row.get("phase") == "pretrain":  # a pretraining epoch (one layer's), not a point of the curves
            continue
        rid = str(row.get("run", ""))
        run = by_id.get(rid)
        if run is None:
            first_epoch = row.get("epoch")
            prev = runs[-1] if runs else None
            if (prev is not None and row.get("monitor") is None and isinstance(first_epoch, int) and first_epoch > 1
                    and prev.epochs and prev.epochs[-1].get("epoch") == first_epoch - 1):
                run = prev  # a resumed run continues the one before it
            else:
                run = Run(path, rid or None)
                runs.append(run)
            by_id[rid] = run
        if row.get("monitor") == "layers":
            run.layers.append(row)
        elif "epoch" in row:
            run.epochs.append(row)
    if not runs:
        raise UserError(f"{path}: an empty metrics log")
    return runs


def _checkpoint_run(path: Path) -> Run:
    from .ckpt import hdf5

    ckpt = hdf5.load(path)
    history, note = list(ckpt.history), None
    last = path.with_name(path.stem + ".last" + path.suffix)
    if last.is_file() and hdf5.is_checkpoint(last):
        other = hdf5.load(last)
        if other.spec == ckpt.spec and len(other.history) > len(history):
            history, note = list(other.history), f"{path}: the history of {last.name} (the whole run)"
    run = Run(path, None, [r for r in history if "epoch" in r], spec=ckpt.spec, note=note)
    log = _log_of(ckpt.spec)
    if log is not None and log.is_file():
        try:
            logged = read_jsonl(log)
        except UserError:
            logged = []
        if logged:
            run.layers = logged[-1].layers
    return run


def _log_of(spec: str) -> Path | None:
    """The metrics log a spec writes (its `log`, else next to its checkpoint)."""
    try:
        program = _program(spec)
    except Exception:  # noqa: BLE001 - a spec that no longer checks: no log to find
        return None
    cfg = program.train
    if cfg.log:
        return Path(cfg.log)
    return Path(cfg.checkpoint).with_suffix(".jsonl") if cfg.checkpoint else None


def _program(spec: str):
    from .check import check_text

    return check_text(spec, "<checkpoint spec>")


def facts(spec: str) -> list[str]:
    """What a spec says, as short comparable facts: layers, widths, inits, optimizer, schedule,
    batch, regularization, data (paths and the model's name left out)."""
    from .check.lints import component_text

    try:
        p = _program(spec)
    except Exception:  # noqa: BLE001 - a spec that does not check: compare its lines
        return [ln.strip() for ln in spec.splitlines()
                if ln.strip() and not ln.strip().startswith(("#", "model ", "checkpoint", "log "))]
    t = p.train
    out = [f"{component_text(t.optimizer)}"]
    if t.schedule.name != "constant":
        out.append(f"{component_text(t.schedule)}" + (f" warmup={t.warmup}" if t.warmup else ""))
    widths = [p.input_width] + [op.n_out for op in p.ops if "kernel" in op.variables]
    out.append("-".join(map(str, widths)))
    kinds = Counter()
    for op in p.ops:
        if op.kind == "dense":
            init = op.component.kwargs.get("init")
            if init is not None:
                kinds[f"init={component_text(init)}"] += 1
        elif op.component.kind == "activation" or op.kind in ("batchnorm", "dropout", "alpha_dropout",
                                                              "gaussian_noise", "maxout", "dropconnect"):
            kinds[component_text(op.component) if op.kind in ("dropout", "alpha_dropout", "gaussian_noise")
                  else op.kind] += 1
    out += list(kinds)
    out += [f"loss {component_text(t.loss)}", f"batch {t.batch}", f"epochs {t.epochs}", f"seed {t.seed}"]
    out += [f"{component_text(r)} on {pat.text!r}" for r, pat in t.regularize]
    out += [f"{component_text(c)} on {pat.text!r}" for c, pat in t.constrain]
    if t.clip_norm is not None:
        out.append(f"clip_norm {t.clip_norm:g}")
    if t.average:
        out.append(f"average {t.average}")
    if t.early_stopping is not None:
        out.append(f"early_stopping patience={t.early_stopping.patience}")
    if p.data is not None:
        data = component_text(p.data)
        out.append(data)
    out += [f"freeze {pat.text!r}" for pat, _ in p.freeze]
    return out


def label_runs(runs: list[Run], width: int = 70) -> None:
    """Legend labels: for runs with specs, what differs between their specs (the facts not all
    share); for logs, the file name and run id."""
    with_spec = [r for r in runs if r.spec]
    fact_lists = {id(r): facts(r.spec) for r in with_spec}
    common = set.intersection(*(set(f) for f in fact_lists.values())) if len(with_spec) > 1 else set()
    for r in runs:
        if r.spec and len(with_spec) > 1:
            diff = [f for f in fact_lists[id(r)] if f not in common]
            text = ", ".join(diff)
            r.label = (text if len(text) <= width else text[: width - 1] + "…") or r.path.stem
        elif r.spec:
            r.label = r.path.stem
        else:
            r.label = r.path.name + (f" [{r.run_id}]" if r.run_id else "")
    seen = Counter(r.label for r in runs)
    for r in runs:
        if seen[r.label] > 1:
            r.label = f"{r.path.stem}: {r.label}" if r.spec else r.label


METRIC_WORDS = {"loss": "loss", "accuracy": "accuracy", "lr": "learning rate"}


def default_metrics(runs: Sequence[Run]) -> list[str]:
    keys = {k for r in runs for row in r.epochs for k in row}
    return [m for m in ("loss", "accuracy", "lr") if m in keys or f"val_{m}" in keys]


def learning_curves(runs: Sequence[Run], metrics: Sequence[str] | None = None, log_y: bool = False,
                    title: str | None = None):
    """One panel per metric (loss, accuracy, lr by default), one color per run: training solid,
    validation dashed. The legend names each run by what differs between their specs."""
    plt = pyplot()
    metrics = list(metrics) if metrics else default_metrics(runs)
    if not metrics:
        raise UserError("nothing to draw: the runs record no loss, accuracy or lr")
    keys = {k for r in runs for row in r.epochs for k in row}
    missing = [m for m in metrics if m not in keys and f"val_{m}" not in keys]
    if missing:
        known = sorted(k for k in keys if k not in ("run", "epoch", "seconds") and not k.startswith("val_"))
        raise UserError(f"--metric {missing[0]}: the runs record no such metric; they have: {', '.join(known)}")
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics) + 0.6, 4.2), squeeze=False)
    lines = []
    for i, run in enumerate(runs):
        color = f"C{i % 10}"
        epochs = [row["epoch"] for row in run.epochs]
        first = None
        for ax, m in zip(axes[0], metrics):
            for key, style in ((m, "-"), (f"val_{m}", "--")):
                ys = [row.get(key) for row in run.epochs]
                if m == "lr" and key != m or all(y is None for y in ys):
                    continue
                (line,) = ax.plot(epochs, [float("nan") if y is None else y for y in ys], style, color=color,
                                  marker="o" if len(epochs) <= 30 else None, ms=3)
                first = first or line
        if first is not None:
            lines.append((first, run.label))
    for ax, m in zip(axes[0], metrics):
        ax.set_xlabel("epoch")
        ax.set_ylabel(METRIC_WORDS.get(m, m))
        ax.set_title(METRIC_WORDS.get(m, m) + (" (solid: training, dashed: validation)" if m != "lr" else ""),
                     fontsize=9)
        if m == "lr" or (log_y and "accuracy" not in m):
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
    longest = max((len(lab) for _, lab in lines), default=0)
    ncol = 1 if longest > 45 else min(len(lines), 2 if longest > 30 else 4)
    fig.legend([ln for ln, _ in lines], [lab for _, lab in lines], loc="lower center", ncol=ncol,
               fontsize=8, frameon=False, bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(title or "Learning curves", fontsize=11)
    rows = -(-len(lines) // ncol)
    fig.tight_layout(rect=(0, min(0.06 + 0.045 * rows, 0.4), 1, 0.96))
    return fig


LAYER_STATS = (("grad_norm", "‖∂L/∂W‖", True), ("update_ratio", "‖ΔW‖ / ‖W‖", True), ("std", "activation std", False),
               ("saturated", "saturated fraction", False), ("dead", "dead fraction", False))


def layer_curves(runs: Sequence[Run], title: str | None = None):
    """Per-layer monitor rows over training: one panel per statistic the rows hold (gradient
    norm, update/weight ratio with the 1e-3 rule of thumb, activation spread, saturated or dead
    fraction), one line per layer; a column per run."""
    plt = pyplot()
    runs = [r for r in runs if r.layers]
    if not runs:
        raise UserError("--layers: the runs have no per-layer rows (train with `monitor layers every=N` to "
                        "record them in the metrics log)")
    present = [s for s in LAYER_STATS
               if any(v.get(s[0]) is not None for r in runs for row in r.layers for v in row["layers"].values())]
    from .diagnose import short_names

    single = len(runs) == 1 and len(present) > 2  # one run: the panels in two columns
    nrows, ncols = (-(-len(present) // 2), 2) if single else (len(present), len(runs))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols + 1.5, 2.8 * nrows + 0.8), squeeze=False)
    cmap = plt.get_cmap("viridis")
    for c, run in enumerate(runs):
        names = list(run.layers[0]["layers"])
        shorts = dict(zip(names, short_names(names)))
        steps = [row["step"] for row in run.layers]
        panels = [axes[k // 2][k % 2] for k in range(len(present))] if single else [axes[r][c] for r in
                                                                                   range(len(present))]
        handles: dict[str, Any] = {}
        for r, ((key, words, log), ax) in enumerate(zip(present, panels)):
            for k, name in enumerate(names):
                ys = [row["layers"].get(name, {}).get(key) for row in run.layers]
                if all(y is None for y in ys):
                    continue
                (line,) = ax.plot(steps, [float("nan") if y is None else y for y in ys],
                                  color=cmap(k / max(len(names) - 1, 1)), label=shorts[name], lw=1.3)
                handles.setdefault(shorts[name], line)
            if key == "update_ratio":
                ax.axhline(1e-3, color="grey", ls=":", lw=1)
                ax.text(0.01, 0.02, "1e-3: the rule of thumb", transform=ax.transAxes, fontsize=7, color="grey")
            if log:
                ax.set_yscale("log")
            ax.set_ylabel(words)
            ax.set_xlabel("step")
            ax.grid(True, alpha=0.3)
            if single or r == 0:
                ax.set_title(words if single else run.label, fontsize=9)
        order = [shorts[n] for n in names if shorts[n] in handles]
        panels[0].legend([handles[n] for n in order], order, fontsize=7, ncol=2, title="layer",
                         title_fontsize=7)
        if single:
            for k in range(len(present), nrows * ncols):
                axes[k // 2][k % 2].axis("off")
            title = title or f"Layers during training: {run.label}"
    fig.suptitle(title or "Layers during training", fontsize=11)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- augmentation
def augment_grid(originals, augmented, image: tuple[int, ...], title: str, steps: str):
    """`dnnspec augment`: one row per example, the original in the first column, augmented
    versions beside it; every image of a row drawn on the original's value range (grey, or RGB
    for 3 channels), so noise and the zero fill show as they are."""
    import numpy as np

    plt = pyplot()
    rows, cols = len(originals), 1 + len(augmented)
    h, w = image[0], image[1]
    channels = image[2] if len(image) == 3 else 1
    fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols + 0.6, 1.1 * rows + 1.0), squeeze=False)
    for i in range(rows):
        lo, hi = float(originals[i].min()), float(originals[i].max())
        hi = hi if hi > lo else lo + 1.0
        for j in range(cols):
            ax = axes[i][j]
            values = originals[i] if j == 0 else augmented[j - 1][i]
            img = values.reshape(h, w, channels)
            if channels == 3:
                ax.imshow(np.clip((img - lo) / (hi - lo), 0, 1), interpolation="nearest")
            else:
                ax.imshow(img[:, :, 0], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title("original" if j == 0 else f"augmented {j}", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"example {i + 1}", fontsize=8)
    fig.suptitle(f"{title}\n{steps}", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return fig
