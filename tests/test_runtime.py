"""The runtime's promises: float32 end to end, no allocation in the hot loop, no backward below
the lowest trainable op."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import dnnspec
from dnnspec import pool
from dnnspec.train import parallel

SPEC = """
model b {
    input x[64]
    repeat 2 {
        dense(128, use_bias=false)
        batchnorm
        elu
        dropout(0.3)
    }
    dense(64, activation=relu)
    maxout(16, k=2)
    dense(10)
}
train {
    optimizer adam
    batch 200
}
"""


def trained(spec=SPEC):
    model = dnnspec.compile_text(spec)
    rng = np.random.default_rng(0)
    x = rng.random((400, 64), dtype=np.float32)
    y = rng.integers(0, 10, 400)
    model.fit(x, y, epochs=1)
    return model, x, y


def step_peak(model, x, y) -> int:
    """Peak bytes traced during one training step on 200 rows."""
    tracemalloc.start()
    try:
        model.trainer.train_step(x[:200], y[:200], 0)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_training_step_allocates_no_arrays():
    model, x, y = trained()
    peak = step_peak(model, x, y)
    # small views, Python objects and NumPy's fixed 8192-element reduction buffer (32 KB), never
    # an array the size of a batch of activations (200 x 128 floats = 100 KB) or of the parameters
    assert peak < 200 * 128 * 4 * 0.75, peak


@pytest.mark.parametrize("threads", [1, 2])
def test_a_threaded_chunked_step_allocates_no_arrays(threads, monkeypatch):
    """The pool hands out views: no array per step, per chunk, per row block or per GEMM block (the
    ops' scratch is per thread, allocated on a thread's first block)."""
    monkeypatch.setattr(pool, "MIN_CHUNK", 1024)  # the ops' passes in row blocks of 8-16 rows
    monkeypatch.setattr(pool, "MAX_CHUNK", 2048)
    monkeypatch.setattr(pool, "MIN_GEMM", 1)  # every GEMM in blocks where the configuration splits them
    before = parallel.blas_threads()
    parallel.force_threads(parallel.ThreadConfig(1, threads))  # not the automatic choice: one thread for so small a net
    try:
        model = dnnspec.compile_text(SPEC)
        up = model.trainer.updater
        up.chunk, up._items = 2048, None  # ~20 chunks over the ~45 K parameters
        rng = np.random.default_rng(0)
        x = rng.random((400, 64), dtype=np.float32)
        y = rng.integers(0, 10, 400)
        model.fit(x, y, epochs=1)
        assert len(up._items) > 10
        peak = step_peak(model, x, y)
        assert peak < 200 * 128 * 4 * 0.75, peak
        assert all(a.dtype == np.float32 for a in up.state.values())
        assert parallel.pool().threads == threads
    finally:
        parallel.force_threads(None)
        parallel.configure(parallel.ThreadConfig(before or 1, 1))


def test_everything_is_float32():
    model, x, y = trained()
    plan = model.plan
    assert {plan.theta.dtype, plan.grad.dtype, plan.fixed.dtype} == {np.dtype(np.float32)}
    assert all(a.dtype == np.float32 for a in model.trainer.updater.state.values())
    for op in plan.ops:
        for name, value in vars(op).items():
            if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                assert value.dtype == np.float32, (op.name, name)
    assert model.predict(x).dtype == np.float32


def test_no_backward_below_the_lowest_trainable_op():
    model, x, y = trained(SPEC + '\nfreeze "(dense|batchnorm|dense_1|batchnorm_1)/"\n')
    plan = model.plan
    calls = []
    for i, op in enumerate(plan.ops):
        original = op.backward

        def spy(dy, need_dx=True, i=i, original=original):
            calls.append((i, need_dx))
            return original(dy, need_dx)

        op.backward = spy
    model.trainer.train_step(x[:200], y[:200], 0)
    first = plan.first_trainable
    assert first == 8  # dense_2 after the frozen blocks (4 ops each)
    assert [i for i, _ in calls] == list(range(len(plan.ops) - 1, first - 1, -1))
    assert calls[-1] == (first, False)  # the lowest trainable op computes no dL/dx
