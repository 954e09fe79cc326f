"""The Ray executor (the `ray` extra): the same sweep on Ray Tune, on a local 2-CPU Ray started
here, gives the same trials, bit for bit, as the local executor; ASHA stops bad trials early."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dnnspec.sweep import SweepDef, parse_grid, parse_sample, run_sweep

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "specs" / "quickstart.dnn")
BASE = ["train.epochs=2", "data.samples=600"]
GRID = ["train.optimizer.lr=0.001,0.01,0.1", "train.batch=16,32"]


@pytest.fixture(scope="module")
def ray_local():
    try:
        import ray
        import ray.tune  # noqa: F401
    except ImportError as e:
        pytest.skip(f"Ray Tune cannot be imported ({e}): pip install \"dnnspec[ray]\"")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=True,
             logging_level="ERROR")
    yield ray
    ray.shutdown()


def sweep() -> SweepDef:
    return SweepDef(QUICKSTART, base=list(BASE), axes=[parse_grid(g) for g in GRID])


def weights(path: Path) -> dict:
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        f["variables"].visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def test_ray_and_local_executors_give_identical_trials(ray_local, tmp_path):
    local, remote = tmp_path / "local", tmp_path / "ray"
    run_sweep(sweep(), local, executor="local", threads=1, log=lambda m: None)
    lines = []
    summary = run_sweep(sweep(), remote, executor="ray", threads=1, log=lines.append)
    assert summary["status"] == {"done": 6}
    assert any(line.startswith("ray: local Ray, 2 workers × 1 BLAS thread (2 Ray CPUs") for line in lines), lines
    a = json.loads((local / "manifest.json").read_text())["trials"]
    b = json.loads((remote / "manifest.json").read_text())["trials"]
    assert [t["metrics"] for t in a] == [t["metrics"] for t in b]  # exactly, every metric
    for t in a:
        wa, wb = weights(local / t["checkpoint"]), weights(remote / t["checkpoint"])
        assert wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert (remote / "ray").is_dir()  # Tune's own files stay inside the sweep folder


@pytest.mark.slow
def test_asha_stops_bad_trials_early(ray_local, tmp_path):
    d = SweepDef(QUICKSTART, base=["train.epochs=6", "data.samples=600"],
                 axes=[parse_sample("train.optimizer.lr=loguniform(1e-5,1)")], trials=8, seed=0)
    summary = run_sweep(d, tmp_path / "asha", executor="ray", threads=1, scheduler="asha", log=lambda m: None)
    trials = json.loads((tmp_path / "asha" / "manifest.json").read_text())["trials"]
    statuses = [t["status"] for t in trials]
    assert set(statuses) <= {"done", "stopped"} and "stopped" in statuses and "done" in statuses
    assert all(t["epochs"] < 6 for t in trials if t["status"] == "stopped")
    assert all(t["epochs"] == 6 for t in trials if t["status"] == "done" and not t["stopped_early"])
    assert summary["best"] is not None
