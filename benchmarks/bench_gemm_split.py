"""The training GEMMs of the benchmark net three ways: single-threaded BLAS; the BLAS's own N
threads; single-threaded BLAS on one block of the output per thread, run side by side on
dnnspec's pool of N threads (`dnnspec.pool.matmul`, what the `1xN` configurations do).

    python -m benchmarks.bench_gemm_split [--threads N] [--repeats 200]

Milliseconds per call, minimum and median of `repeats`. One-thread BLAS and the blocks are
interleaved so load from other processes hits both alike; the BLAS's own threads are timed after
them, apart: after each call they spin (OpenBLAS: ~0.1 s), and interleaved they would take the
cores the pool's blocks need. Blocks write disjoint parts of the output, each over the whole
inner dimension, so with OpenBLAS the result is the same bits as one call (`same_bits`; the
BLAS's own threads may split the inner dimension's blocking differently).
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


def main(argv=None):
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int)
    ap.add_argument("--repeats", type=int, default=200)
    a = ap.parse_args(argv)
    print(json.dumps(run(a.threads, a.repeats), indent=1))


if __name__ == "__main__":
    main()
