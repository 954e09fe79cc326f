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


def thread_config(threads):
    """None (the automatic choice), N (`--threads N`: N threads for GEMM blocks and element-wise work),
    "BxP" (B BLAS threads, P element-wise threads) or "BxP/K" (and row blocks from K Ki elements)
    -> a ThreadConfig or None."""
    from dnnspec.train.parallel import ThreadConfig, threads_config

    if threads is None or threads == "auto":
        return None
    if isinstance(threads, str) and "x" in threads:
        threads, _, block = threads.partition("/")
        b, p = threads.split("x")
        return ThreadConfig(int(b), int(p), int(block) * 1024 if block else None)
    return threads_config(int(threads))


def run(variant: str = "base", batch: int = 100, epochs: int = 3, n_samples: int = 60000,
        warmup: int = 1, profile: bool = False, seed: int = 0, frozen: int = 0, layers: int = 4,
        cache: bool = True, widths: tuple[int, ...] | None = None, threads=None, gemm_split: bool = False) -> dict:
    """Seconds per epoch of `model.fit(x, y, epochs=1)` (shuffling, metrics and all).

    `threads`: None for the automatic choice (timed on a copy of the model before the fit, as
    `dnnspec run` does for a fit long enough to pay for it; its cost is `choice_seconds`), N or
    "BxP" to force a configuration.
    `gemm_split` (an experiment, not what dnnspec does): every 2-D GEMM of the layers is cut into
    row blocks run side by side on the element-wise pool, each on single-threaded BLAS."""
    import dnnspec
    from dnnspec.train import parallel

    forced = thread_config(threads)
    if forced is not None:
        parallel.force_threads(forced)
    if gemm_split:
        _split_gemms()
    X, y = synthetic_mnist(n_samples, seed=seed)
    text = spec(variant, batch, frozen, layers, widths).replace("seed 0", f"seed {seed}")
    if not cache:
        text = text.replace("seed ", "cache_frozen false\n    seed ")
    model = dnnspec.compile_text(text)
    tick = time.perf_counter()
    # the choice a long run makes (a short benchmark fit would skip the trials); the fit keeps it
    choice = parallel.choose(model.trainer, X, y, batch)
    choice_seconds = time.perf_counter() - tick
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
              "fit_overhead_seconds": total - sum(h["seconds"] for h in history),
              "threads": parallel.current().short, "thread_choice": choice, "choice_seconds": choice_seconds,
              "gemm_split": gemm_split}
    if profile:
        result["profile"] = _profile(model, X, y)
    return result


def _split_gemms(min_rows: int = 64) -> None:
    """Route the layers' np.matmul through row blocks on the element-wise pool (experiment only)."""
    import dnnspec.ops.layers as layers
    from dnnspec.train import parallel

    real = np.matmul

    def block(item):
        a, b, out = item
        real(a, b, out=out)

    def split(a, b, out=None, **kw):
        pool = parallel.pool()
        n = pool.threads
        if out is None or kw or n == 1 or a.ndim != 2 or b.ndim != 2 or a.shape[0] < n * min_rows:
            return real(a, b, out=out, **kw)
        step = -(-a.shape[0] // n)
        pool.run(block, [(a[i:i + step], b, out[i:i + step]) for i in range(0, a.shape[0], step)])
        return out

    layers.np.matmul = split  # numpy's own attribute: this process only


def _profile(model, X, y) -> dict:
    """Where one epoch's time goes: GEMMs (np.matmul), the optimizer step (penalties, clipping and
    the chunked update, on the element-wise pool), the loss (softmax-CE forward and backward), the
    batch gather (np.take), the per-step finiteness check (the sums over the flat buffers), and the rest (bias adds, activations,
    masks, metrics, Python)."""
    import dnnspec.ops.layers as layers
    import dnnspec.train.loop as loop

    acc = {"gemm": 0.0, "optimizer": 0.0, "loss": 0.0, "gather": 0.0, "check": 0.0}
    trainer, up, loss = model.trainer, model.trainer.updater, model.plan.loss
    real = {"matmul": np.matmul, "take": np.take}

    def timed(fn, key):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            out = fn(*a, **k)
            acc[key] += time.perf_counter() - t0
            return out
        return wrapper

    layers.np.matmul = timed(real["matmul"], "gemm")  # `np` is numpy itself: swapped for this epoch only
    loop.np.take = timed(real["take"], "gather")
    up.step = timed(up.step, "optimizer")
    loss.forward, loss.backward = timed(loss.forward, "loss"), timed(loss.backward, "loss")
    check = "buffer_sums_finite" if hasattr(trainer, "buffer_sums_finite") else "check_finite"  # the per-step sums
    setattr(trainer, check, timed(getattr(trainer, check), "check"))
    try:
        t0 = time.perf_counter()
        history = model.fit(X, y, epochs=1)
        total = time.perf_counter() - t0
    finally:
        layers.np.matmul, loop.np.take = real["matmul"], real["take"]
        for obj, names in ((up, ["step"]), (loss, ["forward", "backward"]), (trainer, [check])):
            for name in names:
                del obj.__dict__[name]
    # the epoch's validation-free fit: history seconds is the training steps; the rest is set-up
    acc["rest"] = total - sum(acc.values())
    steps = -(-len(X) // model.program.train.batch)
    return {"fraction": {k: v / total for k, v in acc.items()}, "seconds": total,
            "ms_per_step": {k: 1e3 * v / steps for k, v in acc.items()}, "epoch_seconds": history[-1]["seconds"]}


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
