"""The state of a run, saved and restored in one place.

A run's state is its weights, the optimizer's slots and step counter, the updater's part
(averaging, the schedule's state, L-BFGS history) and the loop's part (epoch, best-epoch and
early-stopping counters, the position inside the epoch, every RNG stream, best weights), plus
the history, and the phase record of a pretraining phase (`pretrain.Greedy`: layer, epoch,
position, RNG streams, the method's arrays). Each component hands its part over with
`state_dict()` and takes it back with `load_state_dict()`; only this module knows where each
part lives in the checkpoint file
(docs/checkpoint-format.md), so `Model.save`, `--resume` and mid-epoch saves all go through
`capture`/`save` and `restore`.
"""

from __future__ import annotations

from pathlib import Path

from .ckpt import hdf5
from .errors import CheckpointError
from .pretrain import Greedy
from .program import Program, memberships
from .train.loop import Trainer

PRETRAIN_PREFIX = "pretrain_"  # the pretraining phase's arrays beside the loop's in /state


def capture(program: Program, trainer: Trainer, pretraining: Greedy | None = None) -> hdf5.Checkpoint:
    """The whole state of a run as a checkpoint object (arrays copied)."""
    plan, up = trainer.plan, trainer.updater
    member = memberships(program.collections, plan.variables)
    variables = {n: hdf5.VarRecord(plan.variables[n].copy(), i.trainable, i.role, i.init, member[n])
                 for n, i in plan.infos.items()}
    optimizer = {"name": program.train.optimizer.name, "hyperparameters": up.optimizer.hyperparameters(),
                 "step": up.t,  # the one step counter
                 "slots": {s: {n: a.copy() for n, a in views.items()} for s, views in up.slot_views().items()}}
    state, arrays = trainer.state_dict()
    up_state, up_arrays = up.state_dict()
    state.update(up_state)
    arrays.update({k: v.copy() for k, v in up_arrays.items()})
    if pretraining is not None:
        phase, phase_arrays = pretraining.state_dict()
        state["pretrain"] = phase
        arrays.update({PRETRAIN_PREFIX + k: v for k, v in phase_arrays.items()})
    history = [{k: v for k, v in row.items() if k != "best"} for row in trainer.state.history]
    return hdf5.Checkpoint(program.canonical, variables, optimizer, state, history, dict(program.collections),
                           state_arrays=arrays)


def save(path, program: Program, trainer: Trainer, pretraining: Greedy | None = None) -> Path:
    """Write the run's state as an HDF5 checkpoint (atomically)."""
    return hdf5.save(path, capture(program, trainer, pretraining))


def restore(ckpt: hdf5.Checkpoint, program: Program, trainer: Trainer, strict: bool = True,
            pretraining: Greedy | None = None) -> None:
    """Put a checkpoint's weights, slots, step and training state back into a run of the same spec."""
    plan, up = trainer.plan, trainer.updater
    missing = [n for n in plan.variables if n not in ckpt.variables]
    if strict and missing:
        raise CheckpointError(f"the checkpoint lacks variables of this model: {', '.join(missing[:8])}")
    for n, arr in plan.variables.items():
        if n in ckpt.variables:
            src = ckpt.variables[n].value
            if src.shape != arr.shape:
                raise CheckpointError(f"variable {n}: checkpoint shape {src.shape} != model shape {arr.shape}")
            arr[...] = src
    if ckpt.optimizer is not None:
        up.t = int(ckpt.optimizer["step"])  # the count of updates holds even if the optimizer changed
        if ckpt.optimizer["name"] == program.train.optimizer.name:
            views = up.slot_views()
            for slot, arrays in ckpt.optimizer["slots"].items():
                for n, a in arrays.items():
                    if slot in views and n in views[slot]:
                        views[slot][n][...] = a
    elif "global_step" in ckpt.state:  # written by dnnspec 0.1.0 beside /optimizer step
        up.t = int(ckpt.state["global_step"])
    up.load_state_dict(ckpt.state, ckpt.state_arrays)
    trainer.load_state_dict(ckpt.state, ckpt.state_arrays)
    trainer.state.history = [dict(row) for row in ckpt.history]
    if pretraining is not None:
        phase = ckpt.state.get("pretrain")
        if phase is not None:
            n = len(PRETRAIN_PREFIX)
            pretraining.load_state_dict(phase, {k[n:]: v for k, v in ckpt.state_arrays.items()
                                                if k.startswith(PRETRAIN_PREFIX)})
        elif up.t > 0 or trainer.state.epoch > 0:
            pretraining.finish()  # a supervised run's checkpoint without a phase record: past pretraining
