"""dnnspec on the benchmark workload of issue 6, with the same `run()` contract as the references."""

from __future__ import annotations

import time

import numpy as np

from .common import Stats, synthetic_mnist, time_epochs

HIDDEN = {
    # He-normal untruncated, as torch's kaiming_normal_ and the NumPy reference
    "base": "dense(WIDTH, activation=relu, init=variance_scaling(scale=2.0, mode=fan_in, distribution=normal))",
    "bn_elu_dropout": ("dense(WIDTH, init=variance_scaling(scale=2.0, mode=fan_in, distribution=normal))\n"
                       "        batchnorm(momentum=0.99, epsilon=1e-3)\n        elu\n        dropout(0.3)"),
}


def spec(variant: str, batch: int, frozen: int = 0, layers: int = 4, widths: tuple[int, ...] | None = None) -> str:
    widths = widths or (512,) * layers
    freeze = f'\nfreeze "hidden[{"".join(str(i) for i in range(1, frozen + 1))}]/"\n' if frozen else ""
    body = "\n    ".join(f"scope hidden{i} {{\n        {HIDDEN[variant].replace('WIDTH', str(w))}\n    }}"
                          for i, w in enumerate(widths, 1))
    return f"""
model bench {{
    input x[784]
    {body}
    dense(10)
}}
train {{
    optimizer adam(lr=0.001)
    batch {batch}
    seed 0
}}
{freeze}"""


def run(variant: str = "base", batch: int = 100, epochs: int = 3, n_samples: int = 60000,
        warmup: int = 1, profile: bool = False, seed: int = 0, frozen: int = 0, layers: int = 4,
        cache: bool = True, widths: tuple[int, ...] | None = None) -> dict:
    """Seconds per epoch of `model.fit(x, y, epochs=1)` (shuffling, metrics and all)."""
    import dnnspec

    X, y = synthetic_mnist(n_samples, seed=seed)
    text = spec(variant, batch, frozen, layers, widths).replace("seed 0", f"seed {seed}")
    if not cache:
        text = text.replace("seed ", "cache_frozen false\n    seed ")
    model = dnnspec.compile_text(text)
    # One fit over all epochs, timed per epoch from its history (what a run does: a frozen-layer
    # cache is built once per fit, and its one-time cost is reported on its own).
    tick = time.perf_counter()
    history = model.fit(X, y, epochs=warmup + epochs)
    total = time.perf_counter() - tick
    times = [h["seconds"] for h in history[warmup:]]
    losses = [h["loss"] for h in history]
    result = {"impl": "dnnspec", "variant": variant, "batch": batch, "n_samples": n_samples, "epochs": epochs,
              "epoch_seconds": times, "stats": Stats.of(times).as_dict(), "first_loss": losses[0],
              "final_loss": losses[-1], "steps_per_epoch": -(-n_samples // batch),
              "fit_overhead_seconds": total - sum(h["seconds"] for h in history)}
    if profile:
        result["profile"] = _profile(model, X, y)
    return result


def _profile(model, X, y) -> dict:
    """Where one epoch's time goes: GEMMs (np.matmul), the optimizer update, and the rest."""
    import dnnspec.ops.layers as layers
    import dnnspec.train.updater as updater

    acc = {"gemm": 0.0, "optimizer": 0.0}
    real_matmul, real_update = np.matmul, model.trainer.updater.optimizer.update

    def timed_matmul(*a, **k):
        t0 = time.perf_counter()
        out = real_matmul(*a, **k)
        acc["gemm"] += time.perf_counter() - t0
        return out

    def timed_update(*a, **k):
        t0 = time.perf_counter()
        real_update(*a, **k)
        acc["optimizer"] += time.perf_counter() - t0

    layers.np.matmul = timed_matmul  # layers uses `np.matmul`; swap it for the profiled epoch only
    model.trainer.updater.optimizer.update = timed_update
    try:
        t0 = time.perf_counter()
        model.fit(X, y, epochs=1)
        total = time.perf_counter() - t0
    finally:
        layers.np.matmul = real_matmul
        del model.trainer.updater.optimizer.update
    acc["rest"] = total - acc["gemm"] - acc["optimizer"]
    del updater
    return {"fraction": {k: v / total for k, v in acc.items()}, "seconds": total}


def eval_throughput(batch: int = 4096, n_samples: int = 60000, seed: int = 0) -> dict:
    """Samples per second of inference (predict) vs training on the base workload."""
    import dnnspec

    X, y = synthetic_mnist(n_samples, seed=seed)
    model = dnnspec.compile_text(spec("base", 100))
    model.fit(X[:5000], y[:5000], epochs=1)
    train = Stats.of(time_epochs(lambda: model.fit(X, y, epochs=1), 2, warmup=0))
    infer = Stats.of(time_epochs(lambda: model.predict(X), 3, warmup=1))
    return {"train_samples_per_s": n_samples / train.median, "predict_samples_per_s": n_samples / infer.median,
            "ratio": train.median / infer.median}


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_memory(n_samples: int = 60000, batch: int = 100, seed: int = 0) -> dict:
    """Peak resident memory of one training epoch over the interpreter's baseline, and the estimate
    data + parameters + gradients + optimizer slots + one batch of activations and their gradients."""
    import resource

    import dnnspec
    import dnnspec.api  # noqa: F401  (the code itself is baseline, not training memory)

    dnnspec.compile_text(spec("base", batch).replace("512", "2"))  # loads grammar and catalogue
    baseline = _rss_mb()
    X, y = synthetic_mnist(n_samples, seed=seed)
    model = dnnspec.compile_text(spec("base", batch))
    model.fit(X, y, epochs=1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    plan = model.plan
    n = plan.theta.size + plan.fixed.size
    activations = sum(op.n_out + op.n_in for op in plan.program.ops) * batch  # outputs and input gradients
    estimate = (X.nbytes + y.nbytes + 4 * (2 * n + 2 * plan.theta.size + activations)) / 2**20
    return {"baseline_mb": baseline, "peak_mb": peak, "used_mb": peak - baseline, "estimate_mb": estimate}
