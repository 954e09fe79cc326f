"""Threads (dnnspec.train.parallel): the chunked, multi-threaded element-wise update is the same
bits as one call over the whole buffer, for every optimizer and thread count; the pool; the
automatic choice of a configuration leaves the run's state untouched and is recorded in it."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

import dnnspec
from dnnspec.optim import OPTIMIZERS
from dnnspec.train import parallel
from dnnspec.train.parallel import Pool, ThreadConfig

pytestmark = pytest.mark.usefixtures("restore_threads")

# L-BFGS re-evaluates the loss through a closure and updates serially
OPTIMIZERS_CHUNKED = [e.name for e in OPTIMIZERS.entries() if not getattr(e.cls, "closure_based", False)]
VARIANTS = {  # options whose code paths differ
    "adam": ["", "amsgrad=true", "epsilon_hat=true"],
    "adamw": ["", "amsgrad=true"],
    "rmsprop": ["", "momentum=0.9", "centered=true, momentum=0.5"],
    "adagrad": ["initial_accumulator=0.1"],
}




def net(optimizer: str, extra: str = "", width: int = 96) -> str:
    return f"""
model m {{
    input x[40]
    scope a {{
        dense({width}, activation=relu)
        dense({width}, activation=relu)
    }}
    scope b {{
        dense({width}, activation=tanh)
    }}
    dense(5)
}}
train {{
    optimizer {optimizer}
    batch 32
    seed 3
{extra}
}}
"""


LR_MULT = '    lr_mult 0.5 on "a/dense/"\n    lr_mult 0 on "b/.*bias"\n    lr_mult 3 on "^dense/kernel"'


def reference_step(up, plan, lr):
    """The update as it was before chunking: one call per lr_mult segment over whole slices."""
    for a, b, mult in up.segments:
        state = {k: v[a:b] for k, v in up.state.items()}
        up.optimizer.update(plan.theta[a:b], plan.grad[a:b], state, lr * mult, up.t)


def cases():
    for name in OPTIMIZERS_CHUNKED:
        for opts in VARIANTS.get(name, [""]):
            yield f"{name}({opts})" if opts else name


@pytest.mark.parametrize("optimizer", list(cases()))
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_chunked_update_is_bit_identical_to_the_whole_buffer_update(optimizer, threads):
    rng = np.random.default_rng(0)
    a = dnnspec.compile_text(net(optimizer, LR_MULT))
    b = dnnspec.compile_text(net(optimizer, LR_MULT))
    ua, ub = a.trainer.updater, b.trainer.updater
    assert len(ua.segments) >= 3  # the lr_mult lines cut theta into runs (one run left out)
    ua.chunk = 1000  # many chunks, some straddling nothing, a short one at each segment's end
    ua._items = None
    b.plan.theta[...] = a.plan.theta
    parallel.configure(ThreadConfig(1, threads))
    for t in range(1, 8):
        g = rng.standard_normal(a.plan.grad.size).astype(np.float32) * (0.1 * t)
        a.plan.grad[...] = g
        b.plan.grad[...] = g
        ua.step(0)
        lr = ub._begin_update(0)
        ub.optimizer.prepare(ub.t)
        reference_step(ub, b.plan, lr)
        assert np.array_equal(a.plan.theta, b.plan.theta), (optimizer, t)
        for k in ua.optimizer.slots:
            assert np.array_equal(ua.state[k], ub.state[k]), (optimizer, k, t)
    assert ua.t == ub.t == 7
    assert len(ua._items) > len(ua.segments) * 3


@pytest.mark.parametrize("extra", ["    clip_value 0.05", "    clip_norm 0.5", "    average ema decay=0.9",
                                   "    average polyak"])
def test_clipping_and_averaging_chunked_are_bit_identical(extra):
    rng = np.random.default_rng(1)
    a = dnnspec.compile_text(net("momentum", extra))
    b = dnnspec.compile_text(net("momentum", extra))
    ua, ub = a.trainer.updater, b.trainer.updater
    ua.chunk, ua._items = 777, None
    b.plan.theta[...] = a.plan.theta
    parallel.configure(ThreadConfig(1, 2))
    cfg = ub.cfg
    for t in range(1, 6):
        g = rng.standard_normal(a.plan.grad.size).astype(np.float32)
        a.plan.grad[...] = g
        b.plan.grad[...] = g
        ua.step(0)
        # the reference: each element-wise pass over the whole buffer, as before chunking
        if cfg.clip_value is not None:
            np.clip(b.plan.grad, -cfg.clip_value, cfg.clip_value, out=b.plan.grad)
        if cfg.clip_norm is not None:
            norm = math.sqrt(float(np.dot(b.plan.grad, b.plan.grad)))
            if norm > cfg.clip_norm:
                b.plan.grad *= cfg.clip_norm / norm
        lr = ub._begin_update(0)
        reference_step(ub, b.plan, lr)
        if ub.average is not None:
            ub.averaged += 1
            theta, avg = b.plan.theta, ub.average
            if ub.averaged == 1:
                np.copyto(avg, theta)
            elif cfg.average == "ema":
                avg *= cfg.average_decay
                avg += theta * np.float32(1.0 - cfg.average_decay)
            else:
                avg += (theta - avg) * np.float32(1.0 / ub.averaged)
        assert np.array_equal(a.plan.grad, b.plan.grad)
        assert np.array_equal(a.plan.theta, b.plan.theta)
        if ua.average is not None:
            assert np.array_equal(ua.average, ub.average)


def fitted(threads: ThreadConfig, optimizer="adam", extra=""):
    parallel.force_threads(threads)
    rng = np.random.default_rng(0)
    x = rng.random((600, 40), dtype=np.float32)
    y = rng.integers(0, 5, 600)
    model = dnnspec.compile_text(net(optimizer, extra, width=300))  # ~0.2 M parameters: several chunks
    model.fit(x, y, epochs=2)
    return model


@pytest.mark.parametrize("optimizer", ["adam", "nadam(lr=0.001)", "rmsprop(centered=true)"])
def test_training_gives_identical_weights_with_one_and_two_element_wise_threads(optimizer):
    one = fitted(ThreadConfig(1, 1), optimizer, LR_MULT)
    two = fitted(ThreadConfig(1, 2), optimizer, LR_MULT)
    assert len(one.trainer.updater._items) >= 4 and len(two.trainer.updater._items) >= 4  # several chunks
    assert np.array_equal(one.plan.theta, two.plan.theta)
    assert np.array_equal(one.plan.fixed, two.plan.fixed)
    for k in one.trainer.updater.optimizer.slots:
        assert np.array_equal(one.trainer.updater.state[k], two.trainer.updater.state[k])
    assert [h["loss"] for h in one.history] == [h["loss"] for h in two.history]


# ---------------------------------------------------------------- the pool
def test_pool_runs_every_item_once_across_threads():
    pool = Pool(3)
    try:
        seen, names = [], set()
        lock = threading.Lock()

        def work(i):
            with lock:
                seen.append(i)
                names.add(threading.current_thread().name)
            np.sqrt(np.ones(50_000, np.float32))  # releases the GIL: others take items meanwhile

        for _ in range(5):
            seen.clear()
            pool.run(work, list(range(40)))
            assert sorted(seen) == list(range(40))
        assert threading.current_thread().name in names
    finally:
        pool.close()
    assert pool.threads == 1


def test_pool_raises_the_error_of_an_item_after_all_threads_stop():
    pool = Pool(2)
    try:
        def work(i):
            if i == 3:
                raise ValueError("item 3")

        with pytest.raises(ValueError, match="item 3"):
            pool.run(work, list(range(10)))
        done = []
        pool.run(done.append, list(range(10)))  # still usable
        assert sorted(done) == list(range(10))
    finally:
        pool.close()


def test_pool_called_from_inside_an_item_runs_serially():
    pool = Pool(2)
    try:
        out = []
        pool.run(lambda i: pool.run(out.append, [10 * i, 10 * i + 1]), [0, 1, 2])
        assert sorted(out) == [0, 1, 10, 11, 20, 21]
    finally:
        pool.close()


def test_chunks_and_chunk_size():
    assert parallel.chunks(5, 17, 5) == [(5, 10), (10, 15), (15, 17)]
    assert parallel.chunks(3, 3, 5) == []
    size = parallel.chunk_size(6)
    assert size & (size - 1) == 0 and 2**13 <= size <= 2**18
    assert parallel.candidates(1) == [ThreadConfig(1, 1)]
    assert parallel.candidates(2) == [ThreadConfig(1, 1), ThreadConfig(1, 2), ThreadConfig(2, 2), ThreadConfig(2, 1)]
    assert ThreadConfig(16, 16) in parallel.candidates(16) and ThreadConfig(8, 8) in parallel.candidates(12)


def test_pick_prefers_fewer_threads_unless_clearly_faster():
    c11, c12, c22, c21 = ThreadConfig(1, 1), ThreadConfig(1, 2), ThreadConfig(2, 2), ThreadConfig(2, 1)
    assert parallel.pick({c11: 1.0, c12: 0.97, c22: 0.93, c21: 0.99}) == c11  # within the margins
    assert parallel.pick({c11: 1.0, c12: 0.80, c22: 0.73, c21: 0.99}) == c12  # BLAS threads must beat 1x2 by 10 %
    assert parallel.pick({c11: 1.0, c12: 0.80, c22: 0.71, c21: 0.99}) == c22
    assert parallel.pick({c11: 1.0, c12: 5.0, c22: 20.0, c21: 20.0}) == c11  # the busy machine's stall
    small = ThreadConfig(1, 2, 1 << 14)
    assert parallel.pick({c11: 1.0, c12: 0.80, small: 0.78}) == c12  # the default threshold unless clearly faster
    assert parallel.pick({c11: 1.0, c12: 0.95, small: 0.70}) == small
    assert parallel.pick({c11: 1.0, small: 0.97}) == c11  # never slower than one thread


def test_row_block_thresholds_are_candidates_only_where_they_cut_differently():
    batch100 = ((100, 100 * 784), (100, 100 * 512), (100, 100 * 10))  # the benchmark net at batch 100
    cands = parallel.candidates(2, batch100)
    # 51 Ki elements are one call under 64 Ki; 16 Ki cuts them in two, and 4 Ki cuts them the same
    assert cands == [ThreadConfig(1, 1), ThreadConfig(1, 2), ThreadConfig(1, 2, 1 << 14), ThreadConfig(2, 2),
                     ThreadConfig(2, 2, 1 << 14), ThreadConfig(2, 1)]
    assert parallel.candidates(2, ((32, 32 * 40), (32, 32 * 5))) == parallel.candidates(2)  # nothing to cut
    assert all(c.block is None for c in parallel.candidates(8, ((100, 100 * 8),)))
    assert ThreadConfig(1, 16, 1 << 12) in parallel.candidates(16, batch100)
    assert str(ThreadConfig(1, 2, 1 << 14)) == "BLAS 1 thread, GEMM blocks and element-wise 2, row blocks from 16 Ki"
    assert ThreadConfig(2, 2, 1 << 12).short == "2x2/4 Ki" and ThreadConfig(2, 2).short == "2x2"


def test_the_chosen_threshold_is_set_recorded_and_restored(monkeypatch):
    from dnnspec import pool

    chosen = ThreadConfig(1, 2, 1 << 12)
    monkeypatch.setattr(parallel, "timed_choice", lambda *a, **k: (chosen, "timed"))
    monkeypatch.setattr(parallel, "MIN_WORK_FLOPS", 0)
    monkeypatch.setattr(parallel, "usable_cores", lambda: 2)
    monkeypatch.setattr(parallel, "LONG_FIT_STEPS", 1)  # time even so short a fit
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 40), dtype=np.float32), rng.integers(0, 5, 64)
    model = dnnspec.compile_text(net("adam"))
    model.fit(x, y, epochs=1)
    assert "row blocks from 4 Ki" in model.trainer.thread_report
    assert pool.min_block() == 1 << 12 and parallel.current() == chosen
    ckpt = model.to_checkpoint()
    assert ckpt.state["threads"] == {"blas": 1, "pool": 2, "block": 1 << 12}
    again = dnnspec.compile_text(net("adam"))
    again.restore(ckpt)
    assert again.trainer.updater.threads == chosen
    parallel.configure(ThreadConfig(1, 2))  # no threshold: the default, read at each call
    assert pool.min_block() == pool.MIN_CHUNK


# ---------------------------------------------------------------- the divergence check's sums
@pytest.mark.parametrize("extra, watched", [("", True), (LR_MULT, False), ('    constrain max_norm(2.0) on "a/.*"', False)])
def test_the_update_chunks_check_theta_for_the_divergence_check(extra, watched):
    rng = np.random.default_rng(2)
    model = dnnspec.compile_text(net("adam", extra))
    up, plan = model.trainer.updater, model.plan
    up.chunk, up._items = 1000, None  # many chunks
    parallel.configure(ThreadConfig(1, 2))
    plan.grad[...] = rng.standard_normal(plan.grad.size).astype(np.float32)
    up.step(0)
    if not watched:  # the loop sums theta itself: something changes theta after the chunks
        assert up.theta_finite() is None
        return
    assert up.theta_finite() is True and len(up._bounds) > 10
    assert up._bounds[:, 0].max() == plan.theta.max() and up._bounds[:, 1].min() == plan.theta.min()
    plan.theta[:4] = 3e38  # huge but finite: no false alarm (a sum would overflow)
    plan.theta[4:8] = -3e38
    up.step(0)
    assert up.theta_finite() is True and model.trainer.buffer_sums_finite()
    for bad in (np.nan, np.inf, -np.inf):  # any non-finite weight anywhere is seen
        plan.theta[...] = np.clip(plan.theta, -1, 1)
        plan.theta[2345] = bad
        plan.grad[...] = 0.0
        up.step(0)
        assert up.theta_finite() is False and model.trainer.buffer_sums_finite() is False, bad
    up.t += 1  # an update the chunks did not check: no stale answer
    assert up.theta_finite() is None


# ---------------------------------------------------------------- the automatic choice
def run_state(model):
    up, tr = model.trainer.updater, model.trainer
    return (model.plan.theta.copy(), model.plan.fixed.copy(), {k: v.copy() for k, v in up.state.items()
                                                                 if k in up.optimizer.slots},
            up.t, repr(tr.state_dict()), repr(up.rate.state_dict()))


def same(a, b):
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert all(np.array_equal(a[2][k], b[2][k]) for k in a[2])
    assert a[3:] == b[3:]


def test_timed_choice_leaves_the_run_untouched_and_is_recorded(monkeypatch):
    monkeypatch.setattr(parallel, "MIN_WORK_FLOPS", 0)
    monkeypatch.setattr(parallel, "usable_cores", lambda: 2)
    rng = np.random.default_rng(0)
    x = rng.random((300, 40), dtype=np.float32)
    y = rng.integers(0, 5, 300)
    spec = net("nadam", "    schedule reduce_on_plateau(patience=1)\n").replace("dense(5)", "dropout(0.2)\n    dense(5)")
    model = dnnspec.compile_text(spec)
    model.fit(x, y, epochs=1)
    before = run_state(model)
    report = parallel.choose(model.trainer, x, y, 32, rounds=1, trial_seconds=0.001)
    assert report.startswith("threads: BLAS ") and "timed 4 configurations" in report
    same(before, run_state(model))
    chosen = model.trainer.updater.threads
    assert chosen in parallel.candidates(2) and parallel.current() == chosen
    # kept for later fits of the model and saved with the run's state, so a resumed run keeps it
    assert "as chosen before" in parallel.choose(model.trainer, x, y, 32)
    ckpt = model.to_checkpoint()
    assert ckpt.state["threads"] == {"blas": chosen.blas, "pool": chosen.pool,
                                     **({} if chosen.block is None else {"block": chosen.block})}
    again = dnnspec.compile_text(spec)
    again.restore(ckpt)
    assert again.trainer.updater.threads == chosen
    # the same training as a model that never timed anything, under the same configuration
    control = dnnspec.compile_text(spec)
    parallel.configure(chosen)
    control.fit(x, y, epochs=1)
    parallel.configure(chosen)
    model.fit(x, y, epochs=1)
    control.fit(x, y, epochs=1)
    assert np.array_equal(model.plan.theta, control.plan.theta)


def test_small_or_short_fits_run_on_one_thread_without_timing(monkeypatch):
    monkeypatch.setattr(parallel, "usable_cores", lambda: 8)
    monkeypatch.setattr(parallel, "timed_choice", lambda *a, **k: pytest.fail("timed"))
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 40), dtype=np.float32), rng.integers(0, 5, 64)
    model = dnnspec.compile_text(net("adam"))
    report = parallel.choose(model.trainer, x, y, 32, steps_planned=10_000)
    assert "too small" in report and parallel.current() == ThreadConfig(1, 1)
    monkeypatch.setattr(parallel, "MIN_WORK_FLOPS", 0)
    report = parallel.choose(model.trainer, x, y, 32, steps_planned=20)
    assert "too short" in report and model.trainer.updater.threads is None  # not recorded
    monkeypatch.setattr(parallel, "usable_cores", lambda: 1)
    assert "one core" in parallel.choose(model.trainer, x, y, 32)


def test_forced_threads_win_and_are_recorded(monkeypatch):
    monkeypatch.setattr(parallel, "timed_choice", lambda *a, **k: pytest.fail("timed"))
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 40), dtype=np.float32), rng.integers(0, 5, 64)
    model = dnnspec.compile_text(net("adam"))
    parallel.force_threads(2)  # --threads 2: the GEMMs in blocks on the pool, the BLAS on one thread
    assert parallel.choose(model.trainer, x, y, 32) == ("threads: BLAS 1 thread, GEMM blocks and element-wise 2 "
                                                        "(set by --threads)")
    assert parallel.blas_threads() == 1 and parallel.pool().threads == 2
    assert model.trainer.updater.threads == ThreadConfig(1, 2)
    parallel.force_threads(ThreadConfig(2, 2))  # the API can still force a threaded BLAS
    assert parallel.choose(model.trainer, x, y, 32) == "threads: BLAS 2 threads, element-wise 2 (set by --threads)"
    assert parallel.blas_threads() == 2
    with pytest.raises(ValueError):
        parallel.force_threads(0)


# ---------------------------------------------------------------- passes of the update rules
@pytest.mark.parametrize("optimizer, count", [("adam", 12), ("nadam", 14), ("momentum", 4), ("nesterov", 6),
                                              ("rmsprop", 9)])
def test_update_rules_make_the_fewest_passes_over_a_chunk(optimizer, count):
    """The NumPy calls of one update over a chunk (benchmarks/bench_update --passes records them),
    as docs/performance.md counts them: one per arithmetic operation of the formula."""
    bench = pytest.importorskip("benchmarks.bench_update")
    assert bench.passes(optimizer, repeats=1)["passes"] == count
