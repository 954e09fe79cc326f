"""NumPy: one array per variable in an `.npz`, keyed by scoped name (`dnn/hidden1/kernel`).

`np.load(path)["dnn/hidden1/kernel"]` reads one back; the layouts are dnnspec's (kernel
(n_in, n_out), batch norm moving statistics included). No pickle: object arrays are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...errors import UserError
from . import Variables, atomic_write, reading

if TYPE_CHECKING:
    from ...program import Program


def export_npz(program: Program, variables: Variables, path: Path, probabilities: bool = False) -> Path:
    """Every variable of the model (weights and moving statistics), uncompressed."""
    if not str(path).endswith(".npz"):
        raise UserError(f"{path}: a NumPy archive must end in .npz (np.savez would add it)")
    with atomic_write(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **{n: np.asarray(a) for n, a in variables.items()})
    return path


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of the archive, read now (a truncated or damaged archive is a CheckpointError)."""
    with reading(path, "not a readable .npz file"):
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):  # one .npy array
            raise UserError(f"{path}: a single NumPy array (.npy), not an .npz archive of arrays named by variable")
        with data:
            return {name: data[name] for name in data.files}
