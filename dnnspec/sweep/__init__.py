"""Families of runs: hyper-parameter sweeps (grid, random, coarse to fine) and ensembles of their
best trials, on all local cores (`local`, a process pool) or on Ray Tune (`ray`, the `ray`
extra). This package sits above `api` and `session`: each trial is a `dnnspec run`; nothing below
imports it. See docs/sweeps.md.

    from dnnspec.sweep import SweepDef, parse_grid, run_sweep
    d = SweepDef("specs/quickstart.dnn", base=["train.epochs=2"],
                 axes=[parse_grid("train.optimizer.lr=0.001,0.01")])
    run_sweep(d, "sweeps/lr")
"""

from .core import SweepInterrupted, TrialSpecError, rank, read_manifest, run_sweep
from .space import Axis, SweepDef, SweepError, parse_grid, parse_sample, read_sweep_file

__all__ = ["Axis", "SweepDef", "SweepError", "SweepInterrupted", "TrialSpecError", "parse_grid", "parse_sample",
           "rank", "read_manifest", "read_sweep_file", "run_sweep"]
