"""The training GEMMs of the benchmark net three ways: single-threaded BLAS; the BLAS's own N
threads; single-threaded BLAS on row blocks run side by side on dnnspec's element-wise pool of N
threads (what dnnspec would do if it split GEMMs itself).

    python -m benchmarks.bench_gemm_split [--threads N] [--repeats 200]

Milliseconds per call, minimum and median of `repeats`, the variants interleaved so load from
other processes hits each alike. Row blocks write disjoint rows of the output, so the result is
the same bits as single-threaded BLAS on the whole (the BLAS's own threads may split the inner
dimension's blocking differently: compare `same_bits`).
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

    from dnnspec.train import parallel

    n = threads or parallel.usable_cores()
    pool = parallel.Pool(n)
    rng = np.random.default_rng(0)
    out: dict[str, dict] = {}
    try:
        for batch in batches:
            for name, (sa, sb, trans) in shapes(batch).items():
                a = rng.standard_normal(sa, dtype=np.float32)
                b = rng.standard_normal(sb, dtype=np.float32)
                a_op = a.T if trans else a
                c = np.empty((a_op.shape[0], b.shape[1]), np.float32)
                rows = a_op.shape[0]
                step = -(-rows // n)
                blocks = [(a_op[i:i + step], c[i:i + step]) for i in range(0, rows, step)]

                def split():
                    pool.run(lambda blk: np.matmul(blk[0], b, out=blk[1]), blocks)

                variants = {"blas 1": (1, lambda: np.matmul(a_op, b, out=c)),
                            f"blas {n}": (n, lambda: np.matmul(a_op, b, out=c)),
                            f"blas 1, {n} row blocks on the pool": (1, split)}
                times = {k: [] for k in variants}
                results = {}
                for _ in range(repeats):
                    for k, (bt, fn) in variants.items():
                        with threadpool_limits(bt, user_api="blas"):
                            t0 = time.perf_counter()
                            fn()
                            times[k].append(time.perf_counter() - t0)
                        results[k] = c.copy()
                ref = results["blas 1"]
                out[name] = {k: {"min_ms": 1e3 * min(v), "median_ms": 1e3 * sorted(v)[len(v) // 2],
                                 "same_bits": bool(np.array_equal(results[k], ref))} for k, v in times.items()}
    finally:
        pool.close()
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
