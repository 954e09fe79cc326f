"""The cost of data augmentation per batch against the training step it accompanies: the net of
specs/mnist_1k_elu_augment.dnn (784-300-100-10 ELU, Adam) on 28x28 images, one BLAS thread.

    python -m benchmarks.bench_augment [--batch 32 --batch 64] [--repeats 200]

For each batch size: milliseconds of one training step (`Trainer.train_step`, forward, backward
and Adam update) and of augmenting the batch in place (`Augmenter`) for several lists: whole-pixel
shifts (one nearest-pixel gather), the shipped shift + rotate (one bilinear gather), every
geometric augmentation at once (still one gather: they compose into one map), and noise alone.
When scipy is installed, `scipy.ndimage.map_coordinates` (order 1, one call over the whole batch
with the same coordinates) is timed as the library alternative to the NumPy gather. Timings
interleave the variants (one of each in turn) so that load from other processes hits them alike;
the median is the figure, the ratio is augmentation / step.
"""

from __future__ import annotations

import os
import time

import numpy as np

from .common import Stats

LISTS = {
    "shift(2) (nearest)": "shift(2)",
    "shift(2), rotate(10) (bilinear)": "shift(2), rotate(10)",
    "all geometric + noise": "shift(2), rotate(10), scale(0.9, 1.1), stretch(0.95, 1.05), shear(5), "
                             "flip_horizontal, noise(0.05)",
    "noise(0.05)": "noise(0.05)",
}

SPEC = """
model m {{
    input x[784]
    dense(300, activation=elu, init=he_normal)
    dense(100, activation=elu, init=he_normal)
    dense(10)
}}

data mnist = mnist(augment=[{augment}])

train {{
    optimizer adam(lr=0.001)
    batch {batch}
}}
"""


def run(batches=(32, 64), repeats: int = 200) -> dict:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import dnnspec
    from dnnspec.augment import Augmenter
    from dnnspec.rng import stream
    from dnnspec.train import parallel

    from .machine import cpu_info

    parallel.configure(parallel.ThreadConfig(1, 1))
    rng = np.random.default_rng(0)
    out = {"cpu": cpu_info()["model"], "blas_threads": 1, "repeats": repeats, "batches": {}}
    for batch in batches:
        x = rng.random((batch, 784), dtype=np.float32)
        y = rng.integers(0, 10, batch)
        model = dnnspec.compile_text(SPEC.format(augment="shift(2)", batch=batch))
        model.plan.allocate(batch)
        augmenters = {}
        for name, text in LISTS.items():
            program = dnnspec.compile_text(SPEC.format(augment=text, batch=batch)).program
            augmenters[name] = Augmenter.of(program.augment, 784, stream(0, "augment"))
        variants = {"training step": lambda: model.trainer.train_step(x, y, 0)}
        for name, a in augmenters.items():
            buf = x.copy()
            variants[name] = (lambda a=a, buf=buf: a(buf))
        scipy_call = _scipy_variant(augmenters["shift(2), rotate(10) (bilinear)"], x)
        if scipy_call is not None:
            variants["shift(2), rotate(10) via scipy map_coordinates"] = scipy_call
        for fn in variants.values():  # warm up: buffers, caches
            fn()
        samples: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(repeats):
            for name, fn in variants.items():
                t0 = time.perf_counter()
                fn()
                samples[name].append(1e3 * (time.perf_counter() - t0))
        step = Stats.of(samples["training step"]).median
        out["batches"][batch] = {
            name: {"ms_median": round(Stats.of(v).median, 4), "ms_min": round(min(v), 4),
                   "ratio_to_step": round(Stats.of(v).median / step, 3)}
            for name, v in samples.items()}
    return out


def _scipy_variant(augmenter, x):
    """The same maps, sampled by scipy.ndimage.map_coordinates in one call over [n, 28, 28]."""
    try:
        from scipy import ndimage
    except ImportError:
        return None
    n = len(x)
    augmenter.allocate(n)
    m = augmenter.draw(n).astype(np.float32)
    grid = augmenter.grid  # [x; y; 1] about the centre
    src = np.matmul(m[:, :2, :], grid) + np.array([[13.5], [13.5]], np.float32)  # [n, 2, 784]
    coords = np.empty((3, n, 28, 28), np.float32)
    coords[0] = np.arange(n)[:, None, None]
    coords[1] = src[:, 1].reshape(n, 28, 28)
    coords[2] = src[:, 0].reshape(n, 28, 28)
    images = x.reshape(n, 28, 28)
    out = np.empty_like(images)

    def call():
        ndimage.map_coordinates(images, coords, output=out, order=1, mode="grid-constant", cval=0.0)

    return call


def main(argv=None):
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, action="append", help="batch size (repeatable; default 32 and 64)")
    ap.add_argument("--repeats", type=int, default=200)
    a = ap.parse_args(argv)
    print(json.dumps(run(tuple(a.batch or (32, 64)), a.repeats), indent=1))


if __name__ == "__main__":
    main()
