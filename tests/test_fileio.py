"""One atomic writer for every file dnnspec writes: checkpoints, exports, model code and config.

Checked on real files: the mode a file ends up with (0o666 minus the umask, as an ordinary file,
not mkstemp's 0o600), and that a write failing half-way (an exception, Ctrl-C) leaves the previous
file intact and no temporary file behind.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")  # before anything imports keras

import numpy as np
import pytest
from click.testing import CliRunner

import dnnspec
from dnnspec import fileio
from dnnspec.ckpt import hdf5
from dnnspec.ckpt import interchange as ix
from dnnspec.cli import main

from conftest import TINY

UMASK = 0o027  # not the usual 0o022, so a default mode cannot pass by chance
WANT = 0o666 & ~UMASK  # 0o640


@pytest.fixture
def umask():
    old = os.umask(UMASK)
    try:
        yield UMASK
    finally:
        os.umask(old)


@pytest.fixture(scope="module")
def model() -> dnnspec.Model:
    m = dnnspec.compile_text(TINY)
    rng = np.random.default_rng(0)
    m.fit(rng.normal(size=(64, 2)).astype(np.float32), rng.integers(0, 3, 64), epochs=1)
    return m


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp"))


# ---------------------------------------------------------------- the writer itself
def test_atomic_write_renames_a_temporary_file_beside_the_target(tmp_path, umask):
    target = tmp_path / "new" / "folder" / "out.txt"  # the parent folder is created
    with fileio.atomic_write(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".out.txt.") and tmp.name.endswith(".tmp")
        assert tmp.is_file() and not target.exists()
        tmp.write_text("hello")
    assert target.read_text() == "hello" and mode(target) == WANT
    assert leftovers(target.parent) == []


def test_the_file_is_synced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = fileio._fsync_file, os.replace
    monkeypatch.setattr(fileio, "_fsync_file", lambda p: (events.append(("fsync", str(p))), real_fsync(p))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", str(a))), real_replace(a, b))[1])
    with fileio.atomic_write(tmp_path / "f.bin") as tmp:
        tmp.write_bytes(b"data")
    assert events == [("fsync", str(tmp)), ("replace", str(tmp))]
    assert (tmp_path / "f.bin").read_bytes() == b"data"


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()], ids=["OSError", "KeyboardInterrupt"])
def test_a_failing_write_leaves_the_old_file_and_no_temporary_file(tmp_path, error):
    target = tmp_path / "f.txt"
    target.write_text("old")
    # an OSError becomes a user's error naming the file; anything else passes through unchanged
    with pytest.raises(fileio.OutputError if isinstance(error, OSError) else type(error)):
        with fileio.atomic_write(target) as tmp:
            tmp.write_text("half of the new cont")
            raise error
    assert target.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_a_failing_rename_removes_the_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def refuse(a, b):
        raise PermissionError("rename refused")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(fileio.OutputError, match="f.txt"):
        fileio.write_text(target, "new")
    assert target.read_text() == "old" and leftovers(tmp_path) == []


def test_a_strict_umask_still_lets_the_writer_write(tmp_path):
    old = os.umask(0o277)  # files come out read-only for their owner
    try:
        path = fileio.write_text(tmp_path / "f.txt", "x")
        again = fileio.write_bytes(path, b"y")  # replacing a read-only file: a rename, allowed
    finally:
        os.umask(old)
    assert again.read_bytes() == b"y" and mode(again) == 0o400


# ---------------------------------------------------------------- every file dnnspec writes
def test_a_checkpoint_gets_an_ordinary_files_mode(model, tmp_path, umask):
    path = model.save(tmp_path / "m.h5")
    assert mode(path) == WANT
    hdf5.save(path, hdf5.load(path))  # overwriting keeps it so
    assert mode(path) == WANT and leftovers(tmp_path) == []


@pytest.mark.parametrize("fmt,name,needs", [("npz", "m.npz", None), ("keras", "m.weights.h5", None),
                                            ("keras2", "m.h5", None), ("torch", "m.safetensors", "safetensors"),
                                            ("onnx", "m.onnx", "onnx")])
def test_every_export_gets_the_same_mode_as_a_checkpoint(model, tmp_path, umask, fmt, name, needs):
    if needs:
        pytest.importorskip(needs)
    ckpt = model.save(tmp_path / "m-ckpt.h5")
    path = ix.export_model(model.program, model.variables, fmt, tmp_path / name, step=model.step)
    assert mode(path) == mode(ckpt) == WANT
    assert leftovers(tmp_path) == []


def test_cli_export_code_and_config_files_are_written_atomically(model, tmp_path, umask):
    pytest.importorskip("keras")
    ckpt = model.save(tmp_path / "m.h5")
    out = tmp_path / "out" / "m.weights.h5"
    r = CliRunner().invoke(main, ["ckpt", "export", str(ckpt), "-o", str(out), "--code", "--config"])
    assert r.exit_code == 0, r.output
    for path in (out, tmp_path / "out" / "m.keras.py", tmp_path / "out" / "m.json"):
        assert path.is_file() and mode(path) == WANT, path
    assert "model.load_weights(" in (tmp_path / "out" / "m.keras.py").read_text()
    assert leftovers(tmp_path / "out") == []


@pytest.mark.parametrize("fmt,name", [("npz", "m.npz"), ("keras", "m.weights.h5"), ("keras2", "m.h5")])
def test_a_failing_export_leaves_the_previous_export_intact(model, tmp_path, monkeypatch, fmt, name):
    path = ix.export_model(model.program, model.variables, fmt, tmp_path / name)
    before = path.read_bytes()

    class Failing:  # an array that cannot be read: the export fails once the temporary file is open
        def __array__(self, *args, **kwargs):
            raise OSError("disk full")

    variables = {**model.variables, "dnn/outputs/bias": Failing()}
    with pytest.raises(fileio.OutputError, match=f"cannot write .*{name}"):
        ix.export_model(model.program, variables, fmt, path)
    assert path.read_bytes() == before and leftovers(tmp_path) == []


def test_an_interrupted_checkpoint_save_leaves_the_previous_one(model, tmp_path, monkeypatch):
    path = model.save(tmp_path / "m.h5")
    before = path.read_bytes()

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(hdf5, "_dataset", interrupt)
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    assert path.read_bytes() == before and leftovers(tmp_path) == []


def test_the_version_has_one_source():
    from dnnspec import version
    from dnnspec.ckpt.interchange import onnx

    assert dnnspec.__version__ == version.__version__
    assert onnx.__version__ is version.__version__ and hdf5.__version__ is version.__version__
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and 'path = "dnnspec/version.py"' in pyproject
    assert not re.search(r'^version = ', pyproject, re.M)  # the package metadata reads dnnspec/version.py
    from importlib.metadata import version as installed

    assert installed("dnnspec") == version.__version__
