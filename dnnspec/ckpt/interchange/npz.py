"""NumPy: one array per variable in an `.npz`, keyed by scoped name (`dnn/hidden1/kernel`).

`np.load(path)["dnn/hidden1/kernel"]` reads one back; the layouts are dnnspec's (kernel
(n_in, n_out), batch norm moving statistics included). No pickle: object arrays are refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import UserError
from . import atomic_write


def export_npz(model, path: Path, probabilities: bool = False) -> Path:
    """Every variable of the model (weights and moving statistics), uncompressed."""
    if not str(path).endswith(".npz"):
        raise UserError(f"{path}: a NumPy archive must end in .npz (np.savez would add it)")
    with atomic_write(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **{n: np.asarray(a) for n, a in model.variables.items()})
    return path


def read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable .npz file ({e})") from None
