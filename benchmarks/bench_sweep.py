"""Wall time of a 16-trial sweep with 1 worker against all cores of this machine (the local
executor), in one run, and the speed-up as their ratio.

    python benchmarks/bench_sweep.py                 # 16 trials of the quickstart net (~1-2 min on 2 cores)
    python benchmarks/bench_sweep.py --epochs 2      # shorter trials
    python benchmarks/bench_sweep.py --json          # also one JSON object on the last line

Workload: specs/quickstart.dnn (3 × 64 BN-ELU, spirals), `data.samples=3000`, `--epochs` epochs,
a grid of 4 learning rates × 4 seeds = 16 trials. Both sweeps use one BLAS thread per trial, so
the only difference is how many trials run at once; they must end with identical metrics (checked).
Timed: `run_sweep` from start to end (worker start-up included), each in a fresh folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import cpu_busy, machine_info, machine_line  # noqa: E402
from dnnspec.sweep import SweepDef, parse_grid, run_sweep  # noqa: E402
from dnnspec.sweep.local import usable_cores  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def sweep(epochs: int) -> SweepDef:
    return SweepDef(str(ROOT / "specs" / "quickstart.dnn"), base=[f"train.epochs={epochs}", "data.samples=3000"],
                    axes=[parse_grid("train.optimizer.lr=0.001,0.003,0.01,0.03"), parse_grid("train.seed=1,2,3,4")])


def timed(workers: int, epochs: int, folder: Path) -> tuple[float, list]:
    start = time.perf_counter()
    run_sweep(sweep(epochs), folder, workers=workers, threads=1, log=lambda m: None)
    seconds = time.perf_counter() - start
    trials = json.loads((folder / "manifest.json").read_text())["trials"]
    assert [t["status"] for t in trials] == ["done"] * 16, [t["status"] for t in trials]
    return seconds, [t["metrics"] for t in trials]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    info = machine_info(gemm=False)
    cores = usable_cores()
    busy = cpu_busy(1.0)
    print(f"machine: {machine_line(info)}")
    with tempfile.TemporaryDirectory() as tmp:
        one, m1 = timed(1, args.epochs, Path(tmp) / "one")
        print(f"1 worker  × 1 BLAS thread: {one:.1f} s for 16 trials ({one / 16:.2f} s a trial)")
        many, mn = timed(cores, args.epochs, Path(tmp) / "all")
        print(f"{cores} workers × 1 BLAS thread: {many:.1f} s for 16 trials")
    busy_after = cpu_busy(1.0)
    assert m1 == mn, "the two sweeps ended with different metrics"
    print(f"speed-up with {cores} workers: {one / many:.2f}x (ideal {cores}x); identical per-trial metrics: yes")
    if busy is not None and busy > 0.05:
        print(f"note: other processes used {busy:.0%} of the CPUs before, {busy_after:.0%} after")
    if args.json:
        print(json.dumps({"cpu": info["cpu"]["model"], "cores": cores, "epochs": args.epochs, "trials": 16,
                          "seconds_1_worker": round(one, 2), f"seconds_{cores}_workers": round(many, 2),
                          "speedup": round(one / many, 3), "cpu_busy_before": busy, "cpu_busy_after": busy_after}))


if __name__ == "__main__":
    main()
