"""Dataset entries: built-ins, file readers, the shared options, and every error path.

Fixtures are written into tmp_path at run time (np.savez, a tiny IDX writer, CSV text);
expected values are computed here from the raw arrays, never copied from the implementation.
"""

from __future__ import annotations

import gzip
import inspect
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from dnnspec.datasets import DATASETS, Csv, FashionMnist, FileDataset, Idx, Mnist, Npz, Options, Spirals, Xor
from dnnspec.errors import DataError

SHARED_MNIST = Path(__file__).parents[1] / ".." / "shared" / "data" / "mnist.npz"
FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")


# ---------------------------------------------------------------- helpers
def digits(n: int, side: int = 4, classes: int = 10, seed: int = 0):
    """uint8 images [n, side, side] and uint8 labels cycling 0..classes-1."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, side, side), dtype=np.uint8), (np.arange(n) % classes).astype(np.uint8)


def write_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def idx_bytes(a: np.ndarray, type_code: int = 0x08) -> bytes:
    """LeCun's IDX format: 0, 0, type, ndim, then big-endian uint32 dims, then big-endian data."""
    dtype = {0x08: ">u1", 0x0D: ">f4"}[type_code]
    head = bytes([0, 0, type_code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    return head + a.astype(dtype).tobytes()


def write_idx(path: Path, a: np.ndarray, gz: bool, type_code: int = 0x08) -> str:
    data = idx_bytes(a, type_code)
    path.write_bytes(gzip.compress(data) if gz else data)
    return str(path)


def errmsg(excinfo) -> str:
    return str(excinfo.value)


# ---------------------------------------------------------------- registry contract
def test_every_entry_has_a_doc_and_annotated_params():
    for entry in DATASETS.entries():
        assert entry.doc, entry.name
        for p in entry.params:
            assert p.type is not inspect.Parameter.empty, f"{entry.name}.{p.name} has no annotation"


FILE_ENTRIES = [e for e in DATASETS.entries() if issubclass(e.cls, FileDataset)]


@pytest.mark.parametrize("entry", FILE_ENTRIES, ids=lambda e: e.name)
def test_shared_options_are_declared_alike(entry):
    """Every file entry declares the shared options with the same types as `npz` (no drift)."""
    reference = {p.name: p.type for p in DATASETS.get("npz").params}
    shared = [f for f in Options.__dataclass_fields__ if entry.param(f) is not None]
    assert {"validation", "scale", "one_hot", "train_limit", "classes"} <= set(shared)
    for name in shared:
        assert entry.param(name).type == reference[name], (entry.name, name)


def test_validate_hooks_report_contradictions():
    assert "fraction" in Npz.validate(validation=2.5)
    assert Npz.validate(validation=5000.0) is None and Npz.validate(validation=0.1) is None
    assert "comma-separated" in Npz.validate(classes="a,b")
    assert "twice" in Npz.validate(classes="1,1")
    assert "both" in Idx.validate(test_images="t.idx")
    assert "regression" in Csv.validate(regression=True, one_hot=True)
    assert "one character" in Csv.validate(delimiter=";;")
    assert "leave training" in Spirals.validate(validation=0.5, test=0.5)
    with pytest.raises(DataError, match="fraction"):
        Npz("x.npz", validation=2.5)


# ---------------------------------------------------------------- xor
def test_xor_points_and_signature():
    s = Xor().load(Path("."))
    x, y = s.train
    assert x.dtype == np.float32 and y.dtype == np.int64 and x.shape == (4, 2)
    assert [int(a) ^ int(b) for a, b in x] == list(y)
    assert s.val is None and s.n_classes == 2 and Xor().signature() == (2, 2)
    np.testing.assert_array_equal(s.test[0], x)
    np.testing.assert_array_equal(s.test[1], y)


# ---------------------------------------------------------------- spirals
def test_spirals_deterministic_and_split():
    a, b, c = (Spirals(seed=s).load(Path(".")) for s in (0, 0, 1))
    for part in ("train", "val", "test"):
        for i in range(2):
            np.testing.assert_array_equal(getattr(a, part)[i], getattr(b, part)[i])
    assert not np.array_equal(a.train[0], c.train[0])
    assert [len(p[0]) for p in (a.train, a.val, a.test)] == [2100, 300, 600]
    x, y = a.train
    assert x.dtype == np.float32 and y.dtype == np.int64 and a.n_classes == 3
    np.testing.assert_allclose(x.astype(np.float64).mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(x.astype(np.float64).std(0), 1, atol=1e-5)
    all_y = np.concatenate([a.train[1], a.val[1], a.test[1]])
    assert np.bincount(all_y).tolist() == [1000, 1000, 1000]
    assert Spirals(classes=5).signature() == (2, 5)
    s = Spirals(classes=4, samples=1001, validation=0, test=0.1).load(Path("."))
    assert s.val is None and len(s.train[0]) + len(s.test[0]) == 1001 and s.n_classes == 4


def _softmax_grad(z, y):
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    return p / len(y)


def test_spirals_not_linearly_separable():
    """Multinomial logistic regression by plain gradient descent stays far from the MLP's accuracy."""
    s = Spirals().load(Path("."))
    (x, y), (xt, yt) = s.train, s.test
    x, xt = x.astype(np.float64), xt.astype(np.float64)
    w, b = np.zeros((2, 3)), np.zeros(3)
    for _ in range(400):
        g = _softmax_grad(x @ w + b, y)
        w -= 1.0 * x.T @ g
        b -= 1.0 * g.sum(0)
    assert ((xt @ w + b).argmax(1) == yt).mean() < 0.70


def test_spirals_learnable_by_a_small_deep_mlp():
    """A 2-64-64-3 ReLU net, SGD with momentum, 25 epochs: > 95% test accuracy."""
    s = Spirals().load(Path("."))
    (x, y), (xt, yt) = s.train, s.test
    rng = np.random.default_rng(0)
    sizes = [2, 64, 64, 3]
    ws = [rng.standard_normal((m, n)) * np.sqrt(2 / m) for m, n in zip(sizes, sizes[1:])]
    bs = [np.zeros(n) for n in sizes[1:]]
    vel = [np.zeros_like(p) for p in ws + bs]

    def forward(a):
        acts = [a]
        for i, (w, b) in enumerate(zip(ws, bs)):
            a = a @ w + b
            a = np.maximum(a, 0) if i < len(ws) - 1 else a
            acts.append(a)
        return acts

    for _ in range(25):
        order = rng.permutation(len(x))
        for i in range(0, len(x), 32):
            idx = order[i : i + 32]
            acts = forward(x[idx].astype(np.float64))
            g = _softmax_grad(acts[-1], y[idx])
            grads = []
            for j in reversed(range(len(ws))):
                grads.append((acts[j].T @ g, g.sum(0)))
                g = (g @ ws[j].T) * (acts[j] > 0)
            grads = grads[::-1]
            for k, (gw, gb) in enumerate(grads):
                for p, gp, v in ((ws[k], gw, vel[k]), (bs[k], gb, vel[len(ws) + k])):
                    v *= 0.9
                    v -= 0.05 * gp
                    p += v
    acc = (forward(xt.astype(np.float64))[-1].argmax(1) == yt).mean()
    assert acc > 0.95


# ---------------------------------------------------------------- npz + the shared options
def test_npz_options(tmp_path):
    x, y = digits(10)
    xt, yt = digits(6, seed=1)
    write_npz(tmp_path / "d.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    s = Npz("d.npz", validation=0.25, scale=0.5).load(tmp_path)
    # Keras validation_split: train = first floor(10 * 0.75) = 7, validation = the last 3.
    assert len(s.train[0]) == 7 and len(s.val[0]) == 3 and len(s.test[0]) == 6
    assert s.train[0].dtype == np.float32 and s.train[0].shape == (7, 16) and s.train[1].dtype == np.int64
    np.testing.assert_array_equal(s.train[0], x[:7].reshape(7, 16) * 0.5)
    np.testing.assert_array_equal(s.val[0], x[7:].reshape(3, 16) * 0.5)
    np.testing.assert_array_equal(s.val[1], y[7:])
    np.testing.assert_array_equal(s.test[0], xt.reshape(6, 16) * 0.5)
    assert s.n_classes == 10 and s.n_features == 16

    s = Npz("d.npz", validation=4, train_limit=2, one_hot=True).load(tmp_path)
    assert len(s.train[0]) == 2 and len(s.val[0]) == 4  # validation is taken before the limit
    np.testing.assert_array_equal(s.val[0], x[6:].reshape(4, 16))
    assert s.train[1].dtype == np.float32 and s.train[1].shape == (2, 10)
    np.testing.assert_array_equal(s.train[1].argmax(1), y[:2])
    np.testing.assert_array_equal(s.train[1].sum(1), 1)


def test_npz_classes_keep_and_renumber(tmp_path):
    x, y = digits(40)
    xt, yt = digits(20, seed=2)
    write_npz(tmp_path / "d.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    s = Npz(str(tmp_path / "d.npz"), classes="7, 2,5", validation=3).load(Path("/elsewhere"))
    want = np.isin(y, [7, 2, 5])
    remap = {7: 0, 2: 1, 5: 2}
    expect_y = np.array([remap[int(v)] for v in y[want]])
    got_y = np.concatenate([s.train[1], s.val[1]])
    np.testing.assert_array_equal(got_y, expect_y)
    np.testing.assert_array_equal(np.concatenate([s.train[0], s.val[0]]), x[want].reshape(-1, 16))
    assert len(s.val[0]) == 3 and s.n_classes == 3
    np.testing.assert_array_equal(s.test[1], [remap[int(v)] for v in yt[np.isin(yt, [7, 2, 5])]])


def test_npz_without_test_and_label_shapes(tmp_path):
    x = np.arange(12, dtype=np.float64).reshape(6, 2)
    y = np.array([[0.0], [2.0], [1.0], [0.0], [2.0], [1.0]])  # [N, 1] float whole numbers are fine
    write_npz(tmp_path / "d.npz", x_train=x, y_train=y)
    s = Npz("d.npz").load(tmp_path)
    assert s.test is None and s.val is None and s.n_classes == 3
    assert s.train[0].dtype == np.float32 and s.train[1].tolist() == [0, 2, 1, 0, 2, 1]


def test_npz_does_not_copy_through_float64(tmp_path):
    """Peak memory while loading stays below one float64 copy of the features."""
    n = 4000
    x = np.random.default_rng(0).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    write_npz(tmp_path / "big.npz", x_train=x, y_train=np.zeros(n, np.uint8))
    d = Npz("big.npz", scale=1 / 255)
    tracemalloc.start()
    try:
        s = d.load(tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < x.size * 8
    np.testing.assert_allclose(s.train[0], x.reshape(n, -1) / 255.0, rtol=1e-6)
    assert s.train[0].dtype == np.float32


def test_npz_errors(tmp_path):
    x, y = digits(10)

    def load(**kw):
        with pytest.raises(DataError) as e:
            Npz("d.npz", **kw).load(tmp_path)
        return errmsg(e)

    msg = load()
    assert "not found" in msg and str(tmp_path / "d.npz") in msg and "--set data.path=" in msg

    (tmp_path / "d.npz").write_text("x,y\n1,2\n")
    assert "not an .npz" in load()
    with open(tmp_path / "d.npz", "wb") as f:
        np.save(f, x)
    assert ".npy" in load()

    write_npz(tmp_path / "d.npz", x_train=x, y_train=y)
    data = (tmp_path / "d.npz").read_bytes()
    (tmp_path / "d.npz").write_bytes(data[: len(data) // 2])
    assert "damaged" in load()
    broken = bytearray(data)
    broken[200] ^= 0xFF  # inside the stored x_train member: the CRC no longer matches
    (tmp_path / "d.npz").write_bytes(bytes(broken))
    assert "damaged" in load()

    write_npz(tmp_path / "d.npz", images=x, y_train=y)
    msg = load()
    assert "x_train" in msg and "found: images, y_train" in msg and str(tmp_path / "d.npz") in msg
    write_npz(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x)
    assert "y_test" in load()

    write_npz(tmp_path / "d.npz", x_train=np.arange(10.0), y_train=y)
    assert "x_train has shape [10]" in load()
    write_npz(tmp_path / "d.npz", x_train=x, y_train=y)
    assert "flatten=true" in load(flatten=False)
    write_npz(tmp_path / "d.npz", x_train=x, y_train=y[:9])
    msg = load()
    assert "mismatched" in msg and "10" in msg and "9" in msg
    write_npz(tmp_path / "d.npz", x_train=x, y_train=np.eye(10)[y])
    assert "not one-hot" in load()
    write_npz(tmp_path / "d.npz", x_train=x, y_train=np.r_[0, 1, -1, 2, 3, 4, 5, 6, 7, 8])
    msg = load()
    assert "non-negative" in msg and "item 2" in msg and "y_train" in msg
    write_npz(tmp_path / "d.npz", x_train=x, y_train=np.r_[0, 1, 2.5, 2, 3, 4, 5, 6, 7, 8])
    assert "whole numbers" in load()
    write_npz(tmp_path / "d.npz", x_train=x.astype(np.float32) * np.nan, y_train=y)
    assert "NaN" in load()
    write_npz(tmp_path / "d.npz", x_train=np.array([["a"]] * 10), y_train=y)
    assert "dtype" in load()

    write_npz(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x[:, :3], y_test=y)
    assert "x_test: examples of shape [3, 4], but [4, 4]" in load()
    write_npz(tmp_path / "d.npz", x_train=x, y_train=np.r_[0, 1, 2, 3, 4, 5, 6, 7, 8, 70000])
    assert "too large" in load()

    write_npz(tmp_path / "d.npz", x_train=x, y_train=y)
    msg = load(validation=10)
    assert "validation=10" in msg and "10" in msg and "training" in msg
    assert "validation=0.95 leaves no training" in load(validation=0.95)  # floor(10 * 0.05) = 0 left
    assert "no training example has" in load(classes="3,11")


def test_npz_rejects_pickled_objects(tmp_path):
    objs = np.empty(10, dtype=object)
    np.savez(tmp_path / "d.npz", x_train=objs, y_train=np.zeros(10))
    with pytest.raises(DataError, match="d.npz"):
        Npz("d.npz").load(tmp_path)


# ---------------------------------------------------------------- mnist
def test_mnist_entry_on_fixture(tmp_path):
    x, y = digits(30, side=28)
    write_npz(tmp_path / "m.npz", x_train=x, y_train=y, x_test=x[:5], y_test=y[:5])
    d = Mnist("m.npz", validation=10)
    s = d.load(tmp_path)
    assert d.signature() == (784, 10) and s.n_features == 784 and s.n_classes == 10
    np.testing.assert_allclose(s.train[0], x[:20].reshape(20, -1) / 255.0, rtol=1e-6)
    assert Mnist(classes="0,1,2,3,4").signature() == (784, 5)
    write_npz(tmp_path / "m.npz", x_train=x, y_train=(y + 3).astype(np.uint8))
    with pytest.raises(DataError, match="y_train: label 12 is out of range for 10 classes"):
        Mnist("m.npz", validation=10).load(tmp_path)
    write_npz(tmp_path / "m.npz", x_train=digits(30, side=5)[0], y_train=y)
    with pytest.raises(DataError, match="784 features"):
        Mnist("m.npz", validation=10).load(tmp_path)


@pytest.mark.skipif(not SHARED_MNIST.is_file(), reason="shared/data/mnist.npz not present")
def test_real_mnist():
    s = Npz(str(SHARED_MNIST.resolve()), validation=5000, scale=1 / 255).load(Path("."))
    assert [len(p[0]) for p in (s.train, s.val, s.test)] == [55000, 5000, 10000]
    assert s.train[0].dtype == np.float32 and s.train[0].shape[1] == 784
    for x, _ in (s.train, s.val, s.test):
        assert x.min() >= 0 and x.max() <= 1
    assert s.n_classes == 10 and s.train[1].dtype == np.int64
    # the default path is relative to the working directory: the project's root
    m = Mnist().load(Path(__file__).parents[1])
    np.testing.assert_array_equal(m.val[1], s.val[1])


# ---------------------------------------------------------------- idx / fashion_mnist
def test_idx_gz_and_raw_by_magic(tmp_path):
    x, y = digits(12, side=3)
    xt, yt = digits(4, side=3, seed=5)
    d = Idx(
        write_idx(tmp_path / "imgs", x, gz=True),  # gzipped, no .gz suffix
        write_idx(tmp_path / "labels.gz", y, gz=False),  # raw despite the suffix
        write_idx(tmp_path / "t-imgs.gz", xt, gz=True),
        write_idx(tmp_path / "t-labels", yt, gz=False),
        validation=2,
        scale=1 / 255,
    )
    s = d.load(Path("/"))
    np.testing.assert_allclose(s.train[0], x[:10].reshape(10, 9) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(s.val[1], y[10:])
    np.testing.assert_array_equal(s.test[1], yt)
    assert s.n_classes == 10 and s.test[0].shape == (4, 9)

    f = np.linspace(-1, 1, 12 * 2).reshape(12, 2)
    s = Idx(write_idx(tmp_path / "f", f, gz=False, type_code=0x0D), str(tmp_path / "labels.gz")).load(tmp_path)
    np.testing.assert_allclose(s.train[0], f, rtol=1e-6)  # big-endian float32 read correctly


def test_idx_errors(tmp_path):
    x, y = digits(12, side=3)
    imgs, labels = write_idx(tmp_path / "i", x, gz=False), write_idx(tmp_path / "l", y, gz=False)

    def load(images=imgs, labels=labels):
        with pytest.raises(DataError) as e:
            Idx(images, labels).load(tmp_path)
        return errmsg(e)

    msg = load(images="nope")
    assert str(tmp_path / "nope") in msg and "not found" in msg and "--set data.images=" in msg
    (tmp_path / "bad").write_bytes(b"\x00\x00\x07\x03" + bytes(20))
    msg = load(images=str(tmp_path / "bad"))
    assert "magic number 0x00000703" in msg and "0x00000803" in msg and "bad" in msg
    (tmp_path / "txt").write_bytes(b"hello world")
    assert "not an IDX file" in load(images=str(tmp_path / "txt"))
    assert "expected 0x00000803" in load(images=labels)  # labels where images belong
    assert "expected 0x00000801" in load(labels=imgs)
    data = idx_bytes(x)
    (tmp_path / "short").write_bytes(data[:-5])
    msg = load(images=str(tmp_path / "short"))
    assert "truncated" in msg and "12 x 3 x 3" in msg and str(tmp_path / "short") in msg
    (tmp_path / "short_head").write_bytes(data[:9])
    assert "truncated" in load(images=str(tmp_path / "short_head"))
    (tmp_path / "gz").write_bytes(gzip.compress(data)[:-20])
    assert "damaged gzip" in load(images=str(tmp_path / "gz"))
    msg = load(labels=write_idx(tmp_path / "l11", y[:11], gz=True))
    assert "mismatched" in msg and "12" in msg and "11" in msg
    with pytest.raises(DataError, match="both"):
        Idx(imgs, labels, test_images=imgs)


def _fashion_fixture(root: Path, gz: bool) -> tuple[np.ndarray, np.ndarray]:
    x, y = digits(20, side=28)
    root.mkdir()
    for name, a in (("train-images-idx3-ubyte", x), ("train-labels-idx1-ubyte", y)):
        write_idx(root / (name + ".gz" * gz), a, gz=gz)
    for name, a in (("t10k-images-idx3-ubyte", x[:4]), ("t10k-labels-idx1-ubyte", y[:4])):
        write_idx(root / (name + ".gz" * gz), a, gz=gz)
    return x, y


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_standard_names(tmp_path, gz):
    x, y = _fashion_fixture(tmp_path / "fm", gz)
    d = FashionMnist("fm", validation=5)
    s = d.load(tmp_path)
    assert [len(p[0]) for p in (s.train, s.val, s.test)] == [15, 5, 4]
    assert s.n_classes == 10 and d.signature() == (784, 10)
    np.testing.assert_allclose(s.val[0], x[15:].reshape(5, 784) / 255.0, rtol=1e-6)


def test_fashion_mnist_missing(tmp_path):
    with pytest.raises(DataError) as e:
        FashionMnist(str(tmp_path / "none")).load(tmp_path)
    assert "train-images-idx3-ubyte" in errmsg(e) and "dataset-fashion-mnist" in errmsg(e)


@pytest.mark.skipif(not (FASHION_ROOT / "train-images-idx3-ubyte.gz").is_file(), reason="Fashion-MNIST not installed")
def test_real_fashion_mnist():
    s = FashionMnist().load(Path("."))
    assert [len(p[0]) for p in (s.train, s.val, s.test)] == [55000, 5000, 10000]
    assert s.train[0].dtype == np.float32 and s.train[0].shape[1] == 784
    assert s.train[0].min() >= 0 and s.train[0].max() <= 1 and s.n_classes == 10
    assert np.bincount(s.test[1]).tolist() == [1000] * 10


# ---------------------------------------------------------------- csv
CSV = "f1,label,f2\n1.5,0,2\n\n-1,2,3e2\n 4 ,1,5\n0,1,0\n"


def test_csv_classification(tmp_path):
    (tmp_path / "d.csv").write_text(CSV)
    (tmp_path / "t.csv").write_text("f1,label,f2\n7,2,8\n")
    s = Csv("d.csv", test="t.csv", validation=1, scale=2.0).load(tmp_path)
    np.testing.assert_array_equal(s.train[0], np.array([[1.5, 2], [-1, 300], [4, 5]], np.float32) * 2)
    np.testing.assert_array_equal(s.train[1], [0, 2, 1])
    np.testing.assert_array_equal(s.val[1], [1])
    np.testing.assert_array_equal(s.test[0], [[14, 16]])
    assert s.n_classes == 3 and s.train[1].dtype == np.int64 and s.train[0].dtype == np.float32
    for label in ("1", "-2"):
        np.testing.assert_array_equal(Csv("d.csv", label=label).load(tmp_path).train[1], [0, 2, 1, 1])
    (tmp_path / "n.csv").write_text("3;1;0\n4;2;1\n")
    s = Csv("n.csv", label="-1", header=False, delimiter=";", one_hot=True).load(tmp_path)
    np.testing.assert_array_equal(s.train[0], [[3, 1], [4, 2]])
    np.testing.assert_array_equal(s.train[1], [[1, 0], [0, 1]])


def test_csv_regression(tmp_path):
    (tmp_path / "r.csv").write_text("a,b,y1,y2\n1,2,0.5,-3\n3,4,1.25,7\n")
    s = Csv("r.csv", label="y1,y2", regression=True).load(tmp_path)
    assert s.n_classes is None and s.train[1].dtype == np.float32
    np.testing.assert_array_equal(s.train[1], [[0.5, -3], [1.25, 7]])
    s = Csv("r.csv", label="y1", regression=True).load(tmp_path)
    assert s.train[1].shape == (2, 1) and s.train[0].shape == (2, 3)


def test_csv_errors(tmp_path):
    def load(text, **kw):
        (tmp_path / "d.csv").write_text(text)
        with pytest.raises(DataError) as e:
            Csv("d.csv", **kw).load(tmp_path)
        msg = errmsg(e)
        assert str(tmp_path / "d.csv") in msg
        return msg

    (tmp_path / "d.csv").write_text(CSV)
    with pytest.raises(DataError) as e:
        Csv("d.csv", test="t/missing.csv").load(tmp_path)
    assert "not found" in errmsg(e) and str(tmp_path / "t" / "missing.csv") in errmsg(e) and "data.test" in errmsg(e)
    msg = load("f1,label\n1,0\n2,x\n")
    assert "line 3, column 2" in msg and "'x'" in msg
    assert "line 2, column 1" in load("f1,label\n,0\n")
    assert "not a finite" in load("f1,label\nnan,0\n")
    assert "line 3 has 3 columns" in load("f1,label\n1,0\n1,0,2\n")
    msg = load("f1,f2\n1,0\n")
    assert "no label column 'label'" in msg and "f1, f2" in msg
    assert "no header" in load("1,0\n", header=False)
    assert "whole numbers" in load("f1,label\n1,0.5\n")
    assert "non-negative" in load("f1,label\n1,-1\n")
    assert "no data rows" in load("f1,label\n")
    assert "no feature columns" in load("label\n1\n")
    assert "one column" in load("a,b,c\n1,2,3\n", label="b,c")
    assert "validation=2" in load("f1,label\n1,0\n2,1\n", validation=2)
    (tmp_path / "d.csv").write_bytes(b"f1,label\n\xff\xfe,1\n")
    with pytest.raises(DataError, match="UTF-8"):
        Csv("d.csv").load(tmp_path)
    (tmp_path / "t.csv").write_text("f1,f2,f3,label\n1,2,3,0\n")
    (tmp_path / "d.csv").write_text(CSV)
    with pytest.raises(DataError, match=r"t.csv: features: examples of shape \[3\], but \[2\] in"):
        Csv("d.csv", test="t.csv").load(tmp_path)
    with pytest.raises(DataError, match="regression"):
        Csv("d.csv", regression=True, classes="0,1")


# ---------------------------------------------------------------- whose fault: a stray label or a narrow layer
LABELLED = """
model m {{
    input x[2]
    scope dnn {{
        dense hidden(8, activation=relu)
        dense outputs(3)
    }}
}}
data d = {data}
train {{
    epochs 1
    batch 8
}}
"""


def csv_rows(labels, blank_after: int | None = None) -> str:
    lines = ["f1,f2,label"]
    for i, label in enumerate(labels):
        lines.append(f"{i % 5},{(i * 7) % 3},{label}")
        if blank_after is not None and i == blank_after:
            lines.append("")
    return "\n".join(lines) + "\n"


def test_a_stray_label_blames_the_data_row_not_the_layer(tmp_path, monkeypatch):
    import dnnspec

    monkeypatch.chdir(tmp_path)
    labels = [i % 3 for i in range(30)]
    labels[16] = 7  # row 17 of the file's data
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.csv").write_text(csv_rows(labels, blank_after=3))  # a blank line: line != row + 1
    model = dnnspec.compile_text(LABELLED.format(data='csv(path="data/x.csv")'))
    with pytest.raises(DataError) as e:
        model.fit()
    assert errmsg(e) == ("labels must be in 0..2 for the 3 outputs of the last layer 'dnn/outputs': row 17 of "
                         f"{tmp_path / 'data' / 'x.csv'} (line 19) has label 7; fix the data, or if it really has 8 "
                         "classes, widen the last layer")
    labels[20] = 5
    (tmp_path / "data" / "x.csv").write_text(csv_rows(labels))
    with pytest.raises(DataError, match=r"row 17 of \S*data/x.csv \(line 18\) has label 7 \(1 more row has a "
                                        r"label above 2\)"):
        model.load_data()


def test_a_stray_label_in_an_npz_names_the_array_and_item(tmp_path, monkeypatch):
    import dnnspec

    monkeypatch.chdir(tmp_path)
    x = np.random.default_rng(0).normal(size=(60, 2)).astype(np.float32)
    y = np.arange(60) % 3
    y[41] = 9
    write_npz(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x[:6], y_test=y[:6])
    model = dnnspec.compile_text(LABELLED.format(data='npz(path="d.npz")'))
    with pytest.raises(DataError, match=r"labels must be in 0..2 .*: item 41 of \S*/d.npz: y_train has label 9"):
        model.load_data()


def test_more_classes_in_the_data_blames_the_layer(tmp_path, monkeypatch):
    """Labels spread evenly over 0..7: the data has 8 classes, the 3-wide layer is wrong (E048)."""
    import dnnspec
    from dnnspec.errors import SpecError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.csv").write_text(csv_rows([i % 8 for i in range(40)]))
    model = dnnspec.compile_text(LABELLED.format(data='csv(path="x.csv")'))
    with pytest.raises(SpecError) as e:
        model.load_data()
    assert "E048" in errmsg(e) and "the last layer 'dnn/outputs' has width 3 but softmax_cross_entropy on this " \
                                   "data needs 8" in errmsg(e)
    assert "labels go up to 7" in errmsg(e)


def test_a_declared_class_count_blames_the_layer(tmp_path, monkeypatch):
    """`classes=` declares the data's classes: even one rare example of the fourth makes it 4."""
    import dnnspec
    from dnnspec.errors import SpecError

    monkeypatch.chdir(tmp_path)
    labels = [i % 3 for i in range(30)]
    labels[16] = 3
    (tmp_path / "x.csv").write_text(csv_rows(labels))
    model = dnnspec.compile_text(LABELLED.format(data='csv(path="x.csv", classes="0,1,2,3")'))
    with pytest.raises(SpecError, match="E048"):
        model.load_data()


def test_a_narrow_layer_and_a_stray_label(tmp_path, monkeypatch):
    """Labels 0..2 in every other row and one 7: a 2-wide layer is wrong (it needs 3, not 8), and the
    hint points at the stray row too."""
    import dnnspec
    from dnnspec.errors import SpecError

    monkeypatch.chdir(tmp_path)
    labels = [i % 3 for i in range(30)]
    labels[16] = 7
    (tmp_path / "x.csv").write_text(csv_rows(labels))
    model = dnnspec.compile_text(LABELLED.format(data='csv(path="x.csv")').replace("outputs(3)", "outputs(2)"))
    with pytest.raises(SpecError) as e:
        model.load_data()
    assert "has width 2 but softmax_cross_entropy on this data needs 3 [E048]" in errmsg(e)
    assert (f"hint: the data's labels go up to 7, but label 7 is on only 1 row (row 17 of {tmp_path / 'x.csv'} "
            "(line 18) has label 7): a mistake to fix in the data, not counted as a class") in errmsg(e)


def test_label_census_rule():
    from dnnspec.datasets import LabelSource, Splits

    def splits(labels):
        y = np.array(labels)
        return Splits(train=(np.zeros((len(y), 1), np.float32), y), n_classes=int(y.max()) + 1,
                      label_sources=[LabelSource("f", y)])

    fits = splits([0, 1, 2] * 10)
    assert fits.label_census(3) is None and fits.label_census(5) is None
    census = splits([0, 1, 2, 7, 9, 7] + [0, 1, 2] * 10).label_census(3)
    assert (census.classes, census.strays, census.first, census.rows) == (3, (7, 9), "item 3 of f has label 7", 3)
    assert "item 3 of f has label 7 (2 more rows have a label above 2)" in \
        splits([0, 1, 2, 7, 9, 7] + [0, 1, 2] * 10).stray_labels(3, "")
    census = splits([0, 1, 2, 3] * 10).label_census(3)  # a fourth class as common as the others
    assert (census.classes, census.strays) == (4, ()) and splits([0, 1, 2, 3] * 10).stray_labels(3, "") is None
    census = splits([0, 1, 2, 3, 3, 7] + [0, 1, 2, 3] * 10).label_census(3)  # a class and a stray
    assert (census.classes, census.strays) == (4, (7,))
    declared = Splits(train=(np.zeros((4, 1)), np.array([0, 1, 2, 7])), n_classes=8)  # a known class count
    assert declared.label_census(3) is None and declared.stray_labels(3, "") is None
