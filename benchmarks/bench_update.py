"""The optimizer update alone, over the benchmark net's 1.2 M parameters: one NumPy call per pass
over the whole flat buffer (as before chunking) against the runtime's L2-sized chunks, on 1, 2,
... threads of the element-wise pool, and PyTorch's fused and foreach Adam over the same
variables' shapes on as many threads (when torch is installed and the optimizer is Adam).

    python -m benchmarks.bench_update [--optimizer adam] [--repeats 300] [--passes]

Milliseconds per update: minimum and median of `repeats` updates, interleaved (one update of each
variant in turn, one thread count after the other) so that load from other processes hits every
variant alike. `ratio_to_torch`: dnnspec's chunked update (which also notes each chunk's largest
and smallest weight for the divergence check) over PyTorch's fused Adam at the same thread count
(medians). "chunks and the divergence check": the update and the rest of the per-step check that
the weights are finite (`Trainer.buffer_sums_finite`), which PyTorch does not do: what a training
step spends on both. `--passes` times each NumPy pass of one chunk of the rule (microseconds,
medians), interleaved the same way: where an update's time goes.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from .common import Stats


def _torch_adams(shapes: list[tuple[int, ...]]) -> dict:
    """name -> step function of torch's fused and foreach Adam over tensors of `shapes`."""
    from . import ref_torch

    if not ref_torch.available():
        return {}
    import torch

    gen = torch.Generator().manual_seed(0)
    out = {}
    for kind in ("fused", "foreach"):
        params = [torch.nn.Parameter(torch.randn(*s, generator=gen) * 0.05) for s in shapes]
        for p in params:
            p.grad = torch.randn(*p.shape, generator=gen) * 1e-2
        out[f"torch {kind} Adam"] = torch.optim.Adam(params, lr=1e-3, **{kind: True}).step
    return out


def run(optimizer: str = "adam", repeats: int = 300, threads: list[int] | None = None) -> dict:
    """Per thread count, its variants interleaved (switching torch's thread count every update
    would time the switch: its OpenMP team is rebuilt)."""
    import dnnspec
    from dnnspec.train import parallel

    from .bench_dnnspec import spec

    text = spec("base", 100).replace("optimizer adam(lr=0.001)", f"optimizer {optimizer}")
    model = dnnspec.compile_text(text)
    up, plan = model.trainer.updater, model.plan
    rng = np.random.default_rng(0)
    plan.grad[...] = rng.standard_normal(plan.grad.size, dtype=np.float32) * 1e-2
    cores = parallel.usable_cores()
    threads = threads or sorted({1, 2, cores})
    opt, theta, grad, state = up.optimizer, plan.theta, plan.grad, up.state
    t = [0]

    def whole():
        t[0] += 1
        opt.prepare(t[0])
        opt.update(theta, grad, state, 1e-3, t[0])

    def step_and_check():  # what a training step spends on the update and the per-step finiteness check
        up.step(0)
        model.trainer.buffer_sums_finite()

    adam = optimizer == "adam" or optimizer.startswith("adam(")
    torch_steps = _torch_adams([info.shape for info in plan.infos.values() if info.trainable]) if adam else {}
    samples: dict[str, list[float]] = {}
    ratios = {}
    for n in threads:
        suffix = f"{n} thread{'s' if n > 1 else ''}"
        variants = {f"whole buffer, {suffix}": whole} if n == 1 else {}
        variants[f"chunks of {up.chunk // 1024} Ki, {suffix}"] = lambda: up.step(0)
        variants[f"chunks and the divergence check, {suffix}"] = step_and_check
        variants.update({f"{k}, {suffix}": fn for k, fn in torch_steps.items()})
        parallel.configure(parallel.ThreadConfig(1, n))
        if torch_steps:
            import torch

            torch.set_num_threads(n)
        for name in variants:
            samples[name] = []
        for _ in range(repeats):
            for name, fn in variants.items():
                t0 = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - t0)
        if torch_steps:
            ratios[n] = statistics.median(samples[f"chunks of {up.chunk // 1024} Ki, {suffix}"]) / \
                statistics.median(samples[f"torch fused Adam, {suffix}"])
    parallel.configure(parallel.ThreadConfig(1, 1))
    stats = {k: Stats.of([1e3 * s for s in v]) for k, v in samples.items()}
    return {"optimizer": optimizer, "parameters": int(theta.size), "chunk": up.chunk, "l2_bytes": parallel.l2_bytes(),
            "ms": {k: {"min": s.min, "median": s.median} for k, s in stats.items()},
            "ratio_to_torch": ratios}


def passes(optimizer: str = "adam", repeats: int = 2000) -> dict:
    """Microseconds per NumPy pass of the update rule over one chunk (medians of `repeats`,
    interleaved): each ufunc call the rule makes, recorded by wrapping NumPy's ufuncs and the
    arrays' in-place operators while the rule runs once, then replayed one by one."""
    import dnnspec
    from dnnspec.train import parallel

    from .bench_dnnspec import spec

    text = spec("base", 100).replace("optimizer adam(lr=0.001)", f"optimizer {optimizer}")
    up = dnnspec.compile_text(text).trainer.updater
    n = parallel.chunk_size(3 + len(up.state))
    rng = np.random.default_rng(0)
    p = rng.standard_normal(n, dtype=np.float32)
    g = rng.standard_normal(n, dtype=np.float32) * 1e-2
    state = {k: np.full(n, 1e-4, np.float32) for k in up.state}
    calls: list[tuple[str, object, tuple, dict]] = []

    class Spy(np.ndarray):  # records each in-place operator and ufunc applied to the chunk's arrays
        def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
            plain = tuple(x.view(np.ndarray) if isinstance(x, Spy) else x for x in inputs)
            out = kwargs.get("out")
            if out is not None:
                kwargs["out"] = tuple(x.view(np.ndarray) for x in out)
            fn = ufunc if method == "__call__" else getattr(ufunc, method)
            calls.append((ufunc.__name__ + ("" if method == "__call__" else f".{method}"), fn, plain, kwargs))
            result = fn(*plain, **kwargs)
            return out[0] if out is not None and len(out) == 1 else result  # `m *= b` keeps the Spy

    up.optimizer.prepare(1)
    up.optimizer.update(p.view(Spy), g.view(Spy), {k: v.view(Spy) for k, v in state.items()}, 1e-3, 1)
    times: list[list[float]] = [[] for _ in calls]
    with np.errstate(all="ignore"):
        for _ in range(repeats):
            for i, (_, fn, args, kwargs) in enumerate(calls):
                t0 = time.perf_counter()
                fn(*args, **kwargs)
                times[i].append(time.perf_counter() - t0)
    rows = [(name, 1e6 * float(np.median(ts))) for (name, *_), ts in zip(calls, times)]
    return {"optimizer": optimizer, "chunk": n, "passes": len(rows),
            "us": [{"pass": name, "us": round(us, 2)} for name, us in rows],
            "total_us": round(sum(us for _, us in rows), 1)}


def main(argv=None):
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--optimizer", default="adam")
    ap.add_argument("--repeats", type=int, default=300)
    ap.add_argument("--passes", action="store_true", help="time each pass of the rule over one chunk instead")
    a = ap.parse_args(argv)
    print(json.dumps(passes(a.optimizer) if a.passes else run(a.optimizer, a.repeats), indent=1))


if __name__ == "__main__":
    main()
