"""The ops' element-wise work alone (forward and backward of one op over a batch of 512 units):
one call over the whole batch against row blocks on the element-wise pool (`dnnspec.pool.rows`),
on 1, 2, ... threads.

    python -m benchmarks.bench_rows [--batch 100 1000] [--repeats 15]

Microseconds per forward+backward, median of `repeats` (5 calls each), the variants interleaved
(one measurement of each in turn) so that load from other processes hits every variant alike.
Dense is its bias add only (the GEMMs are left out: they are the BLAS's).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

OPS = ("dense", "relu", "elu", "batchnorm", "dropout")


def _op(name: str, batch: int, width: int = 512):
    from dnnspec.ops import activations, layers  # noqa: F401  (fills the registries)
    from dnnspec.ops.base import ACTIVATIONS, LAYERS

    entry = ACTIVATIONS.get(name) if name in ACTIVATIONS else LAYERS.get(name)
    op = entry.cls(**({"units": width} if name == "dense" else {}))
    decl = op.variables(width)
    op.bind({k: np.ones(v.shape, np.float32) for k, v in decl.items()},
            {k: np.zeros(v.shape, np.float32) for k, v in decl.items() if v.trainable})
    op.allocate(batch, width, np.float32)
    if op.random:
        op.rng = np.random.default_rng(1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, width), dtype=np.float32)
    dy = rng.standard_normal((batch, width), dtype=np.float32)
    if name == "dense":  # the bias add alone, as Dense runs it
        from dnnspec.pool import rows

        return lambda: rows(op._add_bias, x)
    return lambda: (op.forward(x, True), op.backward(dy, True))


def run(batches=(100, 1000), repeats: int = 15, threads=None) -> dict:
    """Per op and batch, µs per forward+backward of each variant: one call; the runtime's row
    blocks (`rows` with its thresholds) on t threads; blocks forced down to 4 Ki elements on
    the most threads (what the threshold saves small batches from)."""
    from dnnspec import pool
    from dnnspec.train.parallel import usable_cores

    threads = threads or sorted({1, 2, usable_cores()})
    variants = ([("one call", 1, None)] + [(f"rows, {t} thread{'s' if t > 1 else ''}", t, ()) for t in threads]
                + [(f"4 Ki blocks, {threads[-1]} threads", threads[-1], (1 << 12, 1 << 12))])
    result = {}
    for batch in batches:
        for name in OPS:
            fn = _op(name, batch)
            samples: dict[str, list[float]] = {v[0]: [] for v in variants}
            for _ in range(repeats):
                for label, t, limits in variants:
                    pool.use(t)
                    saved = pool.MIN_CHUNK, pool.MAX_CHUNK
                    if limits is None:  # one call: no array reaches two blocks' worth
                        pool.MIN_CHUNK = pool.MAX_CHUNK = 1 << 40
                    elif limits:
                        pool.MIN_CHUNK, pool.MAX_CHUNK = limits
                    try:
                        t0 = time.perf_counter()
                        for _ in range(5):
                            fn()
                        samples[label].append((time.perf_counter() - t0) / 5)
                    finally:
                        pool.MIN_CHUNK, pool.MAX_CHUNK = saved
            result[f"{name} b{batch}"] = {k: 1e6 * statistics.median(v) for k, v in samples.items()}
    pool.use(1)
    return result


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args(argv)
    result = run(tuple(args.batch), args.repeats)
    labels = list(next(iter(result.values())))
    print("| op, batch (µs per forward+backward) | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    for key, row in result.items():
        base = row[labels[0]]
        print(f"| {key} | " + " | ".join(f"{row[k]:.0f}" + ("" if k == labels[0] else f" ({base / row[k]:.2f}×)")
                                         for k in labels) + " |")


if __name__ == "__main__":
    main()
