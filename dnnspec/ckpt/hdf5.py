"""HDF5 checkpoints (docs/checkpoint-format.md): read and write, nothing else.

No pickle anywhere: loading a checkpoint never runs code. Every dataset carries HDF5's
fletcher32 checksum, so a damaged file is an error, never silently wrong weights; any failure
to read a file (a truncated one, damaged metadata, not HDF5 at all) is a `CheckpointError` naming
it. Writes go through `dnnspec.fileio.atomic_write`: a temporary file in the same folder, renamed
into place, so a crash mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import CheckpointError, UserError
from ..fileio import write_bytes
from ..program import builtin_collections, collection
from ..version import __version__

FORMAT = "dnnspec"
FORMAT_VERSION = 1


@dataclass
class VarRecord:
    value: np.ndarray
    trainable: bool = True
    role: str = "weight"
    init: str = ""
    collections: tuple[str, ...] = ()


@dataclass
class Checkpoint:
    spec: str  # the canonical text of the effective spec
    variables: dict[str, VarRecord]
    optimizer: dict | None = None  # {"name", "hyperparameters", "step", "slots": {slot: {var: array}}}
    state: dict = field(default_factory=dict)  # JSON-able training state (epoch, RNG, schedule, ...)
    history: list[dict] = field(default_factory=list)
    collections: dict[str, list[str]] = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)  # file-level metadata, filled on load
    state_arrays: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. best weights for early stopping

    @property
    def spec_sha256(self) -> str:
        return hashlib.sha256(self.spec.encode()).hexdigest()

    def collection(self, name: str) -> list[tuple[str, np.ndarray | None]]:
        """A named collection from the file alone (no spec needed), as (name, array) in order:
        a variable gives its array, a layer or scope all its variables, an output name None.
        Built in: trainable_variables, non_trainable_variables, moving_statistics."""
        builtin = builtin_collections((n, r.trainable, r.role) for n, r in self.variables.items())
        return collection(name, self.collections, builtin, {n: r.value for n, r in self.variables.items()},
                          where=" in the checkpoint")


def _dataset(group, name: str, value: np.ndarray):
    value = np.ascontiguousarray(value)
    if value.size == 0 or value.ndim == 0:  # fletcher32 needs a chunked, non-empty array
        return group.create_dataset(name, data=value)
    return group.create_dataset(name, data=value, fletcher32=True, chunks=True)


def save(path: str | os.PathLike, ckpt: Checkpoint) -> Path:
    """Write a checkpoint atomically (temporary file + rename; see `dnnspec.fileio.atomic_write`).

    The HDF5 file is built in memory and written with one plain write: a full disk is then an
    ordinary error of that write (reported with the size needed), never a failure inside the
    HDF5 library, which prints tracebacks and can crash the process."""
    return write_bytes(path, image(ckpt))


def image(ckpt: Checkpoint) -> bytes:
    """The bytes of the checkpoint's HDF5 file."""
    import h5py

    with h5py.File(f"dnnspec-{id(ckpt)}.h5", "w", driver="core", backing_store=False) as f:
        _write(f, ckpt)
        f.flush()
        return f.id.get_file_image()


def _write(f, ckpt: Checkpoint) -> None:
    import h5py

    f.attrs["format"] = FORMAT
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["dnnspec_version"] = __version__
    f.attrs["spec_sha256"] = ckpt.spec_sha256
    f.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    f.create_dataset("spec", data=ckpt.spec, dtype=h5py.string_dtype())
    variables = f.create_group("variables")
    variables.attrs["order"] = json.dumps(list(ckpt.variables))  # model order; HDF5 lists by name
    for name, rec in ckpt.variables.items():
        ds = _dataset(variables, name, rec.value)
        ds.attrs["trainable"] = bool(rec.trainable)
        ds.attrs["role"] = rec.role
        ds.attrs["init"] = rec.init
        ds.attrs["collections"] = json.dumps(list(rec.collections))
    if ckpt.optimizer is not None:
        opt = f.create_group("optimizer")
        opt.attrs["name"] = ckpt.optimizer["name"]
        opt.attrs["hyperparameters"] = json.dumps(ckpt.optimizer.get("hyperparameters", {}))
        opt.attrs["step"] = int(ckpt.optimizer.get("step", 0))
        slots = opt.create_group("slots")
        for slot, arrays in ckpt.optimizer.get("slots", {}).items():
            g = slots.create_group(slot)
            for name, arr in arrays.items():
                _dataset(g, name, arr)
    state = f.create_group("state")
    for key, value in ckpt.state.items():
        state.attrs[key] = json.dumps(value)
    for key, value in ckpt.state_arrays.items():
        _dataset(state, key, value)
    history = f.create_group("history")
    keys = sorted({k for row in ckpt.history for k, v in row.items() if _is_number(v)})
    for key in keys:
        _dataset(history, key, np.array([float(row.get(key, np.nan)) for row in ckpt.history]))
    collections = f.create_group("collections")
    for cname, names in ckpt.collections.items():
        collections.create_dataset(cname, data=list(names), dtype=h5py.string_dtype())


