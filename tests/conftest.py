from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist.npz"

TINY = """
model tiny {
    input x[2]
    scope dnn {
        dense hidden1(16, activation=relu)
        batchnorm bn(momentum=0.9)
        dropout(0.2)
        dense outputs(3)
    }
}
data spirals = spirals(samples=600)
train {
    optimizer adam(lr=0.01)
    epochs 3
    batch 32
    seed 7
}
"""


@pytest.fixture
def tiny_spec() -> str:
    return TINY


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run inside a temporary folder: spec paths are relative to the working directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def restore_threads():
    """The test leaves the process's BLAS threads and element-wise pool as it found them."""
    from dnnspec.train import parallel

    before = parallel.blas_threads()
    yield
    parallel.force_threads(None)
    parallel.configure(parallel.ThreadConfig(before or 1, 1))

