"""Threads for the runtime: a persistent pool for the element-wise passes over the flat buffers,
the BLAS's own threads, and the automatic choice between them at the start of a fit.

Element-wise work (the optimizer update, gradient clipping by value, weight averaging) runs over
contiguous chunks sized to stay in the L2 cache while every pass of the update runs over the
chunk (`chunk_size`); the chunks go to a `Pool` of threads (NumPy releases the GIL inside a ufunc
on a large array), the calling thread working too. The ops' element-wise passes and the batch
gather run over row blocks on the same pool (`dnnspec.pool.rows`; the pool lives in that leaf
module so that the ops can use it without importing the runtime). Element-wise arithmetic does
not depend on how an array is cut, so the result is the same bits with any number of threads
and any chunk size. GEMMs run on the BLAS's threads (OpenBLAS, set with threadpoolctl), or, with a
one-thread BLAS and a pool of several, cut into one block per thread on the pool
(`dnnspec.pool.matmul`).

A configuration is `ThreadConfig(blas, pool)`. `choose(trainer, x, y, batch)` picks one when a fit
starts: unless `force_threads` fixed it (`dnnspec run --threads N`), it times a few training
steps of each candidate on a copy of the model (a separate plan and updater, so the run's
weights, optimizer state, step counter and random streams are untouched) and keeps the fastest,
preferring fewer threads unless more are clearly faster; a small model, a short fit or a
one-core machine gets one thread without trials. It returns a line the loop can log.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass

import numpy as np

from .. import pool as _pool_mod
# the pool and its chunk sizes live in a leaf module that the ops share
from ..pool import Pool, balanced, chunk_size, chunks, l2_bytes  # noqa: F401

# ------------------------------------------------------------------ the machine


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def env_threads() -> int | None:
    """The thread count the environment asks for (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS or
    MKL_NUM_THREADS, the smallest set; `dnnspec sweep` sets them per trial), or None."""
    found = []
    for key in THREAD_ENV:
        try:
            found.append(int(os.environ[key].split(",")[0]))
        except (KeyError, ValueError):
            pass
    return max(1, min(found)) if found else None


# ------------------------------------------------------------------ the configuration


@dataclass(frozen=True)
class ThreadConfig:
    """BLAS threads for the GEMMs, pool threads (the caller included) for the element-wise passes,
    and the smallest row block the ops' passes are cut into (elements; None: `pool.MIN_CHUNK`).
    With one BLAS thread and a pool of several, the GEMMs run in blocks on the pool too."""

    blas: int
    pool: int
    block: int | None = None

    def __str__(self) -> str:
        work = "GEMM blocks and element-wise" if self.blas == 1 and self.pool > 1 else "element-wise"
        text = f"BLAS {self.blas} thread{'s' if self.blas != 1 else ''}, {work} {self.pool}"
        return text if self.block is None else f"{text}, row blocks from {_ki(self.block)}"

    @property
    def short(self) -> str:
        return f"{self.blas}x{self.pool}" + ("" if self.block is None else f"/{_ki(self.block)}")


def _ki(elements: int) -> str:
    return f"{elements // 1024} Ki" if elements % 1024 == 0 else str(elements)


_lock = threading.Lock()
_config: ThreadConfig | None = None  # what configure() last set (None: nothing set yet)
_forced: ThreadConfig | None = None  # set by force_threads: choose() does not override it
_controller = None


def _blas_controller():
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller


def blas_threads() -> int | None:
    """The BLAS's current thread count (None when no BLAS is found)."""
    libs = [lib for lib in _blas_controller().info() if lib.get("user_api") == "blas"]
    return max(lib["num_threads"] for lib in libs) if libs else None


def pool() -> Pool:
    """The process's element-wise pool (one thread until a configuration says otherwise)."""
    return _pool_mod.current()


def configure(config: ThreadConfig) -> ThreadConfig:
    """Set the BLAS's threads and the pool's size, process-wide. The BLAS setting is applied every
    time (a few µs), since other code may have changed it meanwhile (threadpoolctl)."""
    global _config
    with _lock:
        _blas_controller().limit(limits=config.blas, user_api="blas")
        _pool_mod.use(config.pool, config.block, split_gemms=config.blas == 1)
        _config = config
    return config


def current() -> ThreadConfig:
    """The configuration in force (the BLAS's own thread count until something is configured)."""
    if _config is not None:
        return _config
    block = _pool_mod.min_block()
    return ThreadConfig(blas_threads() or 1, pool().threads, None if block == _pool_mod.MIN_CHUNK else block)


def threads_config(n: int) -> ThreadConfig:
    """What `--threads N` means: N threads for the GEMMs' blocks and the element-wise work, the BLAS
    single-threaded, so that the result is the same bits for every N (with OpenBLAS: "Results and
    threads" in docs/performance.md)."""
    return ThreadConfig(1, int(n))