def is_checkpoint(path: str | os.PathLike) -> bool:
    """Whether `path` is a dnnspec checkpoint (an HDF5 file with format="dnnspec"): the only kind
    of existing file a run or a `ckpt` command may replace."""
    import h5py

    path = Path(path)
    try:
        with open(path, "rb") as fh:
            if fh.read(8) != b"\x89HDF\r\n\x1a\n":
                return False
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == FORMAT
    except Exception:  # unreadable or damaged: not identifiable as ours
        return False


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool)


def existing_file(path: str | os.PathLike, what: str = "checkpoint file") -> Path:
    """`path` as a Path if it is a readable, non-empty regular file, else a CheckpointError saying what it is."""
    path = Path(path)
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise CheckpointError(f"{path}: no such {what}") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read it ({e.strerror or reason(e)})") from e
    if stat.S_ISDIR(st.st_mode):
        raise CheckpointError(f"{path}: is a folder, not a {what}")
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{path}: not a regular file, so not a {what}")
    if st.st_size == 0:
        raise CheckpointError(f"{path}: an empty file (0 bytes), not a {what}")
    if not os.access(path, os.R_OK):
        raise CheckpointError(f"{path}: cannot read it (permission denied)")
    return path


def reason(e: BaseException) -> str:
    """An exception as a short phrase for an error message."""
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    return text or type(e).__name__


@contextlib.contextmanager
def reading(path, what: str) -> Iterator[None]:
    """Reading a user's file: any failure in the block becomes a CheckpointError naming the file.

    Damaged files fail in many ways (OSError, RuntimeError from HDF5's B-trees and heaps,
    zipfile.BadZipFile, KeyError, ValueError, even AttributeError or MemoryError); none of them is
    a bug of dnnspec's, so each is reported as `PATH: <what> (<reason>)`. UserErrors (a clear
    message already) pass through; KeyboardInterrupt and SystemExit are not caught.
    """
    try:
        yield
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure to parse the file is the file's
        raise CheckpointError(f"{path}: {what} ({reason(e)})") from e


def load(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint; every problem with the file is a CheckpointError naming it."""
    import h5py

    path = existing_file(path, "checkpoint file")
    with reading(path, "damaged or not a dnnspec checkpoint"):
        with h5py.File(path, "r") as f:
            return _read(f, path)


def _read(f, path: Path) -> Checkpoint:
    import h5py

    if f.attrs.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a dnnspec checkpoint (no format=\"dnnspec\" attribute)")
    version = int(f.attrs.get("format_version", 0))
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version} is newer than this dnnspec "
                              f"understands ({FORMAT_VERSION}); upgrade dnnspec to read it")
    if version < 1:
        raise CheckpointError(f"{path}: unknown checkpoint format version {version}")
    spec = f["spec"][()]
    spec = spec.decode() if isinstance(spec, bytes) else str(spec)
    variables: dict[str, VarRecord] = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            variables[name] = VarRecord(obj[()], bool(obj.attrs.get("trainable", True)),
                                        str(obj.attrs.get("role", "weight")), str(obj.attrs.get("init", "")),
                                        tuple(json.loads(obj.attrs.get("collections", "[]"))))

    f["variables"].visititems(visit)
    order = json.loads(f["variables"].attrs.get("order", "[]"))
    variables = {n: variables[n] for n in [*order, *sorted(set(variables) - set(order))] if n in variables}
    optimizer = None
    if "optimizer" in f:
        g = f["optimizer"]
        slots: dict[str, dict[str, np.ndarray]] = {}
        for slot, sg in g["slots"].items():
            arrays: dict[str, np.ndarray] = {}
            sg.visititems(lambda n, o: arrays.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
            slots[slot] = arrays
        optimizer = {"name": str(g.attrs["name"]), "hyperparameters": json.loads(g.attrs["hyperparameters"]),
                     "step": int(g.attrs["step"]), "slots": slots}
    for name, rec in variables.items():
        _numeric(path, f"variable {name}", rec.value)
    for slot, arrays in (optimizer or {}).get("slots", {}).items():
        for name, arr in arrays.items():
            _numeric(path, f"optimizer slot {slot} of {name}", arr)
    state = {k: json.loads(v) for k, v in f["state"].attrs.items()} if "state" in f else {}
    state_arrays = {k: ds[()] for k, ds in f["state"].items()} if "state" in f else {}
    history: list[dict] = []
    if "history" in f and len(f["history"]):
        cols = {k: f["history"][k][()] for k in f["history"]}
        n = len(next(iter(cols.values())))
        history = [{k: float(v[i]) for k, v in cols.items() if not np.isnan(v[i])} for i in range(n)]
    collections = {}
    if "collections" in f:
        for cname, ds in f["collections"].items():
            collections[cname] = [x.decode() if isinstance(x, bytes) else str(x) for x in ds[()]]
    attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
    ckpt = Checkpoint(spec, variables, optimizer, state, history, collections, attrs, state_arrays)
    if attrs.get("spec_sha256") not in (None, ckpt.spec_sha256):
        raise CheckpointError(f"{path}: the stored spec does not match its checksum (damaged file)")
    return ckpt


def _numeric(path: Path, what: str, value) -> None:
    dtype = np.asarray(value).dtype
    if dtype.kind not in "biuf":
        raise CheckpointError(f"{path}: {what} holds {dtype} values, not numbers (damaged or not a dnnspec checkpoint)")
