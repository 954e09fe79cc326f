"""What a benchmark ran on: CPU, cores, NumPy's BLAS (library, version, threading, kernel,
threads), the BLAS-related environment, and the measured float32 GEMM rate.

OpenBLAS picks its kernel ("coretype") when it is loaded, from the CPU or from the
OPENBLAS_CORETYPE variable; `OPENBLAS_CORETYPE=Haswell` on an AVX-512 machine halves the
float32 GEMM rate. Both the variable and the kernel actually in use are recorded, since either
alone can mislead.
"""

from __future__ import annotations

import os
import platform
import statistics
import time

import numpy as np

# environment variables that change BLAS speed; recorded verbatim (None = unset)
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def cpu_info() -> dict:
    """CPU model, vendor, family/model, vector extensions and core counts from /proc/cpuinfo."""
    fields: dict[str, str] = {}
    cores = set()
    try:
        with open("/proc/cpuinfo") as f:
            block: dict[str, str] = {}
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key:
                    block[key] = value
                    fields.setdefault(key, value)  # the first processor's values
                elif block:
                    cores.add((block.get("physical id"), block.get("core id")))
                    block = {}
            if block:
                cores.add((block.get("physical id"), block.get("core id")))
    except OSError:  # not Linux
        pass
    flags = set(fields.get("flags", "").split())
    return {
        "model": fields.get("model name") or platform.processor() or "unknown CPU",
        "vendor": fields.get("vendor_id"),
        "family": fields.get("cpu family"),
        "model_number": fields.get("model"),
        "avx2": "avx2" in flags,
        "avx512f": "avx512f" in flags,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "physical_cores": len(cores) or None,
    }


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return sum(ticks[:8]) - idle, sum(ticks[:8])  # (busy, total), steal counted as busy


def cpu_busy(seconds: float = 0.5) -> float | None:
    """Fraction of all CPUs busy while this process sleeps: the load *others* put on the box.

    Two BLAS threads on two cores that other processes also use stall at every barrier; on a
    2-core machine a concurrent test suite made epochs 5-100x slower. Check this before timing.
    """
    try:
        b0, t0 = _cpu_times()
        time.sleep(seconds)
        b1, t1 = _cpu_times()
    except OSError:
        return None
    return (b1 - b0) / max(t1 - t0, 1)


def wait_for_quiet(max_busy: float = 0.05, timeout: float = 60.0, probe: float = 1.0) -> float | None:
    """Sleep until others use at most `max_busy` of the CPUs (or `timeout` passes); last reading."""
    deadline = time.monotonic() + timeout
    while True:
        busy = cpu_busy(probe)
        if busy is None or busy <= max_busy or time.monotonic() >= deadline:
            return busy


def blas_info() -> list[dict]:
    """The BLAS/OpenMP libraries loaded in this process, as threadpoolctl reports them.

    Includes `internal_api` (openblas, mkl, ...), `version`, `threading_layer`, `num_threads`
    and, for OpenBLAS, `architecture` (the kernel in use). Without threadpoolctl, falls back to
    NumPy's build configuration, which names the library but not the run-time kernel.
    """
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return [{"user_api": "blas", "internal_api": blas.get("name"), "version": blas.get("version"),
                 "threading_layer": None, "num_threads": None, "architecture": None,
                 "build_config": blas.get("openblas configuration"), "source": "numpy.show_config"}]
    return [dict(lib, source="threadpoolctl") for lib in threadpool_info()]


def numpy_blas(libs: list[dict] | None = None) -> dict:
    """The BLAS library NumPy itself uses (first BLAS entry whose path is under numpy)."""
    libs = blas_info() if libs is None else libs
    blas = [lib for lib in libs if lib.get("user_api") == "blas"]
    own = [lib for lib in blas if "numpy" in str(lib.get("filepath", ""))]
    return (own or blas or [{}])[0]


def gemm_gflops(n: int = 2048, repeats: int = 5, dtype=np.float32) -> tuple[float, float, float]:
    """(median, min, max) GFLOP/s of an n×n×n matmul (2n³ FLOPs) with a preallocated output."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=dtype)
    b = rng.standard_normal((n, n), dtype=dtype)
    c = np.empty((n, n), dtype)
    np.matmul(a, b, out=c)  # warm-up: thread pool start, page faults
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        rates.append(2.0 * n ** 3 / (time.perf_counter() - t0) / 1e9)
    return statistics.median(rates), min(rates), max(rates)


def machine_info(gemm: bool = True, gemm_n: int = 2048, gemm_repeats: int = 5) -> dict:
    """Everything a report needs to say where it was measured (GEMM rate unless gemm=False)."""
    libs = blas_info()
    blas = numpy_blas(libs)
    info = {
        "cpu": cpu_info(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": {k: blas.get(k) for k in ("internal_api", "version", "threading_layer",
                                         "architecture", "num_threads", "filepath", "source")},
        "threadpools": libs,
        "env": {k: os.environ.get(k) for k in BLAS_ENV},
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "cpu_busy_before": cpu_busy(),
    }
    if gemm:
        med, lo, hi = gemm_gflops(gemm_n, gemm_repeats)
        info["gemm"] = {"n": gemm_n, "dtype": "float32", "gflops_median": med,
                        "gflops_min": lo, "gflops_max": hi}
    return info


def machine_line(info: dict) -> str:
    """One line for a report: CPU, cores, NumPy, BLAS with kernel and threads, env, GEMM rate."""
    cpu, blas = info["cpu"], info["blas"]
    isa = "AVX-512" if cpu["avx512f"] else "AVX2" if cpu["avx2"] else "no AVX2"
    cores = cpu["physical_cores"] or cpu["usable_cpus"]
    ident = f"family {cpu['family']} model {cpu['model_number']}, " if cpu.get("model_number") else ""
    parts = [
        f"{cpu['model']} ({ident}{isa}), {cores} cores / {cpu['usable_cpus']} CPUs usable",
        f"Python {info['python']}, NumPy {info['numpy']}",
        f"{blas['internal_api'] or 'BLAS ?'} {blas['version'] or ''} "
        f"({blas['threading_layer'] or '?'}), kernel {blas['architecture'] or '?'}, "
        f"{blas['num_threads'] or '?'} threads",
        f"OPENBLAS_CORETYPE={info['env']['OPENBLAS_CORETYPE'] or '(unset)'}",
    ]
    if "gemm" in info:
        g = info["gemm"]
        parts.append(f"sgemm {g['n']}³ {g['gflops_median']:.0f} GFLOP/s "
                     f"({g['gflops_min']:.0f}–{g['gflops_max']:.0f})")
    busy = info.get("cpu_busy_before")
    if busy is not None and busy > 0.05:
        parts.append(f"WARNING: {busy:.0%} of the CPUs were busy with other work before measuring")
    return " · ".join(parts)


if __name__ == "__main__":
    print(machine_line(machine_info()))
