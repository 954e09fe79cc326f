"""The ops' element-wise work on the pool (dnnspec.pool.rows): row blocks side by side give the same
bits as one call over the whole batch, for every activation and layer and for softmax-CE, and
training a net with batch norm, ELU, dropout and Adam gives identical weights with one and two
element-wise threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dnnspec
from dnnspec import pool
from dnnspec.losses import LOSSES
from dnnspec.ops import activations, layers  # noqa: F401  (fills the registries)
from dnnspec.ops.base import ACTIVATIONS, LAYERS
from dnnspec.train import parallel
from dnnspec.train.parallel import ThreadConfig

pytestmark = pytest.mark.usefixtures("restore_threads")

ENTRIES = [pytest.param(e, id=e.name) for e in ACTIVATIONS.entries() + LAYERS.entries()]
REQUIRED_ARGS = {"units": 16}
N_IN, BATCH = 64, 512  # blocks of 2 Ki elements: NumPy releases the GIL in their passes, so they overlap




@pytest.fixture
def tiny_blocks(monkeypatch):
    """Row blocks of a few rows, so small test arrays are cut into many blocks."""
    monkeypatch.setattr(pool, "MIN_CHUNK", 8)
    monkeypatch.setattr(pool, "MAX_CHUNK", 2048)


def spy_blocks(monkeypatch) -> list[int]:
    """Record the number of items of every pool run."""
    sizes: list[int] = []
    real = pool.Pool.run

    def run(self, fn, items):
        sizes.append(len(items))
        return real(self, fn, items)

    monkeypatch.setattr(pool.Pool, "run", run)
    return sizes


def op_pass(entry, threads: int, training: bool) -> dict[str, np.ndarray]:
    """Forward and backward of a fresh op on fixed data with `threads` element-wise threads."""
    pool.use(threads)
    args = {p.name: REQUIRED_ARGS[p.name] for p in entry.params if p.required}
    op = entry.cls(**args)
    rng = np.random.default_rng(0)
    decl = op.variables(N_IN)
    values = {k: (rng.uniform(0.5, 2.0, v.shape) if v.role == "moving_variance"
                  else rng.normal(0.0, 0.7, v.shape) + (v.role == "gamma")).astype(np.float32)
              for k, v in decl.items()}
    grads = {k: np.zeros(v.shape, np.float32) for k, v in decl.items() if v.trainable}
    op.bind(values, grads)
    op.allocate(BATCH, N_IN, np.float32)
    if op.random:
        op.rng = np.random.default_rng(7)
    x = rng.normal(0.0, 2.0, (BATCH, N_IN)).astype(np.float32)
    y = op.forward(x, training).copy()
    dy = rng.normal(0.0, 1.0, y.shape).astype(np.float32)
    dx = op.backward(dy, need_dx=True)
    out = {"y": y, "dx": dx.copy()}
    out.update({f"grad {k}": g.copy() for k, g in grads.items()})
    out.update({f"var {k}": v.copy() for k, v in values.items()})  # moving statistics
    return out


@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("entry", ENTRIES)
def test_row_blocks_give_the_bits_of_one_call(entry, training, tiny_blocks, monkeypatch):
    one = op_pass(entry, 1, training)
    three = op_pass(entry, 3, training)
    assert set(one) == set(three)
    for key in one:
        assert one[key].dtype == three[key].dtype == np.float32, key
        assert np.array_equal(one[key], three[key], equal_nan=True), key


@pytest.mark.parametrize("name", ["dense", "batchnorm", "dropout", "alpha_dropout", "gaussian_noise", "relu", "elu",
                                  "softmax", "gelu"])
def test_the_ops_element_wise_passes_do_run_in_blocks(name, tiny_blocks, monkeypatch):
    # the test above can fail: these ops do hand their passes to the pool
    entry = ACTIVATIONS.get(name) if name in ACTIVATIONS else LAYERS.get(name)
    sizes = spy_blocks(monkeypatch)
    op_pass(entry, 2, training=True)
    assert sizes and max(sizes) >= 4, sizes


def ce_pass(threads: int, labels: str, smoothing: float) -> tuple[float, np.ndarray]:
    pool.use(threads)
    rng = np.random.default_rng(0)
    z = (rng.standard_normal((BATCH, 40)) * 5).astype(np.float32)
    y = rng.integers(0, 40, BATCH)
    if labels == "rows":
        y = rng.dirichlet(np.ones(40), BATCH).astype(np.float32)
    loss = LOSSES.get("softmax_cross_entropy").cls(label_smoothing=smoothing)
    return loss.forward(z, y), loss.backward().copy()


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("labels", ["indices", "rows"])
def test_softmax_cross_entropy_in_row_blocks_gives_the_bits_of_one_call(labels, smoothing, tiny_blocks, monkeypatch):
    value, grad = ce_pass(1, labels, smoothing)
    sizes = spy_blocks(monkeypatch)
    value3, grad3 = ce_pass(3, labels, smoothing)
    assert sizes and min(sizes) >= 6, sizes  # forward and backward ran in blocks
    assert value == value3
    assert grad.dtype == grad3.dtype == np.float32 and np.array_equal(grad, grad3)


def test_each_thread_gets_its_own_scratch():
    # blocks of one call run side by side: an activation's scratch buffers must not be shared
    op = ACTIVATIONS.get("elu").cls()
    op.allocate(8, 4, np.float32)
    x = np.zeros((8, 4), np.float32)
    mine = op.tmp(x)
    other: list[np.ndarray] = []
    worker = threading.Thread(target=lambda: other.append(op.tmp(x[:3])))
    worker.start()
    worker.join()
    assert not np.shares_memory(mine, other[0])
    assert np.shares_memory(op.tmp(x[:5]), mine)  # a thread reuses its own, nothing new per call


def test_rows_cover_every_row_once_in_blocks_of_the_threshold(monkeypatch):
    monkeypatch.setattr(pool, "MIN_CHUNK", 100)
    monkeypatch.setattr(pool, "MAX_CHUNK", 1000)
    a = np.zeros((103, 10), np.float32)
    b = np.zeros((103, 1), np.float32)
    seen = []

    def mark(x, y):
        seen.append(len(x))
        x += 1.0
        y += 1.0

    pool.use(2)
    pool.rows(mark, a, b)
    assert (a == 1).all() and (b == 1).all()
    assert len(seen) == 2 and sum(seen) == 103  # 1030 elements: two blocks of at most 1000
    seen.clear()
    pool.rows(mark, a[:19], b[:19])  # 190 elements: under two blocks' worth, one call
    assert seen == [19]
    seen.clear()
    pool.use(1)
    pool.rows(mark, a, b)  # one thread: one call up to two blocks of MAX_CHUNK ...
    assert seen == [103]
    seen.clear()
    pool.use(2, block=10)  # a threshold set with the pool (the automatic choice's) replaces MIN_CHUNK
    pool.rows(mark, a[:19], b[:19])
    assert seen == [10, 9] and pool.min_block() == 10
    seen.clear()
    pool.use(1)
    big, col = np.zeros((250, 10), np.float32), np.zeros((250, 1), np.float32)
    pool.rows(mark, big, col)  # ... and blocks beyond, each kept in the L2 cache across fn's passes
    assert seen == [84, 84, 82] and (big == 1).all() and (col == 1).all()


def test_blocks_come_in_multiples_of_the_threads(monkeypatch):
    monkeypatch.setattr(pool, "MIN_CHUNK", 10)
    monkeypatch.setattr(pool, "MAX_CHUNK", 1000)
    a = np.zeros((1000, 10), np.float32)  # 10000 elements: 3 x 4 blocks of <= 1000
    sizes = spy_blocks(monkeypatch)
    pool.use(3)
    pool.rows(np.negative, a, a)
    assert sizes == [12]


SPEC = """
model m {
    input x[40]
    repeat 3 {
        dense(300)
        batchnorm(momentum=0.9)
        elu
        dropout(0.3)
    }
    dense(5)
}
train {
    optimizer adam(lr=0.003)
    batch 250
    seed 5
}
"""


def fitted(threads: ThreadConfig):
    parallel.force_threads(threads)
    rng = np.random.default_rng(0)
    x = rng.random((1000, 40), dtype=np.float32)
    y = rng.integers(0, 5, 1000)
    model = dnnspec.compile_text(SPEC)
    model.fit(x, y, epochs=2)
    return model


def test_training_with_batch_norm_elu_dropout_and_adam_is_identical_on_one_and_two_threads(monkeypatch):
    # 250 x 300 activations: 75 K elements, cut into 4 blocks of 16-32 K
    monkeypatch.setattr(pool, "MIN_CHUNK", 1 << 14)
    monkeypatch.setattr(pool, "MAX_CHUNK", 1 << 14)
    monkeypatch.setattr(pool, "MIN_GEMM", 1 << 40)  # the GEMMs whole: the runs counted are the ops' passes
    one = fitted(ThreadConfig(1, 1))
    sizes = spy_blocks(monkeypatch)
    two = fitted(ThreadConfig(1, 2))
    assert sizes.count(4) >= 2 * 4 * 10, sizes  # the ops' passes ran in blocks
    sizes.clear()
    # a smaller row-block threshold (as the automatic choice may set): 75 K elements in 6 blocks
    finer = fitted(ThreadConfig(1, 2, 1 << 12))
    assert sizes.count(6) >= 2 * 4 * 10 and sizes.count(4) < 10, sizes
    for other in (two, finer):
        assert np.array_equal(one.plan.theta, other.plan.theta)
        assert np.array_equal(one.plan.fixed, other.plan.fixed)  # moving statistics
        for k in one.trainer.updater.optimizer.slots:
            assert np.array_equal(one.trainer.updater.state[k], other.trainer.updater.state[k])
        assert [h["loss"] for h in one.history] == [h["loss"] for h in other.history]


@pytest.mark.parametrize("config, split", [(ThreadConfig(1, 2), True), (ThreadConfig(1, 3), True),
                                           (ThreadConfig(2, 1), False), (ThreadConfig(2, 2), False)])
@pytest.mark.parametrize("shape", [(64, 48, 640), (640, 48, 64), (96, 40, 96), (49, 8, 16)],
                         ids=["columns", "rows", "square", "short"])
def test_gemms_are_cut_into_blocks_on_the_pool_only_on_one_thread_blas(monkeypatch, config, split, shape):
    """With a one-thread BLAS and a pool of several threads, `pool.matmul` cuts a GEMM along the
    output's longer side into one even block per thread, each a BLAS call on its own thread at
    once; with a threaded BLAS it is one call. Every output is written once, and the result is
    a @ b."""
    monkeypatch.setattr(pool, "MIN_GEMM", 1)
    parallel.configure(config)
    m, k, n = shape
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)
    out = np.full((m, n), np.nan, np.float32)
    threads, blocks, real = set(), [], pool._star
    gate = threading.Barrier(config.pool, timeout=5) if split else None

    def spy(call):
        threads.add(threading.get_ident())
        blocks.append(call[3].shape)
        gate.wait()  # every block in flight at once: they cannot have run one after the other
        return real(call)

    monkeypatch.setattr(pool, "_star", spy)
    assert pool.matmul(a, b, out) is out
    np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-5)  # every output written (no NaN left)
    if not split:
        assert not blocks
        return
    assert len(threads) == len(blocks) == config.pool
    long_side = 0 if m >= n else 1
    assert all(s[1 - long_side] == (m, n)[1 - long_side] for s in blocks)  # cut along the longer side only
    assert sum(s[long_side] for s in blocks) == (m, n)[long_side]
    sides = [s[long_side] for s in blocks]
    assert max(sides) - min(sides) <= 1  # even: no short last block


@pytest.mark.parametrize("config, runs", [(ThreadConfig(1, 2), [4]), (ThreadConfig(2, 2), [])])
def test_a_dense_layers_two_backward_gemms_are_one_run_of_blocks(monkeypatch, config, runs):
    """The kernel gradient and the input gradient are independent: where GEMMs are split, the blocks
    of both go to the pool in one run (one hand-over of work to the threads, not two)."""
    monkeypatch.setattr(pool, "MIN_GEMM", 1)
    parallel.configure(config)
    layer = LAYERS.get("dense").cls(units=64)
    variables = {k: np.random.default_rng(1).normal(size=v.shape).astype(np.float32)
                 for k, v in layer.variables(48).items()}
    layer.bind(variables, {k: np.empty_like(v) for k, v in variables.items()})
    layer.allocate(32, 48)
    x = np.random.default_rng(2).normal(size=(32, 48)).astype(np.float32)
    dy = np.random.default_rng(3).normal(size=(32, 64)).astype(np.float32)
    layer.forward(x, True)
    sizes = spy_blocks(monkeypatch)
    dx = layer.backward(dy).copy()
    assert sizes == runs
    np.testing.assert_allclose(dx, dy @ variables["kernel"].T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.grads["kernel"], x.T @ dy, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.grads["bias"], dy.sum(axis=0), rtol=1e-5, atol=1e-5)


def test_a_small_gemm_stays_one_call(monkeypatch):
    parallel.configure(ThreadConfig(1, 2))
    calls = spy_blocks(monkeypatch)
    a, b = np.ones((100, 512), np.float32), np.ones((512, 10), np.float32)  # the output layer's GEMM
    out = np.empty((100, 10), np.float32)
    pool.matmul(a, b, out)
    assert calls == [] and (out == 512).all()


def test_training_with_split_gemms_matches_one_thread(monkeypatch):
    """A dense net trained with its GEMMs in blocks on two threads: the same weights as on one
    thread, to the last bits where the BLAS computes each output the same way in a block as in the
    whole (OpenBLAS does for blocks above its small-matrix size: measured by
    benchmarks.bench_gemm_split), and within float32 rounding of a summation order otherwise."""
    # blocks of at least 1 Mi multiply-adds (OpenBLAS's small-matrix kernel, which sums in
    # another order, takes up to 100^3): the first layer's forward and kernel-gradient GEMMs split
    monkeypatch.setattr(pool, "MIN_GEMM", 1 << 20)
    one = fitted(ThreadConfig(1, 1))
    calls = spy_blocks(monkeypatch)
    two = fitted(ThreadConfig(1, 2))
    assert calls.count(2) >= 2 * 4 * 2  # two GEMMs of each of 4 batches x 2 epochs ran in blocks
    if any(lib.get("internal_api") == "openblas" for lib in parallel._blas_controller().info()):
        assert np.array_equal(one.plan.theta, two.plan.theta)
        assert [h["loss"] for h in one.history] == [h["loss"] for h in two.history]
    np.testing.assert_allclose(one.plan.theta, two.plan.theta, rtol=1e-5, atol=1e-6)


WIDE_SPEC = """
model wide {
    input x[2]
    scope dnn {
        repeat 2 {
            dense(512)
            batchnorm(momentum=0.9)
            relu
        }
        dropout(0.2)
        dense(3)
    }
}
data spirals = spirals(classes=3, samples=600, noise=0.2)
train {
    loss softmax_cross_entropy
    optimizer adam(lr=0.01)
    epochs 1
    batch 64
    seed 3
    checkpoint "ck.h5"
}
"""


def test_run_with_threads_1_and_3_writes_the_same_checkpoint(tmp_path):
    """What `--threads N` promises (its GEMMs, 64 x 512 x 512, in blocks on the pool; every
    element-wise pass in row blocks): the same weights for every N, through the real CLI, where
    the BLAS is OpenBLAS (whose blocks compute each output as one call does)."""
    import subprocess
    import sys

    if not any(lib.get("internal_api") == "openblas" for lib in parallel._blas_controller().info()):
        pytest.skip("the bits of GEMM blocks are OpenBLAS's property")
    weights = {}
    for n in (1, 3):
        work = tmp_path / str(n)
        work.mkdir()
        (work / "m.dnn").write_text(WIDE_SPEC)
        proc = subprocess.run([sys.executable, "-m", "dnnspec", "run", "m.dnn", "-q", "--threads", str(n)],
                              cwd=work, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        weights[n] = dnnspec.load_checkpoint(work / "ck.h5").variables
    assert weights[1].keys() == weights[3].keys()
    for name, value in weights[1].items():
        assert np.array_equal(value, weights[3][name]), name


@pytest.mark.parametrize("batch", [32, 100, 1000])
def test_gemm_blocks_give_one_calls_bits_at_any_thread_count(batch):
    """With OpenBLAS, the training GEMMs of 512-unit layers (forward, kernel gradient, input
    gradient) cut for 2 to 16 threads give the bits of one call: every block computes its outputs
    over the whole inner dimension, and no block is small enough for OpenBLAS's small-matrix
    kernel (which sums in another order) since blocks are even and at least MIN_GEMM."""
    if not any(lib.get("internal_api") == "openblas" for lib in parallel._blas_controller().info()):
        pytest.skip("the bits of GEMM blocks are OpenBLAS's property")
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(batch)
    x, dz = rng.standard_normal((batch, 784), dtype=np.float32), rng.standard_normal((batch, 512), dtype=np.float32)
    w = rng.standard_normal((784, 512), dtype=np.float32)
    cut = 0
    with threadpool_limits(1, user_api="blas"):
        for a, b in ((x, w), (x.T, dz), (dz, w.T)):
            whole = a @ b
            for threads in (2, 3, 4, 5, 8, 12, 16):
                out = np.empty_like(whole)
                blocks = pool._gemm_blocks(a, b, out, threads)
                cut += len(blocks) > 1
                for fn, *args in blocks:
                    fn(*args[:2], out=args[2])
                assert np.array_equal(out, whole), (a.shape, b.shape, threads)
    assert cut >= 5  # most of them were cut


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 70), k=st.integers(1, 9), n=st.integers(1, 70), threads=st.integers(2, 17),
       a_t=st.booleans(), b_t=st.booleans())
def test_gemm_blocks_cover_any_shape_once(m, k, n, threads, a_t, b_t):
    """Whatever the shape, thread count and memory order (transposed views, as the backward
    passes), the blocks cut the output's longer side into at most one block per thread, write
    every output once, and give a @ b."""
    rng = np.random.default_rng(m * 1000 + n)
    a = rng.standard_normal((k, m) if a_t else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if b_t else (k, n)).astype(np.float32)
    a, b = (a.T if a_t else a), (b.T if b_t else b)
    out = np.full((m, n), np.nan, np.float32)
    saved, pool.MIN_GEMM = pool.MIN_GEMM, 0  # cut whatever the size
    try:
        blocks = pool._gemm_blocks(a, b, out, threads)
    finally:
        pool.MIN_GEMM = saved
    assert 1 <= len(blocks) <= threads
    for fn, ba, bb, bo in blocks:
        assert ba.shape[1] == k and bo.shape == (ba.shape[0], bb.shape[1])  # the whole inner dimension
        fn(ba, bb, out=bo)
    np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-5)  # no NaN left: every output written
    along = 0 if m >= n else 1
    assert sum(bo.shape[along] for *_, bo in blocks) == max(m, n)  # and written once