def force_threads(n: int | ThreadConfig | None) -> ThreadConfig | None:
    """Fix the configuration for every later fit (`dnnspec run --threads N`: `threads_config(N)`);
    None goes back to the automatic choice."""
    global _forced
    if n is None:
        _forced = None
        return None
    config = n if isinstance(n, ThreadConfig) else threads_config(n)
    if config.blas < 1 or config.pool < 1:
        raise ValueError(f"threads must be at least 1, got {config}")
    _forced = config
    return configure(config)


def forced() -> ThreadConfig | None:
    return _forced


def _reset_after_fork() -> None:  # a forked child has none of the parent's threads (dnnspec.pool resets its pools)
    global _lock, _config
    _lock = threading.Lock()
    _config = None  # the BLAS setting is inherited; the next configure() sets it again


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


# ------------------------------------------------------------------ the automatic choice

# Below this many FLOPs per training step (6 per weight per example), threads cost more than they
# save: such a fit runs on one thread without trials.
MIN_WORK_FLOPS = 3e7
TUNING_SHARE = 0.1  # the trials may cost at most this share of the fit's steps ...
LONG_FIT_STEPS = 5000  # ... unless the fit has at least this many steps
MARGIN = 0.05  # more threads must be this much faster to be chosen
# Extra BLAS threads must beat the best one-BLAS-thread configuration by this: they spin after each
# call (and stall on a busy machine), and they change the bits (OpenBLAS splits the inner
# dimension's blocking by thread count), where GEMM blocks on the pool give `--threads 1`'s results.
BLAS_MARGIN = 0.10


def candidates(cores: int, shapes: tuple[tuple[int, int], ...] = ()) -> list[ThreadConfig]:
    """One thread; for t = 2, 4, 8, ... and all cores, one BLAS thread with t element-wise threads
    and t of each; all cores for the BLAS alone (the BLAS's own default). Each with more than one
    element-wise thread also with every smaller row-block threshold of `pool.BLOCKS` that cuts
    some array of `shapes` ((rows, elements): the arrays the ops pass to `rows`) differently from the
    thresholds before it: a threshold that would cut nothing differently is not timed."""
    counts = sorted({2**i for i in range(1, int(math.log2(max(cores, 1))) + 1)} | {cores} - {1})
    out = [ThreadConfig(1, 1)]
    for t in counts:
        for c in (ThreadConfig(1, t), ThreadConfig(t, t)):
            out.append(c)
            seen = {_cuts(shapes, t, _pool_mod.BLOCKS[0])}
            for block in _pool_mod.BLOCKS[1:]:
                key = _cuts(shapes, t, block)
                if key not in seen:
                    seen.add(key)
                    out.append(ThreadConfig(c.blas, t, block))
    if cores > 1:
        out.append(ThreadConfig(cores, 1))
    return out


def _cuts(shapes: tuple[tuple[int, int], ...], threads: int, block: int) -> tuple[int, ...]:
    """Rows per block `rows` would give arrays of `shapes` (rows, elements) under a threshold."""
    return tuple(_pool_mod.cut(n, size, threads, block) for n, size in shapes)


def row_shapes(plan, batch: int) -> tuple[tuple[int, int], ...]:
    """(rows, elements) of the arrays a training step cuts into row blocks: the batch of inputs
    (the gather) and every op's output (its element-wise passes)."""
    program = plan.program
    widths = {program.input_width} | {op.n_out for op in program.ops}
    return tuple((batch, batch * w) for w in sorted(widths))


def pick(times: dict[ThreadConfig, float]) -> ThreadConfig:
    """Extra BLAS threads (which spin after each call, and stall on a busy machine) only when
    BLAS_MARGIN faster than the best one-BLAS-thread configuration; then, of those left, the one
    with the fewest threads within MARGIN of the fastest."""
    single = [t for c, t in times.items() if c.blas == 1]
    bar = min(single) * (1 - BLAS_MARGIN) if single else math.inf
    eligible = {c: t for c, t in times.items() if c.blas == 1 or t <= bar}
    best = min(eligible.values())
    # fewest threads, then fewest BLAS threads, then the default threshold (None) before smaller ones
    order = sorted(eligible, key=lambda c: (c.blas + c.pool, c.blas, -(c.block or math.inf)))
    return next(c for c in order if eligible[c] <= best * (1 + MARGIN))


def step_flops(plan, batch: int) -> float:
    return 6.0 * plan.theta.size * batch


