"""End-to-end training runs of the shipped specs (marked slow: `pytest -m slow`)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT, SHARED_MNIST

pytestmark = pytest.mark.slow


def run_spec(name: str, *overrides: str) -> dict:
    args = [sys.executable, "-m", "dnnspec", "run", str(ROOT / "specs" / name), "--json", "-q"]
    for o in overrides:
        args += ["--set", o]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_quickstart_learns_the_spirals(in_tmp):
    out = run_spec("quickstart.dnn")
    assert out["test_accuracy"] >= 0.95
    assert (in_tmp / "checkpoints" / "quickstart.h5").is_file()
    assert (in_tmp / "checkpoints" / "quickstart.jsonl").is_file()


def test_xor_reaches_full_accuracy(in_tmp):
    out = run_spec("xor.dnn")
    assert out["epochs_run"] == 10000 and out["test_accuracy"] == 1.0


@pytest.mark.skipif(not SHARED_MNIST.is_file(), reason="shared/data/mnist.npz is not present")
def test_mnist_mlp_reaches_975(in_tmp):
    out = run_spec("mnist_mlp.dnn", f'data.path="{SHARED_MNIST}"')
    assert out["epochs_run"] == 10
    assert out["test_accuracy"] >= 0.975
