"""Shared benchmark helpers: a synthetic MNIST-shaped data set, epoch timing, median/min/max,
and running a function in a fresh Python process with a changed environment."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent  # the repository root (parent of benchmarks/)
_MARK = "@@BENCH-RESULT@@ "  # prefixes the child's JSON line, so stray prints cannot break parsing


def synthetic_mnist(n: int = 60000, n_features: int = 784, n_classes: int = 10,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic MNIST-shaped data set: X (n, 784) float32 in [0, 1], y (n,) int64.

    Each class has a random prototype image; a sample is 0.85 uniform noise + 0.15 prototype.
    The mix is tuned so the 784-512x4-10 Adam run learns it about as MNIST is learned (mean
    training loss ~0.3, 0.06, 0.04 over the first three epochs at batch 100): an easier set drives
    the loss to 0 and Adam off its stable regime, which no benchmark should time.
    Built in place, chunk by chunk: no float64 array and no full-size temporary.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n, dtype=np.int64)
    protos = rng.random((n_classes, n_features), dtype=np.float32)
    protos *= 0.15
    X = rng.random((n, n_features), dtype=np.float32)
    X *= 0.85
    for i in range(0, n, 8192):
        X[i:i + 8192] += protos[y[i:i + 8192]]
    return X, y


def time_epochs(fn: Callable[[], Any], n_epochs: int, warmup: int = 1) -> list[float]:
    """Call `fn` `warmup` times untimed, then `n_epochs` times; return the wall seconds of each."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n_epochs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


@dataclass(frozen=True)
class Stats:
    """Median, min and max of repeated measurements (the median is the figure to compare)."""

    median: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, samples) -> Stats:
        xs = [float(s) for s in samples]
        return cls(statistics.median(xs), min(xs), max(xs), len(xs))

    def fmt(self, digits: int = 2) -> str:
        return f"{self.median:.{digits}f} ({self.min:.{digits}f}–{self.max:.{digits}f})"

    def as_dict(self) -> dict:
        return asdict(self)

    __str__ = fmt


def to_jsonable(obj):
    """`json.dumps(default=...)` hook: NumPy scalars and arrays, Stats, paths."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Stats):
        return obj.as_dict()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def _target_name(target: str | Callable) -> tuple[str, str]:
    """'pkg.module:func' or a module-level function -> (module, qualified name)."""
    if isinstance(target, str):
        module, _, name = target.partition(":")
        if not name:
            raise ValueError(f"target must be 'module:function', received {target!r}")
        return module, name
    module = target.__module__
    if module == "__main__":  # run as a script: only importable if started with -m
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        if spec is None:
            raise ValueError(f"{target.__qualname__} lives in a script; pass 'module:function'")
        module = spec.name
    return module, target.__qualname__


_CHILD = f"""
import importlib, json, sys
from benchmarks.common import to_jsonable
f = importlib.import_module(sys.argv[1])
for part in sys.argv[2].split("."):
    f = getattr(f, part)
result = f(**json.loads(sys.argv[3]))
sys.stdout.write("\\n{_MARK}" + json.dumps(result, default=to_jsonable) + "\\n")
"""


# Run a command at the highest CPU priority the machine allows: its own session, hence its own
# scheduler autogroup (Linux groups a session's processes and shares the CPU between groups, so
# plain `nice` only ranks processes within one group), at nice -20 (root only; otherwise the
# command runs at its usual priority and nice prints a warning).
PRIORITY_PREFIX = ["setsid", "sh", "-c", 'echo -20 > /proc/self/autogroup 2>/dev/null; exec nice -n -20 "$@"', "prio"]


def priority_default() -> bool:
    """BENCH_PRIORITY=1 in the environment turns priority on for every child."""
    return os.environ.get("BENCH_PRIORITY", "") not in ("", "0")


def run_in_subprocess(target: str | Callable, kwargs: dict | None = None,
                      env: dict[str, str | None] | None = None,
                      timeout: float | None = None, priority: bool | None = None) -> Any:
    """Run `target(**kwargs)` in a fresh Python process and return its JSON-decoded result.

    `env` changes the child's environment: a string sets a variable, None removes it. This is
    the only way to compare OpenBLAS kernels: OpenBLAS reads OPENBLAS_CORETYPE (and its
    thread count) once, when the library is loaded, so the setting must precede `import numpy`.
    The child's stderr goes to ours (progress stays visible); its stdout is parsed.
    A dict result gains "others_cpu": the share of the machine's CPU time that *other*
    processes used while the child ran (from /proc/stat minus the child's own CPU time). On a
    shared 2-core box anything above a few percent makes BLAS threads stall: re-measure.
    `priority` (default: BENCH_PRIORITY) runs the child at the top CPU priority (PRIORITY_PREFIX):
    on a machine that others keep busy, the nearest thing to a quiet one.
    """
    module, name = _target_name(target)
    child_env = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            child_env.pop(key, None)
        else:
            child_env[key] = str(value)
    # `benchmarks` must be importable whatever the caller's working directory is
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), child_env.get("PYTHONPATH", "")) if p)
    before = _machine_and_children_cpu()
    prefix = PRIORITY_PREFIX if (priority_default() if priority is None else priority) else []
    proc = subprocess.run(
        [*prefix, sys.executable, "-c", _CHILD, module, name, json.dumps(kwargs or {}, default=to_jsonable)],
        env=child_env, cwd=ROOT, stdout=subprocess.PIPE, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{module}:{name} failed in a subprocess (exit {proc.returncode})")
    after = _machine_and_children_cpu()
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_MARK):
            result = json.loads(line[len(_MARK):])
            if isinstance(result, dict) and before and after:
                busy, total, child = (a - b for a, b in zip(after, before))
                result["others_cpu"] = max(0.0, busy - child) / total if total > 0 else None
            return result
    raise RuntimeError(f"{module}:{name} printed no result")


def _machine_and_children_cpu() -> tuple[float, float, float] | None:
    """(busy CPU-seconds of the machine, total CPU-seconds, CPU-seconds of our finished children)."""
    try:
        import resource
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
        hz = os.sysconf("SC_CLK_TCK")
    except (ImportError, OSError, ValueError):
        return None
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks) - idle) / hz, sum(ticks) / hz, children.ru_utime + children.ru_stime


def workload_args(description: str, variants, argv=None, extra=None):
    """The command line every reference shares: variant, batch, epochs, samples, profile, quick."""
    import argparse

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--variant", choices=variants, default="base")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--samples", type=int, default=60000)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--quick", action="store_true", help="2 epochs on 10000 samples")
    if extra is not None:
        extra(ap)
    a = ap.parse_args(argv)
    if a.quick:
        a.epochs, a.samples = 2, 10000
    return a