def choose(trainer, x: np.ndarray, y: np.ndarray, batch: int, start_op: int = 0,
           steps_planned: int | None = None, rounds: int = 3, trial_seconds: float = 0.05,
           retime: bool = False) -> str:
    """Set the thread configuration for a fit of `trainer` on batches of `batch` rows of (x, y),
    record it in the updater (`updater.threads`, part of the run state) and return a line saying
    which and why.

    A configuration fixed by `force_threads` wins. A configuration already recorded (an earlier
    fit of the model, or the checkpoint a run resumes) is kept, so a resumed run uses the BLAS
    thread count of the run it continues, and later fits do not time again. Otherwise: one thread
    on one core, for a step under MIN_WORK_FLOPS, or for a fit too short to pay for the trials
    (not recorded); else the timed choice (`timed_choice`, recorded). `retime` times again.
    A thread count in the environment (OPENBLAS_NUM_THREADS, ...) caps every candidate."""
    up = trainer.updater
    if _forced is not None:
        up.threads = configure(_forced)
        return f"threads: {_forced} (set by --threads)"
    cores, cap = usable_cores(), env_threads()
    if cap is not None and cap < cores:  # the environment's thread count is a ceiling for both
        cores = cap
    flops = step_flops(trainer.plan, batch)
    serial = ThreadConfig(1, 1)
    cands = candidates(cores, row_shapes(trainer.plan, min(batch, len(x))))
    min_trial_steps = rounds * len(cands) * 2
    if cores == 1:
        config, why = serial, "the environment sets one thread" if cap == 1 else "one core"
    elif flops < MIN_WORK_FLOPS:
        config, why = serial, f"a step is {flops / 1e6:.0f} MFLOP: too small to gain from threads"
    elif steps_planned is not None and steps_planned * TUNING_SHARE < min_trial_steps and steps_planned < LONG_FIT_STEPS:
        config, why = serial, f"{steps_planned} steps: too short a fit to time configurations"
    else:
        config, why = None, ""
    kept = up.threads
    if kept is not None and not retime and kept.blas <= cores and kept.pool <= cores:
        configure(kept)
        return f"threads: {kept} (as chosen before in this run)"
    if config is not None:  # not recorded: a later, longer fit of the model may time
        configure(config)
        return f"threads: {config} ({why})"
    budget = None if steps_planned is None or steps_planned >= LONG_FIT_STEPS else int(steps_planned * TUNING_SHARE)
    config, why = timed_choice(trainer, x, y, batch, start_op, cands, rounds, trial_seconds, budget)
    up.threads = configure(config)
    return f"threads: {config} ({why})"


def timed_choice(trainer, x, y, batch, start_op, cands, rounds=3, trial_seconds=0.05,
                 budget_steps: int | None = None) -> tuple[ThreadConfig, str]:
    """Time training steps of every candidate on a copy of the trainer, in `rounds` rounds that
    alternate the order, each candidate one untimed step (threads awake) then k timed ones (k
    steps take about `trial_seconds`, within `budget_steps` in all); the median of the rounds;
    `pick`. A candidate whose first step stalls is judged on it and not tried again; rounds after
    the first stop at a deadline. Returns (configuration, how it was found)."""
    tick = time.perf_counter()
    copy = _copy_trainer(trainer)
    rows = min(batch, len(x))
    xb, yb = np.ascontiguousarray(x[:rows]), np.ascontiguousarray(y[:rows])

    def step():
        copy.train_step(xb, yb, 0, start_op)

    configure(ThreadConfig(1, 1))
    step()  # buffers touched, caches warm
    t0 = time.perf_counter()
    step()
    serial = max(time.perf_counter() - t0, 1e-6)
    k = max(1, math.ceil(trial_seconds / serial))
    if budget_steps is not None:
        k = max(1, min(k, budget_steps // (rounds * len(cands)) - 1))
    k = min(k, 20)
    # a configuration that stalls (two BLAS threads on a busy machine: 10-100x slower steps) is
    # judged on its first step, so the trials never cost more than a few serial steps' time each
    stall = max(10 * serial, 0.05)
    deadline = tick + max(2.0, rounds * len(cands) * (k + 1) * serial * 3)
    samples: dict[ThreadConfig, list[float]] = {c: [] for c in cands}
    stalled: set[ThreadConfig] = set()
    for r in range(rounds):
        if r and time.perf_counter() > deadline:
            break
        for c in (cands if r % 2 == 0 else cands[::-1]):  # alternate the order: drifts cancel
            if c in stalled:
                continue
            configure(c)
            t0 = time.perf_counter()
            step()  # threads awake
            first = time.perf_counter() - t0
            if first > stall:  # judged on this step, not tried again
                samples[c].append(first)
                stalled.add(c)
                continue
            t0 = time.perf_counter()
            for _ in range(k):
                step()
            samples[c].append((time.perf_counter() - t0) / k)
    times = {c: sorted(s)[len(s) // 2] for c, s in samples.items()}
    config = pick(times)
    listing = ", ".join(f"{c.short} {1e3 * t:.1f}" for c, t in sorted(times.items(), key=lambda kv: kv[1]))
    return config, (f"timed {len(cands)} configurations in {time.perf_counter() - tick:.2f} s, ms per step "
                    f"(BLASxelement-wise): {listing}")


def _copy_trainer(trainer):
    """A trainer over a fresh plan of the same program holding the same weights and slots: steps
    on it leave the original's weights, optimizer state, step counter and random streams as they were."""
    from ..plan import Plan
    from .loop import Trainer

    plan = Plan(trainer.plan.program, trainer.plan.dtype)
    plan.theta[...] = trainer.plan.theta
    plan.fixed[...] = trainer.plan.fixed
    plan.seed_ops(0)
    copy = Trainer(plan)
    up, src = copy.updater, trainer.updater
    for k in up.optimizer.slots:
        up.state[k][...] = src.state[k]
    up.t = src.t
    return copy
