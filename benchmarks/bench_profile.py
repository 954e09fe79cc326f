"""Where one training step's time goes, op by op: each op's forward and backward (its GEMMs apart
from its element-wise work), the loss, the batch gather, the optimizer update, and the rest (the
per-step finiteness sums, metrics, Python), at several thread configurations.

    python -m benchmarks.bench_profile [--variant base --batch 100] [--threads 1x1 1x2 2x2]
                                       [--steps 40] [--rounds 3]

Milliseconds per step: one epoch of `steps` batches under `model.fit` per configuration and round,
rounds in alternating order (load from other processes hits every configuration alike), the
median of the rounds. The timing wrappers cost ~1 µs per call (a few dozen calls per step).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from .common import synthetic_mnist


def _timed(fn, acc: dict, key: str, stack: list | None = None):
    """fn, with its wall time added to acc[key] (and `key` on top of `stack` while it runs)."""
    def wrapper(*a, **k):
        if stack is not None:
            stack.append(key)
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            acc[key] = acc.get(key, 0.0) + time.perf_counter() - t0
            if stack is not None:
                stack.pop()
    return wrapper


def _instrument(model, acc: dict):
    """Swap timing wrappers in; returns a function that takes them out again."""
    import dnnspec.ops.layers as layers
    import dnnspec.train.loop as loop

    plan, trainer = model.plan, model.trainer
    stack: list[str] = []
    real_take = np.take
    real_gemms = {name: getattr(layers, name) for name in ("matmul", "matmuls")}

    def charged(fn):  # a GEMM (all its blocks, when split on the pool) is charged to the op that called it
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            out = fn(*a, **k)
            key = f"gemm:{stack[-1]}" if stack else "gemm:?"
            acc[key] = acc.get(key, 0.0) + time.perf_counter() - t0
            return out
        return wrapper

    for name, fn in real_gemms.items():  # the layers' GEMMs (dnnspec.pool): swapped for the profiled epoch only
        setattr(layers, name, charged(fn))
    real_rows = getattr(loop, "rows", None)  # the gather's row blocks (np.take in each) on the pool
    if real_rows is not None:
        loop.rows = _timed(real_rows, acc, "gather")
    else:  # before the gather ran on the pool
        loop.np.take = _timed(real_take, acc, "gather")
    patched = []
    for i, op in enumerate(plan.ops):
        kind = type(op).registered_name
        for d in ("forward", "backward"):
            setattr(op, d, _timed(getattr(op, d), acc, f"{d}:{i}:{kind}", stack))
            patched.append((op, d))
    for obj, name, key in ((plan.loss, "forward", "loss"), (plan.loss, "backward", "loss"),
                           (trainer.updater, "step", "update"), (trainer, "buffer_sums_finite", "check"),
                           (trainer, "train_step", "step")):
        setattr(obj, name, _timed(getattr(obj, name), acc, key))
        patched.append((obj, name))

    def restore():
        loop.np.take = real_take
        for name, fn in real_gemms.items():
            setattr(layers, name, fn)
        if real_rows is not None:
            loop.rows = real_rows
        for obj, name in patched:
            del obj.__dict__[name]
    return restore


def profile_epoch(model, X, y) -> dict:
    """ms per step of each part for one epoch of `model.fit` over (X, y)."""
    acc: dict[str, float] = {}
    restore = _instrument(model, acc)
    try:
        t0 = time.perf_counter()
        model.fit(X, y, epochs=1)
        total = time.perf_counter() - t0
    finally:
        restore()
    steps = -(-len(X) // model.program.train.batch)
    out = {"total": total}
    for key, value in acc.items():
        if key.startswith(("forward:", "backward:")):  # element-wise = the op's time less its GEMMs
            value -= acc.get(f"gemm:{key}", 0.0)
        out[key] = value
    ops_total = sum(v for k, v in acc.items() if k.startswith(("forward:", "backward:")))
    out["gemm"] = sum(v for k, v in acc.items() if k.startswith("gemm:"))
    out["elementwise"] = ops_total - out["gemm"]
    out["rest"] = total - ops_total - sum(acc.get(k, 0.0) for k in ("loss", "update", "gather", "check"))
    return {k: 1e3 * v / steps for k, v in out.items()}


def run(variant: str = "base", batch: int = 100, threads=("1x1", "1x2", "2x2"), steps: int = 40,
        rounds: int = 3, seed: int = 0) -> dict:
    import dnnspec
    from dnnspec.train import parallel

    from .bench_dnnspec import spec, thread_config

    X, y = synthetic_mnist(batch * steps, seed=seed)
    models = {}
    for t in threads:
        parallel.force_threads(thread_config(t))
        models[t] = dnnspec.compile_text(spec(variant, batch))
        models[t].fit(X, y, epochs=1)  # warm-up: buffers allocated, threads started
    samples: dict[str, list[dict]] = {t: [] for t in threads}
    for r in range(rounds):
        for t in (threads if r % 2 == 0 else threads[::-1]):
            parallel.force_threads(thread_config(t))
            samples[t].append(profile_epoch(models[t], X, y))
    parallel.force_threads(None)
    result = {}
    for t, runs in samples.items():
        keys = set().union(*runs)
        result[t] = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in keys}
    return {"variant": variant, "batch": batch, "steps": steps, "rounds": rounds, "ms_per_step": result}


def by_kind(ms: dict) -> dict[tuple[str, str], float]:
    """(op kind, forward|backward|GEMM ...) -> ms per step, summed over the layers."""
    out: dict[tuple[str, str], float] = {}
    for key, value in ms.items():
        parts = key.split(":")
        if parts[0] in ("forward", "backward"):
            out[(parts[2], parts[0])] = out.get((parts[2], parts[0]), 0.0) + value
        elif parts[0] == "gemm" and len(parts) == 4:
            out[(parts[3], f"gemm {parts[1]}")] = out.get((parts[3], f"gemm {parts[1]}"), 0.0) + value
    return out


def table(result: dict) -> list[str]:
    """A Markdown table: one row per part, one column per configuration."""
    configs = list(result["ms_per_step"])
    ms = result["ms_per_step"]
    kinds = {c: by_kind(ms[c]) for c in configs}
    rows = sorted(set().union(*kinds.values()), key=lambda k: (k[0], k[1]))
    lines = ["| part (ms per step) | " + " | ".join(configs) + " |", "|---|" + "---|" * len(configs)]
    for kind, what in rows:
        cells = " | ".join(f"{kinds[c].get((kind, what), 0.0):.2f}" for c in configs)
        lines.append(f"| {kind} {what} | {cells} |")
    for key, label in (("gemm", "**all GEMMs**"), ("elementwise", "**all element-wise (ops)**"), ("loss", "loss"),
                       ("gather", "batch gather"), ("update", "optimizer update"), ("check", "finiteness sums"),
                       ("rest", "rest (metrics, Python)"), ("total", "**step**")):
        lines.append(f"| {label} | " + " | ".join(f"{ms[c].get(key, 0.0):.2f}" for c in configs) + " |")
    return lines


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="base")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--threads", nargs="+", default=["1x1", "1x2", "2x2"], help="BLASxelement-wise configurations")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", help="also write the result to this file")
    args = ap.parse_args(argv)
    result = run(args.variant, args.batch, tuple(args.threads), args.steps, args.rounds)
    if args.json:
        from dnnspec.fileio import write_text

        write_text(args.json, json.dumps(result, indent=1))
    print(f"{args.variant}, batch {args.batch}: median of {args.rounds} epochs of {args.steps} steps")
    print("\n".join(table(result)))


if __name__ == "__main__":
    main()
