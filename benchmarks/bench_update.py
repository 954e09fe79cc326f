"""The optimizer update alone, over the benchmark net's 1.2 M parameters: one NumPy call per pass
over the whole flat buffer (as before chunking) against the runtime's L2-sized chunks, on 1, 2,
... threads of the element-wise pool.

    python -m benchmarks.bench_update [--optimizer adam] [--repeats 300]

Milliseconds per update: minimum and median of `repeats` updates, interleaved (one update of each
variant in turn) so that load from other processes hits every variant alike.
"""

from __future__ import annotations

import time

import numpy as np

from .common import Stats


def run(optimizer: str = "adam", repeats: int = 300, threads: list[int] | None = None) -> dict:
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

    def chunked():
        up.step(0)

    variants = {"whole buffer, 1 thread": (whole, 1)}
    variants.update({f"chunks of {up.chunk // 1024} Ki, {n} thread{'s' if n > 1 else ''}": (chunked, n)
                     for n in threads})
    samples: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeats):
        for name, (fn, n) in variants.items():
            parallel.configure(parallel.ThreadConfig(1, n))
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    parallel.configure(parallel.ThreadConfig(1, 1))
    stats = {k: Stats.of([1e3 * s for s in v]) for k, v in samples.items()}
    return {"optimizer": optimizer, "parameters": int(theta.size), "chunk": up.chunk, "l2_bytes": parallel.l2_bytes(),
            "ms": {k: {"min": s.min, "median": s.median} for k, s in stats.items()}}


def main(argv=None):
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--optimizer", default="adam")
    ap.add_argument("--repeats", type=int, default=300)
    a = ap.parse_args(argv)
    print(json.dumps(run(a.optimizer, a.repeats), indent=1))


if __name__ == "__main__":
    main()
