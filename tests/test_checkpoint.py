"""HDF5 checkpoints: round trip, format, integrity, atomic writes, clear errors."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import dnnspec
from dnnspec.ckpt import hdf5
from dnnspec.errors import CheckpointError


@pytest.fixture
def trained(tiny_spec, in_tmp):
    model = dnnspec.compile_text(tiny_spec + '\ncollection important = [x, dnn/outputs, dnn/hidden1/kernel, accuracy]\n')
    model.fit()
    return model


def test_round_trip_gives_identical_predictions(trained, in_tmp):
    path = trained.save(in_tmp / "m.h5")
    again = dnnspec.load_checkpoint(path)
    x = np.random.default_rng(1).normal(size=(64, 2)).astype(np.float32)
    np.testing.assert_array_equal(trained.predict(x), again.predict(x))
    for name, value in trained.variables.items():
        np.testing.assert_array_equal(again.variables[name], value)
    assert again.history == [{k: v for k, v in h.items() if k != "best"} for h in trained.history]
    assert again.trainer.updater.t == trained.trainer.updater.t


def test_layout_matches_the_documented_format(trained, in_tmp):
    path = trained.save(in_tmp / "m.h5")
    with h5py.File(path) as f:
        assert f.attrs["format"] == "dnnspec" and f.attrs["format_version"] == hdf5.FORMAT_VERSION
        assert f["spec"][()].decode().startswith("model tiny {")
        k = f["variables/dnn/hidden1/kernel"]
        assert k.shape == (2, 16) and k.dtype == np.float32 and k.fletcher32
        assert bool(k.attrs["trainable"]) and not bool(f["variables/dnn/bn/moving_mean"].attrs["trainable"])
        assert f["optimizer"].attrs["name"] == "adam"
        assert f["optimizer/slots/m/dnn/outputs/kernel"].shape == (16, 3)
        assert "dnn/bn/moving_mean" not in f["optimizer/slots/m"]  # no slots for non-trainable
        assert int(f["optimizer"].attrs["step"]) == trained.trainer.updater.t
        assert list(f["history/loss"][()]) == [h["loss"] for h in trained.history]
        assert [s.decode() for s in f["collections/important"][()]] == [
            "x", "dnn/outputs", "dnn/hidden1/kernel", "accuracy"]


def test_collections_from_python(trained):
    names = [n for n, _ in trained.collection("important")]
    assert names == ["x", "dnn/outputs/kernel", "dnn/outputs/bias", "dnn/hidden1/kernel", "accuracy"]
    assert "dnn/bn/moving_mean" in [n for n, _ in trained.collection("non_trainable_variables")]
    with pytest.raises(KeyError, match="no collection 'nope'"):
        trained.collection("nope")


def test_damaged_file_is_an_error(trained, in_tmp):
    path = trained.save(in_tmp / "m.h5")
    with h5py.File(path) as f:
        offset = f["variables/dnn/hidden1/kernel"].id.get_offset() if not f["variables/dnn/hidden1/kernel"].chunks \
            else f["variables/dnn/hidden1/kernel"].id.get_chunk_info(0).byte_offset
    data = bytearray(path.read_bytes())
    data[offset + 5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged"):
        dnnspec.load_checkpoint(path)


def test_not_a_checkpoint_and_missing_file(in_tmp):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        hdf5.load(in_tmp / "nope.h5")
    (in_tmp / "text.h5").write_text("hello")
    with pytest.raises(CheckpointError, match="not a dnnspec checkpoint"):
        hdf5.load(in_tmp / "text.h5")
    with h5py.File(in_tmp / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(CheckpointError, match="not a dnnspec checkpoint"):
        hdf5.load(in_tmp / "other.h5")


def test_newer_format_version_is_refused(trained, in_tmp):
    path = trained.save(in_tmp / "m.h5")
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = hdf5.FORMAT_VERSION + 1
    with pytest.raises(CheckpointError, match="newer than this dnnspec"):
        hdf5.load(path)


def test_failed_write_leaves_previous_checkpoint_intact(trained, in_tmp, monkeypatch):
    path = trained.save(in_tmp / "m.h5")
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(hdf5, "_dataset", boom)
    with pytest.raises(OSError, match="disk full"):
        trained.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in in_tmp.iterdir() if p.name.startswith(".m.h5")] == []


def test_restore_refuses_mismatched_shapes(trained, in_tmp, tiny_spec):
    path = trained.save(in_tmp / "m.h5")
    other = dnnspec.compile_text(tiny_spec.replace("hidden1(16", "hidden1(8").replace("bn(momentum", "bn(momentum"))
    with pytest.raises(CheckpointError, match=r"dnn/hidden1/kernel: checkpoint shape \(2, 16\) != model shape \(2, 8\)"):
        other.restore(hdf5.load(path))


def test_collections_from_the_checkpoint_alone(trained, in_tmp):
    path = trained.save(in_tmp / "m.h5")
    ckpt = hdf5.load(path)
    names = [n for n, _ in ckpt.collection("important")]
    assert names == ["x", "dnn/outputs/kernel", "dnn/outputs/bias", "dnn/hidden1/kernel", "accuracy"]
    np.testing.assert_array_equal(dict(ckpt.collection("important"))["dnn/hidden1/kernel"],
                                  trained.variables["dnn/hidden1/kernel"])
    assert [n for n, _ in ckpt.collection("moving_statistics")] == ["dnn/bn/moving_mean", "dnn/bn/moving_variance"]
    with pytest.raises(KeyError, match="known: important"):
        ckpt.collection("nope")


def test_regularization_targets_collection(tiny_spec):
    model = dnnspec.compile_text(tiny_spec.replace("epochs 3", 'epochs 3\n    regularize l2(0.01) on "dnn/.*/kernel"'))
    assert [n for n, _ in model.collection("regularization_targets")] == ["dnn/hidden1/kernel", "dnn/outputs/kernel"]
