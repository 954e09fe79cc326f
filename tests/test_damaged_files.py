"""Damaged and wrong files, read through the real command line: a clear error naming the file, exit 1.

Every read of a user's file (a checkpoint through hdf5.load, every interchange reader, the
checkpoint tools) must turn any failure into a CheckpointError (or another UserError) that
names the file: never a traceback, never "internal error". The files here are real damaged
files: truncated archives, a checkpoint with bytes overwritten in its HDF5 metadata (B-trees,
local heaps, object headers), an empty file, a folder, a text file named .h5.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import dnnspec
from dnnspec.ckpt import hdf5, tools
from dnnspec.ckpt import interchange as ix
from dnnspec.cli import main
from dnnspec.errors import CheckpointError, UserError

from conftest import ROOT, TINY

# the classes a damaged file used to escape with, as "internal error: ..." (h5py's B-tree and heap
# errors are RuntimeErrors; a damaged group can even come back as None: AttributeError)
ESCAPED = (RuntimeError, AttributeError)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A trained tiny model's checkpoint, its exports, and its spec (with data, for `eval`)."""
    folder = tmp_path_factory.mktemp("good")
    model = dnnspec.compile_text(TINY)
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(64, 2)).astype(np.float32), rng.integers(0, 3, 64), epochs=1)
    out = {"spec": folder / "tiny.dnn", "ckpt": model.save(folder / "tiny.h5")}
    out["spec"].write_text(TINY)
    for fmt, name in (("npz", "tiny.npz"), ("keras", "tiny.weights.h5"), ("keras2", "tiny-k2.h5")):
        out[fmt] = ix.export_model(model.program, model.variables, fmt, folder / name)
    if _has("safetensors"):
        out["torch"] = ix.export_model(model.program, model.variables, "torch", folder / "tiny.safetensors",
                                       step=model.step)
    out["keras_archive"] = folder / "tiny.keras"  # a .keras archive holds model.weights.h5
    with zipfile.ZipFile(out["keras_archive"], "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.write(out["keras"], "model.weights.h5")
        z.writestr("config.json", "{}")
    return out


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def truncated(src: Path, dest: Path, fraction: float = 0.5) -> Path:
    data = src.read_bytes()
    dest.write_bytes(data[: int(len(data) * fraction)])
    return dest


def overwritten(src: Path, dest: Path, offset: int, width: int = 16) -> Path:
    data = bytearray(src.read_bytes())
    data[offset: offset + width] = b"\xa5" * width
    dest.write_bytes(bytes(data))
    return dest


STRIDE, WIDTH = 509, 64  # a prime stride, so the damage falls at every alignment of HDF5's structures


def metadata_damage(ckpt: Path, folder: Path) -> list[tuple[int, Path, CheckpointError]]:
    """Overwrite WIDTH bytes at every STRIDE-th offset of a checkpoint; (offset, file, error) per failed load.

    Asserts the contract on every outcome: a load either succeeds (the bytes hit unused space)
    or raises a CheckpointError naming the file, never any other exception.
    """
    failures = []
    size = ckpt.stat().st_size
    for offset in range(0, size, STRIDE):
        path = overwritten(ckpt, folder / f"damaged-{offset}.h5", offset, WIDTH)
        try:
            hdf5.load(path)
        except CheckpointError as e:
            assert str(path) in str(e), e
            failures.append((offset, path, e))
        except BaseException as e:  # noqa: BLE001 - the point of the test
            pytest.fail(f"offset {offset}: {type(e).__name__}: {e} escaped hdf5.load")
        else:
            path.unlink()
    return failures


@pytest.fixture(scope="module")
def damaged(files, tmp_path_factory) -> list[tuple[int, Path, CheckpointError]]:
    return metadata_damage(files["ckpt"], tmp_path_factory.mktemp("damaged"))


def cli(*args) -> "CliRunner.Result":
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def assert_clean_failure(result, path: Path) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    assert str(path) in result.stderr, result.stderr
    assert result.stderr.startswith("error: "), result.stderr


# ---------------------------------------------------------------- checkpoints with damaged HDF5 metadata
def test_overwriting_checkpoint_metadata_is_always_a_checkpoint_error(damaged):
    assert len(damaged) >= 10
    causes = {type(e.__cause__) for _, _, e in damaged if e.__cause__ is not None}
    # some of the damage makes h5py fail in the ways that used to escape as "internal error"
    assert any(issubclass(c, ESCAPED) for c in causes), causes
    for _, path, e in damaged:
        assert str(e).startswith(f"{path}: "), str(e)


def test_damaged_metadata_through_the_cli(damaged, files):
    escaped = [(o, p) for o, p, e in damaged if isinstance(e.__cause__, ESCAPED)][:3]
    others = [(o, p) for o, p, e in damaged if not isinstance(e.__cause__, ESCAPED)][:2]
    for offset, path in escaped + others:
        for args in (("ckpt", "show", path), ("ckpt", "ls", path), ("eval", files["spec"], "-c", path),
                     ("ckpt", "export", path, "-o", path.with_suffix(".npz")),
                     ("ckpt", "diff", files["ckpt"], path), ("ckpt", "verify", files["ckpt"], "--against", path),
                     ("ckpt", "compat", files["spec"], path)):
            assert_clean_failure(cli(*args), path)
        r = cli("ckpt", "verify", path)  # verify lists the problems (on stdout) and exits 1
        assert r.exit_code == 1 and f"{path}: " in r.output and "Traceback" not in r.output
        assert "internal error" not in r.output
        assert not path.with_suffix(".npz").exists()


def test_verify_never_raises_on_damaged_metadata(damaged):
    for offset, path, _ in damaged[::3]:
        problems = tools.verify(path)
        assert problems and str(path) in problems[0], (offset, problems)


def test_a_reuse_of_a_damaged_checkpoint_is_a_clean_error(damaged, files, tmp_path):
    _, path, _ = next(d for d in damaged if isinstance(d[2].__cause__, ESCAPED))
    r = cli("run", files["spec"], "-q", "--reuse", f"{path}:dnn/hidden1", "--set", "train.epochs=1")
    assert_clean_failure(r, path)


# ---------------------------------------------------------------- checkpoints: truncated, empty, folder, text
@pytest.fixture
def bad_checkpoints(files, tmp_path) -> dict[str, Path]:
    (tmp_path / "folder.h5").mkdir()
    (tmp_path / "text.h5").write_text("this is not HDF5\n")
    (tmp_path / "empty.h5").write_bytes(b"")
    return {"truncated": truncated(files["ckpt"], tmp_path / "truncated.h5"),
            "empty": tmp_path / "empty.h5", "folder": tmp_path / "folder.h5", "text": tmp_path / "text.h5",
            "npz instead": files["npz"]}


@pytest.mark.parametrize("kind", ["truncated", "empty", "folder", "text", "npz instead"])
def test_bad_checkpoints_through_the_cli(bad_checkpoints, files, kind):
    path = bad_checkpoints[kind]
    with pytest.raises(CheckpointError, match=f"^{re.escape(str(path))}: "):
        hdf5.load(path)
    with pytest.raises(CheckpointError, match=f"^{re.escape(str(path))}: "):
        dnnspec.load_checkpoint(path)
    assert_clean_failure(cli("ckpt", "show", path), path)
    assert_clean_failure(cli("ckpt", "export", path, "-o", path.parent / "x.npz"), path)
    if kind != "folder":  # `eval -c` is a click.Path(dir_okay=False): a folder is a usage error (exit 2) there
        assert_clean_failure(cli("eval", files["spec"], "-c", path), path)


def test_messages_say_what_is_wrong(bad_checkpoints):
    def message(kind):
        with pytest.raises(CheckpointError) as e:
            hdf5.load(bad_checkpoints[kind])
        return str(e.value)

    assert message("folder").endswith("is a folder, not a checkpoint file")
    assert message("empty").endswith("an empty file (0 bytes), not a checkpoint file")
    assert "not a dnnspec checkpoint" in message("text")
    assert "damaged or not a dnnspec checkpoint" in message("truncated")


def test_a_checkpoint_holding_strings_is_refused_on_load(files, tmp_path):
    path = tmp_path / "strings.h5"
    path.write_bytes(files["ckpt"].read_bytes())
    with h5py.File(path, "a") as f:
        del f["variables/dnn/outputs/bias"]
        f["variables/dnn/outputs/bias"] = np.array(["a", "b", "c"], dtype=h5py.string_dtype())
    with pytest.raises(CheckpointError, match="variable dnn/outputs/bias holds object values, not numbers"):
        hdf5.load(path)
    assert_clean_failure(cli("eval", files["spec"], "-c", path), path)


def test_a_real_process_reports_a_damaged_checkpoint(damaged, files):
    _, path, _ = next(d for d in damaged if isinstance(d[2].__cause__, ESCAPED))
    for args in (["ckpt", "show", str(path)], ["eval", str(files["spec"]), "-c", str(path)]):
        proc = subprocess.run([sys.executable, "-m", "dnnspec", *args], capture_output=True, text=True,
                              cwd=ROOT, timeout=120)
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.startswith(f"error: {path}: damaged or not a dnnspec checkpoint (")
        assert "Traceback" not in proc.stderr + proc.stdout and "internal error" not in proc.stderr


# ---------------------------------------------------------------- `dnnspec ckpt import` of damaged sources
def _sources(files, folder: Path) -> dict[str, tuple[Path, list[str]]]:
    """name -> (file, extra CLI arguments)."""
    (folder / "folder.npz").mkdir()
    (folder / "text.h5").write_text("this is not HDF5\n")
    (folder / "empty.npz").write_bytes(b"")
    np.save(folder / "array.npy", np.zeros(3))
    (folder / "array.npz").write_bytes((folder / "array.npy").read_bytes())  # a .npy named .npz
    np.savez(folder / "strings.npz", **{n: np.full(1, "x") for n in dnnspec.compile_text(TINY).variables})
    with zipfile.ZipFile(folder / "other.keras", "w") as z:
        z.writestr("config.json", "{}")
    archive = files["keras_archive"].read_bytes()
    member = archive.index(b"model.weights.h5") + 40  # inside the compressed weights file
    (folder / "damaged.keras").write_bytes(archive[:member] + b"\x00" * 64 + archive[member + 64:])
    out = {
        "truncated npz": (truncated(files["npz"], folder / "truncated.npz"), []),
        "empty npz": (folder / "empty.npz", []),
        "folder": (folder / "folder.npz", []),
        "text named .h5": (folder / "text.h5", []),
        "text as keras": (folder / "text.h5", ["--from", "keras"]),
        "npy as npz": (folder / "array.npz", []),
        "strings npz": (folder / "strings.npz", []),
        "truncated keras3": (truncated(files["keras"], folder / "truncated.weights.h5"), []),
        "truncated keras2": (truncated(files["keras2"], folder / "truncated-k2.h5"), []),
        "truncated .keras": (truncated(files["keras_archive"], folder / "truncated.keras"), []),
        "damaged .keras": (folder / "damaged.keras", []),
        "zip without weights": (folder / "other.keras", []),
        "checkpoint as keras2": (files["ckpt"], ["--from", "keras2"]),
    }
    if "torch" in files:
        (folder / "empty.safetensors").write_bytes(b"")
        out["truncated safetensors"] = (truncated(files["torch"], folder / "truncated.safetensors"), [])
        out["truncated safetensors header"] = (truncated(files["torch"], folder / "header.safetensors", 0.02), [])
        out["empty safetensors"] = (folder / "empty.safetensors", [])
    return out


SOURCES = ["truncated npz", "empty npz", "folder", "text named .h5", "text as keras", "npy as npz", "strings npz",
           "truncated keras3", "truncated keras2", "truncated .keras", "damaged .keras", "zip without weights",
           "checkpoint as keras2", "truncated safetensors", "truncated safetensors header", "empty safetensors"]


@pytest.mark.parametrize("kind", SOURCES)
def test_ckpt_import_of_a_bad_source_is_a_clean_error(files, tmp_path, kind):
    sources = _sources(files, tmp_path)
    if kind not in sources:
        pytest.skip("needs safetensors")
    path, extra = sources[kind]
    out = tmp_path / "imported.h5"
    r = cli("ckpt", "import", path, "--spec", files["spec"], "-o", out, *extra)
    assert_clean_failure(r, path)
    assert not out.exists()
    model = dnnspec.compile_text(TINY)
    before = {n: v.copy() for n, v in model.variables.items()}
    fmt = extra[1] if extra else ix.guess_format(path, ix.IMPORT_FORMATS)
    with pytest.raises(UserError, match=f"^{re.escape(str(path))}: "):
        ix.import_into(model.program, model.variables, fmt, path)
    for n, v in model.variables.items():  # nothing half-imported
        np.testing.assert_array_equal(v, before[n])


def test_readers_map_every_damage_to_a_checkpoint_error(files, tmp_path):
    """Overwrite and truncate each interchange file at many places: only CheckpointErrors (or success)."""
    model = dnnspec.compile_text(TINY)
    fmts = [("npz", files["npz"]), ("keras", files["keras"]), ("keras2", files["keras2"]),
            ("keras", files["keras_archive"])] + ([("torch", files["torch"])] if "torch" in files else [])
    failed = 0
    for fmt, src in fmts:
        data = src.read_bytes()
        step = max(1, len(data) // 150)
        for i, cut in enumerate(range(0, len(data), step)):
            for path in (overwritten(src, tmp_path / f"o{i}{''.join(src.suffixes)}", cut, 8),
                         truncated(src, tmp_path / f"t{i}{''.join(src.suffixes)}", cut / len(data))):
                try:
                    ix.import_into(model.program, model.variables, fmt, path)
                except UserError as e:
                    assert str(e).startswith(f"{path}: "), e
                    failed += 1
                except BaseException as e:  # noqa: BLE001
                    pytest.fail(f"{fmt} {path.name}: {type(e).__name__}: {e} escaped the reader")
                path.unlink(missing_ok=True)
    assert failed > 100
