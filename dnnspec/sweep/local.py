"""The local executor: trials in a pool of worker processes on this machine (nothing to install).

Workers × BLAS threads per worker ≤ the cores this process may use; by default one worker per
core (at most one per trial) with the cores shared out as BLAS threads. Workers are started with
`spawn` (no state inherited from a parent that may hold BLAS threads or locks), in their own
session, so a Ctrl-C at the terminal reaches only the sweep: it then asks every running trial to
stop at its next safe point (its checkpoint saved, resumable), starts nothing new, records what
finished and exits 130. A second Ctrl-C abandons the saves in progress (the last complete
checkpoints stay). A worker whose sweep process dies (kill -9) notices within 0.2 s, stops its
trial at the next safe point (resumable) and exits, leaving the trials queued for it.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from .runner import run_trial, worker_threads

_STOP = None  # the worker's view of the sweep's stop event
_ORPHANED = False  # the sweep process is gone: finish nothing more
_RUNNING = False


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def plan_workers(pending: int, workers: int | None, threads: int | None,
                 cores: int | None = None) -> tuple[int, int, str]:
    """(workers, BLAS threads per worker, why): workers × threads ≤ cores unless both are given."""
    cores = cores or usable_cores()
    pending = max(pending, 1)
    if workers is None and threads is None:
        workers = min(cores, pending)
        threads = max(1, cores // workers)
        why = "chosen automatically"
    elif workers is None:
        workers = max(1, min(pending, cores // threads))
        why = "--threads given"
    elif threads is None:
        threads = max(1, cores // workers)
        why = "--workers given"
    else:
        why = "--workers and --threads given"
    def n(k, word):
        return f"{k} {word}{'s' if k != 1 else ''}"

    note = f"{n(workers, 'worker')} × {n(threads, 'BLAS thread')} ({n(cores, 'core')}, {why})"
    if workers * threads > cores:
        note += f"; warning: {workers * threads} threads on {cores} cores, trials will slow each other down"
    return workers, threads, note


def _init_worker(threads: int, cwd: str, stop) -> None:
    global _STOP
    _STOP = stop
    import threading

    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    os.chdir(cwd)
    try:
        os.setsid()  # the terminal's Ctrl-C goes to the sweep, which stops the trials in order
    except OSError:
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # between trials; a running trial installs its own
    worker_threads(threads)


def _watch_parent(parent: int) -> None:
    """A worker whose sweep process died (kill -9) stops its trial at the next safe point and
    exits, instead of running the trials still queued for it."""
    global _ORPHANED
    import time

    while os.getppid() == parent:
        time.sleep(0.2)
    _ORPHANED = True
    while _RUNNING:
        time.sleep(0.1)
    os._exit(1)


def _should_stop() -> bool:
    return _ORPHANED or (_STOP is not None and _STOP.is_set())


def _task(task: dict) -> dict:
    global _RUNNING
    if _should_stop():
        return {"index": task["index"], "name": task["name"], "status": "pending", "cancelled": True}
    _RUNNING = True
    try:
        return run_trial(task, should_stop=_should_stop)
    finally:
        _RUNNING = False


class _Signals:
    """SIGINT/SIGTERM in the sweep process: the first sets the stop event (trials stop at their next
    safe point), a second is forwarded to the workers (saves in progress are abandoned)."""

    def __init__(self, stop, pool):
        self.stop, self.pool, self.count, self.old = stop, pool, 0, {}

    def _handle(self, signum, frame):
        self.count += 1
        self.stop.set()
        if self.count >= 2:
            for pid in list(getattr(self.pool, "_processes", None) or {}):
                try:
                    os.kill(pid, signal.SIGINT)
                except OSError:
                    pass

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self.old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, h in self.old.items():
            signal.signal(s, h)


def run_local(tasks: list[dict], workers: int, threads: int, on_done, log) -> bool:
    """Run `tasks`; `on_done(record)` after each ends (in this process). Returns False when the
    sweep was interrupted (the records of trials it stopped say "interrupted" or "pending")."""
    if not tasks:
        return True
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                               initargs=(threads, os.getcwd(), stop))
    with _Signals(stop, pool) as signals:
        try:
            futures = {pool.submit(_task, t): t for t in tasks}
            pending = set(futures)
            announced = False
            while pending:
                done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                if signals.count and not announced:
                    announced = True
                    for f in pending:
                        f.cancel()
                    log("interrupted: stopping the running trials at their next safe point "
                        "(Ctrl-C again to abandon their saves)")
                for f in done:
                    task = futures[f]
                    if f.cancelled():
                        on_done({"index": task["index"], "name": task["name"], "status": "pending", "cancelled": True})
                        continue
                    try:
                        record = f.result()
                    except BrokenProcessPool:
                        record = {"index": task["index"], "name": task["name"], "status": "failed",
                                  "error": "the worker process died (out of memory? killed?)"}
                    except Exception as e:  # a bug: keep the sweep going, say which trial
                        record = {"index": task["index"], "name": task["name"], "status": "failed",
                                  "error": f"internal error: {type(e).__name__}: {e}"}
                    on_done(record)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return not signals.count
