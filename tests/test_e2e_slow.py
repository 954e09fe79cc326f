"""End-to-end training runs of the shipped specs (marked slow: `pytest -m slow`)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
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


def _val_curve(path) -> list[float]:
    return [json.loads(line)["val_accuracy"] for line in path.read_text().splitlines()]


@pytest.mark.skipif(not SHARED_MNIST.is_file(), reason="shared/data/mnist.npz is not present")
def test_transfer_learning_story(in_tmp):
    """Train on digits 0-4; reuse + freeze hidden1-3 for digits 5-9 from 200 examples (cached);
    it learns in fewer epochs than the same net from scratch, and keeps the reused weights bit-equal."""
    import dnnspec
    from click.testing import CliRunner

    from dnnspec.cli import main

    data = f'data.path="{SHARED_MNIST}"'
    run_spec("transfer_base.dnn", data)
    reuse = run_spec("transfer_reuse.dnn", data)
    scratch = run_spec("transfer_scratch.dnn", data)
    assert reuse["frozen_cache"] and "ops 1-6" in reuse["frozen_cache"]
    r = _val_curve(in_tmp / "checkpoints" / "transfer_reuse.jsonl")
    s = _val_curve(in_tmp / "checkpoints" / "transfer_scratch.jsonl")
    first = lambda curve, level: next((i + 1 for i, v in enumerate(curve) if v >= level), 99)  # noqa: E731
    assert first(r, 0.8) < first(s, 0.8)  # fewer epochs to the same accuracy
    assert max(r[:3]) > max(s[:3]) + 0.05  # higher accuracy in the first epochs
    base = dnnspec.load_checkpoint(in_tmp / "checkpoints" / "transfer_base.h5")
    new = dnnspec.load_checkpoint(in_tmp / "checkpoints" / "transfer_reuse.h5")
    for name in base.variables:
        if name.startswith(("dnn/hidden1/", "dnn/hidden2/", "dnn/hidden3/")):
            np.testing.assert_array_equal(new.variables[name], base.variables[name])
    result = CliRunner().invoke(main, ["ckpt", "diff", "checkpoints/transfer_base.h5", "checkpoints/transfer_reuse.h5",
                                       "--changed"])
    changed = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("changed")}
    assert changed and all(n.startswith(("dnn/hidden4/", "dnn/hidden5/", "dnn/outputs/")) for n in changed)
    verify = CliRunner().invoke(main, ["ckpt", "verify", "checkpoints/transfer_reuse.h5", "dnn/hidden[123]/",
                                       "--against", "checkpoints/transfer_base.h5"])
    assert verify.exit_code == 0, verify.output


@pytest.mark.skipif(not SHARED_MNIST.is_file(), reason="shared/data/mnist.npz is not present")
def test_rbm_pretraining_beats_random_init_with_1000_labels(in_tmp):
    # docs/results.md "Unsupervised pretraining", with 20 fine-tuning epochs instead of 50
    data = f'data.path="{SHARED_MNIST}"'
    scratch = run_spec("mnist_1k_sigmoid.dnn", data, "train.epochs=20")
    dbn = run_spec("mnist_1k_sigmoid_rbm.dnn", data, "train.epochs=20")
    assert dbn["test_accuracy"] > scratch["test_accuracy"] + 0.03, (scratch["test_accuracy"], dbn["test_accuracy"])
    assert (in_tmp / "checkpoints" / "mnist_1k_dbn_pretrain.h5").is_file()
