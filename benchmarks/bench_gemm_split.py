"""The training GEMMs of the benchmark net three ways: single-threaded BLAS; the BLAS's own N
threads; single-threaded BLAS on one block of the output per thread, run side by side on
dnnspec's pool of N threads (`dnnspec.pool.matmul`, what the `1xN` configurations do).

    python -m benchmarks.bench_gemm_split [--threads N] [--repeats 200]
    python -m benchmarks.bench_gemm_split --sequence [--threads N] [--rounds 20]

Milliseconds per call, minimum and median of `repeats`. One-thread BLAS and the blocks are
interleaved so load from other processes hits both alike; the BLAS's own threads are timed after
them, apart: after each call they spin (OpenBLAS: ~0.1 s), and interleaved they would take the
cores the pool's blocks need. Blocks write disjoint parts of the output, each over the whole
inner dimension, so with OpenBLAS the result is the same bits as one call (`same_bits`; the
BLAS's own threads may split the inner dimension's blocking differently).

`--sequence`: all the GEMMs of one training step of the benchmark net (784-512x4, the output
layer's small GEMMs left out: they stay whole), forward then backward as the layers issue them
(`pool.matmul`, `pool.matmuls`), on 1 thread and in blocks on N, nothing else in between:
milliseconds per step, median and minimum of `rounds` alternating rounds of 5 steps, and the
speed-up. Against a training step's GEMMs in `bench_profile`, it tells what the blocks alone
scale to and what the rest of a step (the element-wise work, the update) takes from them.
"""

from __future__ import annotations

import time

import numpy as np


def shapes(batch: int) -> dict[str, tuple[tuple[int, int], tuple[int, int], bool]]:
    """name -> (a shape, b shape, a transposed): forward x@W, weight gradient x.T@dz, input gradient dz@W.T."""
    return {f"x@W {batch}x784·784x512": ((batch, 784), (784, 512), False),
            f"x@W {batch}x512·512x512": ((batch, 512), (512, 512), False),
            f"x.T@dz 784x{batch}·{batch}x512": ((batch, 784), (batch, 512), True),
            f"dz@W.T {batch}x512·512x512": ((batch, 512), (512, 512), False)}


def run(threads: int | None = None, repeats: int = 200, batches=(100, 1000)) -> dict:
    from threadpoolctl import threadpool_limits

    from dnnspec import pool
    from dnnspec.train import parallel

    n = threads or parallel.usable_cores()
    rng = np.random.default_rng(0)
    out: dict[str, dict] = {}
    try:
        for batch in batches:
            for name, (sa, sb, trans) in shapes(batch).items():
                a = rng.standard_normal(sa, dtype=np.float32)
                b = rng.standard_normal(sb, dtype=np.float32)
                a_op = a.T if trans else a
                c = np.empty((a_op.shape[0], b.shape[1]), np.float32)

                def whole():
                    np.matmul(a_op, b, out=c)

                def blocks():
                    pool.matmul(a_op, b, c)

                times: dict[str, list[float]] = {"blas 1": [], f"blas 1, {n} blocks on the pool": [], f"blas {n}": []}
                results = {}
                with threadpool_limits(1, user_api="blas"):
                    for _ in range(repeats):
                        for k, split, fn in (("blas 1", False, whole), (f"blas 1, {n} blocks on the pool", True, blocks)):
                            pool.use(n if split else 1, split_gemms=split)
                            t0 = time.perf_counter()
                            fn()
                            times[k].append(time.perf_counter() - t0)
                            results[k] = c.copy()
                pool.use(1)
                with threadpool_limits(n, user_api="blas"):
                    for _ in range(repeats):
                        t0 = time.perf_counter()
                        whole()
                        times[f"blas {n}"].append(time.perf_counter() - t0)
                    results[f"blas {n}"] = c.copy()
                ref = results["blas 1"]
                out[name] = {k: {"min_ms": 1e3 * min(v), "median_ms": 1e3 * sorted(v)[len(v) // 2],
                                 "same_bits": bool(np.array_equal(results[k], ref))} for k, v in times.items()}
    finally:
        pool.use(1)
    return {"threads": n, "ms": out}


def sequence(threads: int | None = None, rounds: int = 20, batches=(100, 1000)) -> dict:
    from threadpoolctl import threadpool_limits

    from dnnspec import pool
    from dnnspec.train import parallel

    n = threads or parallel.usable_cores()
    rng = np.random.default_rng(0)
    dims = [784, 512, 512, 512, 512]
    out = {}
    with threadpool_limits(1, user_api="blas"):
        for batch in batches:
            w = [rng.standard_normal((a, b), dtype=np.float32) for a, b in zip(dims[:-1], dims[1:])]
            x = [rng.standard_normal((batch, a), dtype=np.float32) for a in dims[:-1]]
            y = [np.empty((batch, b), np.float32) for b in dims[1:]]
            g = [np.empty_like(k) for k in w]
            dx = [np.empty_like(a) for a in x]

            def step():
                for i in range(len(w)):
                    pool.matmul(x[i], w[i], y[i])
                for i in reversed(range(len(w))):  # the first layer needs no input gradient
                    pool.matmuls((x[i].T, y[i], g[i]), *([(y[i], w[i].T, dx[i])] if i else []))

            times: dict[int, list[float]] = {1: [], n: []}
            for r in range(rounds):
                for t in ((1, n) if r % 2 == 0 else (n, 1)):
                    pool.use(t, split_gemms=t > 1)
                    step()
                    t0 = time.perf_counter()
                    for _ in range(5):
                        step()
                    times[t].append((time.perf_counter() - t0) / 5)
            pool.use(1)
            med = {t: 1e3 * sorted(v)[len(v) // 2] for t, v in times.items()}
            low = {t: 1e3 * min(v) for t, v in times.items()}
            out[f"batch {batch}"] = {"ms_median": med, "ms_min": low, "speedup_median": med[1] / med[n],
                                     "speedup_min": low[1] / low[n]}
    return {"threads": n, "step_gemms": out}


def main(argv=None):
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int)
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--sequence", action="store_true", help="a training step's GEMMs in sequence, 1 thread vs N")
    ap.add_argument("--rounds", type=int, default=20)
    a = ap.parse_args(argv)
    print(json.dumps(sequence(a.threads, a.rounds) if a.sequence else run(a.threads, a.repeats), indent=1))


if __name__ == "__main__":
    main()
