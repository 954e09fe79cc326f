"""Run the experiment specs of docs/results.md and rewrite its tables from the measurements.

    python benchmarks/results.py                      # every experiment (about 25 minutes on 2 cores)
    python benchmarks/results.py --only mnist_nag_bn  # one spec (repeatable); other rows are kept
    python benchmarks/results.py --render             # rewrite the tables from the stored data only

Each spec runs as `dnnspec run specs/NAME.dnn --json -q` from the repository root, exactly the
command a reader would type. Accuracies come from its JSON summary; the per-epoch seconds and
metrics from the lines that run appended to its JSONL log. The raw numbers are stored in
docs/results.md itself (an HTML comment), so `--only` can refresh one row and keep the others;
only the regions between `<!-- BEGIN x -->` and `<!-- END x -->` markers are rewritten, the prose
around them is left alone.

For the vanishing-gradient group the script also measures, outside dnnspec, the gradient norm of
each layer's kernel: an independent float64 NumPy forward/backward pass over 2000 training
examples, with the weights dnnspec initialised (seed 42) and with those of the final checkpoint.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "results.md"
DATA_RE = re.compile(r"<!-- results-data\n(.*?)\n-->", re.S)


@dataclass(frozen=True)
class Row:
    spec: str            # specs/<spec>.dnn
    what: str            # the row label
    reference: float | None = None  # validation accuracy the course material reports


# group -> rows; each group is one table in docs/results.md (marker <!-- BEGIN group -->)
GROUPS: dict[str, list[Row]] = {
    "optimizers": [
        Row("mnist_relu_he", "ReLU + He, SGD 0.01"),
        Row("mnist_bn_elu", "He + BN + ELU, SGD 0.01"),
        Row("mnist_nag", "ReLU + He, Nesterov 0.01/0.9", 0.965),
        Row("mnist_nag_bn", "He + BN + ELU, Nesterov 0.01/0.9", 0.983),
        Row("mnist_adam", "ReLU + He, Adam 0.001", 0.983),
        Row("mnist_adam_bn", "He + BN + ELU, Adam 0.001", 0.982),
    ],
    "wide": [
        Row("mnist_wide", "784-512x4-10 Glorot + ReLU, Adam"),
        Row("mnist_wide_dropout", "the same + dropout 0.3"),
    ],
    "vanishing": [
        Row("mnist_sigmoid9", "9x100 sigmoid, Glorot init, SGD 0.01"),
        Row("mnist_sigmoid9_normal", "9x100 sigmoid, N(0, 1) init, SGD 0.01"),
        Row("mnist_sigmoid9_glorot4", "9x100 sigmoid, 4x Glorot init, SGD 0.01"),
        Row("mnist_relu9", "9x100 ReLU, He init, SGD 0.01"),
    ],
    "fashion": [
        Row("fashion_baseline", "128-128 ReLU, Adam, no regularization"),
        Row("fashion_l2", "+ L2 1e-4 on the kernels"),
        Row("fashion_dropout", "+ dropout 0.2 after each hidden layer"),
        Row("fashion_early_stopping", "+ early stopping (val_loss, patience 5, restore best)"),
    ],
    "pretraining": [
        Row("mnist_1k_sigmoid", "784-256x3-10 sigmoid, random (Glorot) init, 1,000 labels"),
        Row("mnist_1k_sigmoid_rbm", "the same, hidden layers pretrained as RBMs (CD-1, a DBN)"),
        Row("mnist_1k_sigmoid_ae", "the same, pretrained as tied denoising autoencoders"),
    ],
    "augment": [
        Row("mnist_1k_elu", "300-100 ELU + He, Adam; 1,000 training examples"),
        Row("mnist_1k_elu_augment", "the same + shift(2), rotate(10)"),
        Row("mnist_elu", "300-100 ELU + He, Adam; 55,000 training examples"),
        Row("mnist_elu_augment", "the same + shift(2), rotate(10)"),
    ],
}
GRADIENT_SPECS = {"mnist_sigmoid9": "sigmoid", "mnist_sigmoid9_normal": "sigmoid",
                  "mnist_sigmoid9_glorot4": "sigmoid", "mnist_relu9": "relu"}  # spec -> hidden activation
ALL = {row.spec: row for rows in GROUPS.values() for row in rows}


# ---------------------------------------------------------------- running
def run_spec(name: str, threads: int | None) -> dict:
    """Train specs/NAME.dnn with the CLI; return its summary plus the per-epoch log lines.

    `threads` sets OPENBLAS_NUM_THREADS for the run (None: OpenBLAS's default, one per core).
    """
    spec = f"specs/{name}.dnn"
    cmd = [sys.executable, "-m", "dnnspec", "run", spec, "--json", "-q"]
    log = ROOT / "checkpoints" / f"{name}.jsonl"
    seen = len(log.read_text().splitlines()) if log.is_file() else 0
    before = _cpu_counters()
    print(f"running dnnspec run {spec} --json -q", file=sys.stderr, flush=True)
    env = dict(os.environ)
    if threads is not None:
        env["OPENBLAS_NUM_THREADS"] = str(threads)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{spec}: dnnspec run failed (exit {proc.returncode})")
    after = _cpu_counters()
    summary = json.loads(proc.stdout)
    lines = [json.loads(line) for line in Path(ROOT / summary["log"]).read_text().splitlines()[seen:]]
    pretrain = [e for e in lines if e.get("phase") == "pretrain"]  # one line per pretrained layer and epoch
    epochs = [e for e in lines if e.get("phase") != "pretrain"]
    if len(epochs) != summary["epochs_run"]:
        raise SystemExit(f"{spec}: {len(epochs)} new log lines for {summary['epochs_run']} epochs")
    result = {
        "command": f"dnnspec run {spec}",
        "seed": _seed(name),
        "summary": summary,
        "epochs": [{k: e[k] for k in ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds")}
                   for e in epochs],
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "blas_threads": threads,
        "cpu": _cpu(),  # the machine that measured it: --render never relabels it with another
    }
    if before and after:  # the share of the machine other processes used: timings are noisy above ~5%
        busy, total, ours = (a - b for a, b in zip(after, before))
        result["others_cpu"] = round(max(0.0, busy - ours) / total, 3) if total > 0 else None
    if pretrain:
        result["pretrain"] = [{k: e[k] for k in ("layer", "epoch", "loss", "seconds")} for e in pretrain]
    if name in GRADIENT_SPECS:
        result["gradients"] = gradient_norms(name, GRADIENT_SPECS[name])
    return result


def _seed(name: str) -> int:
    m = re.search(r"^\s*seed\s+(\d+)", (ROOT / "specs" / f"{name}.dnn").read_text(), re.M)
    return int(m.group(1)) if m else 0


def _cpu_counters() -> tuple[float, float, float] | None:
    """(busy CPU-seconds of the machine, total CPU-seconds, CPU-seconds of our finished children)."""
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks.common import _machine_and_children_cpu
    finally:
        sys.path.pop(0)
    return _machine_and_children_cpu()


# ---------------------------------------------------------------- gradient norms, independently
def gradient_norms(name: str, activation: str, n: int = 2000) -> dict:
    """‖∂loss/∂kernel‖ per layer (input side first) at initialisation and after training.

    A float64 NumPy forward/backward of the dense stack, written here from the formulas; only the
    weights and the data come from dnnspec. The loss it computes is compared with dnnspec's own
    evaluation of the same weights, which checks both this code and dnnspec's forward pass.
    """
    import dnnspec

    spec = ROOT / "specs" / f"{name}.dnn"
    cwd = Path.cwd()
    try:
        os.chdir(ROOT)  # the spec's data and checkpoint paths are relative to the repository
        fresh = dnnspec.compile_file(spec)
        x, y = fresh.load_data().train
        x, y = x[:n], y[:n]
        trained = dnnspec.load_checkpoint(ROOT / "checkpoints" / f"{name}.last.h5")
        out = {}
        for when, model in (("init", fresh), ("trained", trained)):
            loss, norms = _backprop(model.variables, x, y, activation)
            out[when] = {"loss": loss, "dnnspec_loss": float(model.evaluate(x, y)["loss"]),
                         "kernel_grad_norms": norms}
        return out
    finally:
        os.chdir(cwd)


def _backprop(variables: dict, x, y, activation: str) -> tuple[float, list[float]]:
    import numpy as np

    kernels = [k for k in variables if k.endswith("/kernel")]  # creation order: input side first
    a = x.astype(np.float64)
    acts, pre = [a], []
    for i, k in enumerate(kernels):
        z = a @ variables[k].astype(np.float64) + variables[k[:-len("kernel")] + "bias"].astype(np.float64)
        pre.append(z)
        if i < len(kernels) - 1:
            a = 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500))) if activation == "sigmoid" else np.maximum(z, 0.0)
            acts.append(a)
    z = pre[-1] - pre[-1].max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss = float(-logp[np.arange(len(y)), y].mean())
    delta = np.exp(logp)
    delta[np.arange(len(y)), y] -= 1.0
    delta /= len(y)  # ∂(mean CE)/∂logits
    norms = []
    for i in range(len(kernels) - 1, -1, -1):
        norms.append(float(np.linalg.norm(acts[i].T @ delta)))
        if i > 0:
            delta = delta @ variables[kernels[i]].astype(np.float64).T
            delta *= acts[i] * (1.0 - acts[i]) if activation == "sigmoid" else (pre[i - 1] > 0)
    return loss, norms[::-1]


# ---------------------------------------------------------------- the document
def load_data() -> dict:
    m = DATA_RE.search(DOC.read_text()) if DOC.is_file() else None
    return json.loads(m.group(1)) if m else {}


def render(data: dict) -> None:
    """Rewrite every marked region of docs/results.md from `data` (rows of removed specs are dropped)."""
    data = {k: v for k, v in data.items() if k in ALL}
    text = DOC.read_text()
    regions = {group: _table(rows, data) for group, rows in GROUPS.items()}
    regions["vanishing-detail"] = _vanishing_detail(data)
    regions["pretraining-detail"] = _pretraining_detail(data)
    regions["machine"] = _machine(data)
    for key, body in regions.items():
        pattern = re.compile(rf"(<!-- BEGIN {key} -->\n).*?(<!-- END {key} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"{DOC}: no <!-- BEGIN {key} --> ... <!-- END {key} --> region")
        text = pattern.sub(lambda m: m.group(1) + body + m.group(2), text)
    lines = [f"{json.dumps(k)}: {json.dumps(_rounded(v), sort_keys=True)}" for k, v in sorted(data.items())]
    blob = "<!-- results-data\n{\n" + ",\n".join(lines) + "\n}\n-->"  # one spec per line
    text = DATA_RE.sub(lambda m: blob, text) if DATA_RE.search(text) else text.rstrip("\n") + "\n\n" + blob + "\n"
    DOC.write_text(text)


def _rounded(obj):
    """Floats to 6 significant digits: the stored data stays small and diffs stay readable."""
    if isinstance(obj, float):
        return float(f"{obj:.6g}")
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rounded(v) for v in obj]
    return obj


def _table(rows: list[Row], data: dict) -> str:
    lines = ["| spec | network, optimizer | epochs | train acc (last) | val acc (last) | val loss (last / min) "
             "| kept checkpoint: val acc (epoch) | test acc (kept ckpt) | reference val acc | seed "
             "| s/epoch (median) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        r = data.get(row.spec)
        ref = f"{row.reference:.3f}" if row.reference is not None else "–"
        if r is None:
            lines.append(f"| `{row.spec}` | {row.what} | not run | | | | | | {ref} | | |")
            continue
        s, ep = r["summary"], r["epochs"]
        kept = _kept_epoch(row.spec, ep)
        secs = statistics.median(e["seconds"] for e in ep)
        stop = " (stopped early)" if s.get("stopped_early") else ""
        min_loss = min(e["val_loss"] for e in ep)
        lines.append(f"| [`{row.spec}`](../specs/{row.spec}.dnn) | {row.what} | {s['epochs_run']}{stop} | "
                     f"{s['train_accuracy']:.4f} | {s['val_accuracy']:.4f} | {s['val_loss']:.4f} / {min_loss:.4f} | "
                     f"{kept['val_accuracy']:.4f} ({kept['epoch']}) | {s['test_accuracy']:.4f} | {ref} | "
                     f"{r['seed']} | {secs:.1f} |")
    lines.append("")
    lines.append("Reproduce a row: " + ", ".join(f"`{data[r.spec]['command']}`" for r in rows if r.spec in data)
                 + " (from the repository root).")
    return "\n".join(lines) + "\n"


def _kept_epoch(name: str, epochs: list[dict]) -> dict:
    """The epoch whose weights `checkpoint ... best=METRIC` kept: the first best one (it saves on improvement)."""
    m = re.search(r"^\s*checkpoint\s.*\bbest=(\w+)", (ROOT / "specs" / f"{name}.dnn").read_text(), re.M)
    metric = m.group(1) if m and m.group(1) != "none" else None
    if metric is None:
        return epochs[-1]
    sign = 1 if metric.endswith("loss") else -1  # minimise losses, maximise accuracies
    return min(epochs, key=lambda e: (sign * e[metric], e["epoch"]))


def _vanishing_detail(data: dict) -> str:
    lines = []
    specs = [s for s in GRADIENT_SPECS if s in data]
    if not specs:
        return "(not run)\n"
    lines.append("Training loss per epoch (ln 10 = 2.303 is the loss of a uniform guess over 10 classes):\n")
    lines.append("| spec | " + " | ".join(str(e["epoch"]) for e in data[specs[0]]["epochs"]) + " |")
    lines.append("|---|" + "---|" * len(data[specs[0]]["epochs"]))
    for s in specs:
        lines.append(f"| `{s}` | " + " | ".join(f"{e['loss']:.3f}" for e in data[s]["epochs"]) + " |")
    lines.append("")
    lines.append("Gradient norm ‖∂loss/∂W‖ of each layer's kernel, layer 1 (input side) to 10 (outputs), "
                 "on the first 2000 training examples, at initialisation (seed 42) and for the final weights "
                 "(`checkpoints/NAME.last.h5`). Computed outside dnnspec by a float64 NumPy backprop in "
                 "`benchmarks/results.py`; its loss is shown next to dnnspec's `model.evaluate` of the "
                 "same weights as a cross-check:\n")
    grads = [(s, w) for s in specs for w in ("init", "trained") if "gradients" in data[s]]
    if not grads:
        return "\n".join(lines) + "\n"
    n = len(data[grads[0][0]]["gradients"]["init"]["kernel_grad_norms"])
    lines.append("| spec | weights | loss (ours / dnnspec) | " + " | ".join(str(i + 1) for i in range(n))
                 + " | layer 1 / layer 10 |")
    lines.append("|---|---|---|" + "---|" * (n + 1))
    for s, w in grads:
        g = data[s]["gradients"][w]
        norms = g["kernel_grad_norms"]
        ratio = norms[0] / norms[-1] if norms[-1] > 0 else math.inf
        lines.append(f"| `{s}` | {w} | {g['loss']:.4f} / {g['dnnspec_loss']:.4f} | "
                     + " | ".join(f"{v:.1e}" for v in norms) + f" | {ratio:.1e} |")
    return "\n".join(lines) + "\n"


def _pretraining_detail(data: dict) -> str:
    """Time spent pretraining and in the whole run, and each layer's last reconstruction error."""
    rows = [r.spec for r in GROUPS["pretraining"] if r.spec in data]
    if not rows:
        return "(not run)\n"
    lines = ["| spec | pretraining (s) | whole run (s) | reconstruction error of each layer, first → last epoch |",
             "|---|---|---|---|"]
    for s in rows:
        r = data[s]
        pre = r.get("pretrain", [])
        layers = list(dict.fromkeys(e["layer"] for e in pre))
        errors = "; ".join(f"{layer}: {[e for e in pre if e['layer'] == layer][0]['loss']:.4f} → "
                           f"{[e for e in pre if e['layer'] == layer][-1]['loss']:.4f}" for layer in layers) or "–"
        spent = f"{sum(e['seconds'] for e in pre):.1f}" if pre else "–"
        lines.append(f"| `{s}` | {spent} | {r['summary']['seconds']:.1f} | {errors} |")
    return "\n".join(lines) + "\n"


def _cpu() -> dict:
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks.machine import cpu_info

        info = cpu_info()
    finally:
        sys.path.pop(0)
    return {"model": info["model"], "logical_cpus": info["logical_cpus"]}


def _machine(data: dict) -> str:
    """The machines the stored measurements were taken on (as recorded with them)."""
    cpus = sorted({f"{r['cpu']['model']} ({r['cpu']['logical_cpus']} logical CPUs)" if r.get("cpu")
                   else "a CPU not recorded with the measurement" for r in data.values()})
    others = [r["others_cpu"] for r in data.values() if r.get("others_cpu") is not None]
    dates = sorted(r["date"] for r in data.values())
    span = f"{dates[0]} – {dates[-1]}" if dates else "–"
    busy = (f"other processes used {min(others):.0%}–{max(others):.0%} of the machine's CPU "
            f"while the runs trained (median {statistics.median(others):.0%})") if others else ""
    threads = sorted({str(r.get("blas_threads") or "default") for r in data.values()})
    return (f"Measured {span} on {' and '.join(cpus) or '–'}, "
            f"OPENBLAS_NUM_THREADS={'/'.join(threads)}; {busy}.\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", metavar="NAME", choices=sorted(ALL),
                    help="run only this spec (repeatable)")
    ap.add_argument("--threads", type=int, default=1, metavar="N",
                    help="OPENBLAS_NUM_THREADS for the runs (default 1; 0 = OpenBLAS's default). Two BLAS "
                         "threads on a 2-core machine that other processes also use stall at every "
                         "barrier: an MNIST epoch took 57 s instead of 4.6 s")
    ap.add_argument("--render", action="store_true", help="only rewrite the tables from the stored data")
    args = ap.parse_args(argv)
    data = load_data()
    if not args.render:
        for name in args.only or list(ALL):
            data[name] = run_spec(name, args.threads or None)
            render(data)  # after every run, so an interrupted sweep keeps what it measured
    render(data)


if __name__ == "__main__":
    main()
