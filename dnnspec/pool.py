"""The element-wise thread pool: a leaf that the ops, the losses and the training runtime share.

`Pool` runs a function over a list of items on persistent threads (the caller working too);
NumPy releases the GIL inside a ufunc on a large array, so chunks of one array run side by
side. `rows(fn, *arrays)` is what the ops call: `fn` over contiguous row blocks of arrays that
share their first dimension, on the process's current pool, or in one call when the work is
too small to pay for a thread (the row-block threshold). A row block gets exactly the
arithmetic the whole array gets, element by element or row by row, so the result is the same
bits with any number of threads and any threshold. Which pool is current (its size) and the
threshold are set by `dnnspec.train.parallel`, which chooses the thread configuration;
`use(n, block, split_gemms)` switches. `matmul(a, b, out)` is the ops' GEMM: one BLAS call, or,
when the configuration runs a one-thread BLAS beside a pool of several, one block of the output
per thread on the pool.
"""

from __future__ import annotations

import math
import os
import threading

import numpy as np

# ------------------------------------------------------------------ chunk sizes


def l2_bytes() -> int:
    """The per-core L2 cache size in bytes (Linux sysfs; 1 MiB when it cannot be read)."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in sorted(os.listdir(base)):
            path = os.path.join(base, entry)
            with open(os.path.join(path, "level")) as f:
                if f.read().strip() != "2":
                    continue
            with open(os.path.join(path, "size")) as f:
                text = f.read().strip().upper()
            scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
            return int(text.rstrip("KMG")) * scale
    except (OSError, ValueError):
        pass
    return 2**20


def chunk_size(arrays: int = 6, itemsize: int = 4) -> int:
    """The largest chunk of an element-wise update that touches `arrays` buffers (Adam: parameters,
    gradient, two slots, scratch, and one to spare) whose pieces fit in the L2 cache together: a
    power of two between 16 Ki and 256 Ki elements. Measured here (2 MiB L2, Adam over 1.2 M
    parameters): 64-128 Ki are fastest on one thread and on two; 16 Ki and less lose on two
    threads, where each thread holds the GIL for ~1 µs per NumPy call between the calls' loops."""
    n = l2_bytes() // (max(arrays, 1) * itemsize)
    return 1 << max(14, min(18, int(math.log2(max(n, 1)))))


def balanced(size: int, threads: int, largest: int) -> int:
    """A chunk size no larger than `largest` that cuts `size` elements into a multiple of `threads`
    equal chunks (so no thread waits for one that has a chunk more)."""
    if size <= 0:
        return largest
    rounds = -(-size // (threads * largest))
    return max(1, -(-size // (threads * rounds)))


def chunks(start: int, stop: int, size: int) -> list[tuple[int, int]]:
    """[start, stop) cut into contiguous pieces of `size` (the last may be shorter, never empty
    unless the range is)."""
    return [(a, min(a + size, stop)) for a in range(start, stop, size)]


# ------------------------------------------------------------------ the pool


class Pool:
    """`threads - 1` persistent worker threads plus the caller.

    `run(fn, items)` calls `fn(item)` for every item and returns when all are done. Threads take
    the next item as they become free, the caller too, and the caller waits only for items another
    thread has started: a worker that the OS has not scheduled yet (a busy machine) costs the step
    nothing but its share of the work, done by the caller instead. Workers sleep on a condition
    between calls: they never spin. An exception in `fn` is raised in the caller once no item is
    running. Calls from two threads at once, or from inside `fn`, run serially in the caller."""

    def __init__(self, threads: int):
        self.threads = max(1, int(threads))
        self._busy = threading.Lock()  # one run at a time
        self._lock = threading.Lock()  # guards the job's counters
        self._wake = threading.Condition(threading.Lock())
        self._done = threading.Event()
        self._gen = 0  # job number: a worker that wakes late never takes an item of a later job
        self._fn = None
        self._items: list = []
        self._next = 0
        self._running = 0  # items started and not finished
        self._error: BaseException | None = None
        self._closed = False
        self._workers = [threading.Thread(target=self._work, name=f"dnnspec-pool-{i + 1}", daemon=True)
                         for i in range(self.threads - 1)]
        for w in self._workers:
            w.start()

    def _drain(self, gen: int) -> None:
        lock = self._lock
        while True:
            with lock:
                if gen != self._gen or self._next >= len(self._items):
                    return
                i, fn, item = self._next, self._fn, self._items[self._next]
                self._next = i + 1
                self._running += 1
            try:
                fn(item)
            except BaseException as e:  # noqa: BLE001  (re-raised in the caller)
                with lock:
                    if self._error is None:
                        self._error = e
                    self._next = len(self._items)  # nobody starts another item
            with lock:
                self._running -= 1
                if self._running == 0 and self._next >= len(self._items):
                    self._done.set()

    def _work(self) -> None:
        seen = 0
        while True:
            with self._wake:
                while self._gen == seen and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                seen = self._gen
            self._drain(seen)

    def run(self, fn, items) -> None:
        if self.threads == 1 or len(items) <= 1 or not self._busy.acquire(blocking=False):
            for item in items:
                fn(item)
            return
        try:
            with self._lock:
                self._fn, self._items, self._next, self._running, self._error = fn, items, 0, 0, None
                self._done.clear()
            with self._wake:
                self._gen += 1
                gen = self._gen
                self._wake.notify(min(len(items) - 1, len(self._workers)))
            self._drain(gen)
            with self._lock:  # every item is taken; wait only for those still running elsewhere
                if self._running == 0:
                    self._done.set()
            self._done.wait()
            with self._lock:
                error, self._fn, self._items, self._error = self._error, None, [], None
                self._gen += 1  # a worker still waking up finds no job
            if error is not None:
                raise error
        finally:
            self._busy.release()

    def close(self) -> None:
        """Stop the workers (the pool then runs everything in the caller)."""
        with self._busy:
            with self._wake:
                self._closed = True
                self._wake.notify_all()
            for w in self._workers:
                w.join()
            self._workers = []
            self.threads = 1


# ------------------------------------------------------------------ the process's pool

_pools: dict[int, Pool] = {1: Pool(1)}  # by size: switching back and forth starts no threads
_current = _pools[1]
_block: int | None = None  # the row-block threshold of the configuration in force (None: MIN_CHUNK)
_split = False  # GEMMs cut into blocks on the pool's threads (the BLAS itself single-threaded)


def current() -> Pool:
    """The process's element-wise pool (one thread until `use` says otherwise)."""
    return _current


def use(threads: int, block: int | None = None, split_gemms: bool = False) -> Pool:
    """Make the pool of `threads` threads (the caller included) the current one, and `block` the
    smallest row block `rows` cuts (None: `MIN_CHUNK`, read at each call); `split_gemms`:
    `matmul` cuts GEMMs into blocks on the pool (only when the BLAS runs one thread per call)."""
    global _current, _block, _split
    threads = max(1, int(threads))
    if threads not in _pools:
        _pools[threads] = Pool(threads)
    _current = _pools[threads]
    _block = None if block is None else max(1, int(block))
    _split = bool(split_gemms)
    return _current


def min_block() -> int:
    """The smallest row block `rows` cuts now (elements): set by `use`, else `MIN_CHUNK`."""
    return MIN_CHUNK if _block is None else _block


def _reset_after_fork() -> None:  # a forked child has none of the parent's worker threads
    global _pools, _current
    _pools = {1: Pool(1)}
    _current = _pools[1]  # the threshold (_block) is inherited with the rest of the configuration


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


# ------------------------------------------------------------------ row blocks

# Elements per row block below which a thread costs more than it saves, by default: a run that a
# worker joins costs two thread wake-ups (the worker's, then the caller's), 10 µs on an idle machine
# but 0.1-0.2 ms on a busy one (measured: a batch-100 gather of 78 K elements in two blocks took
# 0.3 ms instead of 0.1), about one float32 pass over 64 Ki elements. So by default batch-100 work
# stays in one call; the automatic thread configuration (`dnnspec.train.parallel`) also times the
# smaller thresholds of `BLOCKS` and sets the fastest with `use`.
MIN_CHUNK = 1 << 16
BLOCKS = (MIN_CHUNK, MIN_CHUNK // 4, MIN_CHUNK // 16)  # the thresholds the automatic choice tries
# The largest row block: the blocks of the few arrays an op's passes touch stay in the L2 cache
# while every pass runs over the block, as the optimizer update's chunks do.
MAX_CHUNK = chunk_size(8)


def _star(item: tuple) -> None:
    item[0](*item[1:])


def cut(n: int, size: int, threads: int, block: int) -> int:
    """Rows per block for `n` rows of `size` elements in all on `threads` threads with the threshold
    `block` (`n`: one call). Blocks of `block` to MAX_CHUNK elements, as many for each thread. One
    call when that would be one block, or on one thread when the rows fit in one MAX_CHUNK block
    (on one thread, blocks pay only by keeping a block in the L2 cache across the passes)."""
    if n < 2 or size < 2 * block or (threads == 1 and size < 2 * MAX_CHUNK):
        return n
    blocks = threads * -(-size // (threads * MAX_CHUNK))  # a multiple of the threads, each <= MAX_CHUNK
    return -(-n // max(1, min(blocks, size // block)))  # rows per block, each >= `block` elements


def rows(fn, *arrays) -> None:
    """fn(*blocks) for contiguous row blocks of `arrays` (same number of rows; the first one's size
    counts the work) on the current pool, cut as `cut` says with the current threshold
    (`min_block`). Blocks get the same arithmetic as whole arrays, so the result does not depend
    on the cut: `fn` must only do row-wise work."""
    pool, first = _current, arrays[0]
    n = len(first)
    step = cut(n, first.size, pool.threads, min_block())
    if step >= n:
        fn(*arrays)
        return
    pool.run(_star, [(fn, *(a[i:i + step] for a in arrays)) for i in range(0, n, step)])


# The fewest multiply-adds per thread for which `matmul` cuts a GEMM: below it a thread's wake-up
# (~10 µs idle, 0.1 ms busy) costs about what its share saves. 2 Mi multiply-adds take ~20 µs at
# 100 GFLOP/s; the output layer's GEMMs (100 x 512 x 10: 0.5 Mi) stay whole. It also keeps every
# block above the size (1 Mi) under which OpenBLAS takes its small-matrix kernel, whose sums
# round differently from the whole call's.
MIN_GEMM = 1 << 21


def matmul(a, b, out):
    """out = a @ b for 2-D arrays (one product of `matmuls`)."""
    matmuls((a, b, out))
    return out


def matmuls(*products) -> None:
    """out = a @ b for each `(a, b, out)` of 2-D arrays, the products independent of each other (a
    dense layer's kernel gradient and input gradient). When the configuration splits GEMMs (a
    one-thread BLAS and a pool of several threads, set by `use`), each output is cut into one block
    per thread along its longer side, row blocks of `a` or column blocks of `b` (even: sides that
    differ by one at most), and the blocks of all the products are one run on
    the pool, each block a single-threaded BLAS call over the whole inner dimension. A batch of 100
    gives GEMMs that OpenBLAS's own threads speed up little; on the pool the blocks run where the
    element-wise work runs, with no BLAS threads spinning beside it. Otherwise one BLAS call each."""
    threads = _current.threads
    if not _split or threads == 1:
        for a, b, out in products:
            np.matmul(a, b, out=out)
        return
    items = [item for a, b, out in products for item in _gemm_blocks(a, b, out, threads)]
    if len(items) == 1:
        _star(items[0])
    else:
        _current.run(_star, items)


def _gemm_blocks(a, b, out, threads: int) -> list[tuple]:
    """The calls computing out = a @ b in one block per thread (one call when too small to pay).
    Even blocks, sides differing by one at most: a short last block (or tiles rounded up to 16)
    would be slower than the others, and could fall under OpenBLAS's small-matrix size."""
    m, n = out.shape
    if m * n * a.shape[1] < threads * MIN_GEMM:
        return [(np.matmul, a, b, out)]
    side = max(m, n)
    cuts = [i * side // threads for i in range(threads + 1)]
    if m >= n:
        return [(np.matmul, a[i:j], b, out[i:j]) for i, j in zip(cuts, cuts[1:]) if j > i]
    return [(np.matmul, a, b[:, i:j], out[:, i:j]) for i, j in zip(cuts, cuts[1:]) if j > i]
