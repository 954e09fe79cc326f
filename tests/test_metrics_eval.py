"""Metrics against hand-computed values; `dnnspec eval` of single checkpoints and ensembles; `dnnspec schedule`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import dnnspec
from dnnspec import metrics
from dnnspec.cli import main

P = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.3, 0.4, 0.3], [0.25, 0.25, 0.5]])
Y = np.array([0, 1, 1, 2])


def test_accuracy_top_k_log_loss():
    assert metrics.accuracy(P, Y) == 0.75
    assert metrics.top_k_accuracy(P, Y, 1) == 0.75
    assert metrics.top_k_accuracy(P, Y, 2) == 1.0
    assert metrics.log_loss(P, Y) == pytest.approx(-np.mean(np.log([0.7, 0.3, 0.4, 0.5])))
    assert metrics.accuracy(P, np.eye(3)[Y]) == 0.75  # one-hot labels


def test_per_class_and_confusion():
    rows = metrics.per_class(P, Y)
    # predictions: 0, 2, 1, 2
    assert rows[0] == {"class": 0, "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert rows[1]["precision"] == 1.0 and rows[1]["recall"] == 0.5 and rows[1]["support"] == 2
    assert rows[2]["precision"] == 0.5 and rows[2]["recall"] == 1.0
    np.testing.assert_array_equal(metrics.confusion(P, Y), [[1, 0, 0], [0, 1, 1], [0, 0, 1]])


def test_binary_sigmoid_column():
    p = np.array([[0.9], [0.2], [0.6]])
    assert metrics.accuracy(p, np.array([1, 0, 0])) == pytest.approx(2 / 3)


SPEC = """
model e {
    input x[2]
    dense(16, activation=relu)
    dense(3)
}
data d = spirals(samples=600)
train {
    optimizer adam(lr=0.01)
    epochs 3
    seed SEED
    checkpoint "ck/eSEED.h5"
}
"""


def test_eval_ensemble_averages_probabilities(in_tmp):
    runner = CliRunner()
    for seed in (1, 2):
        (in_tmp / f"e{seed}.dnn").write_text(SPEC.replace("SEED", str(seed)))
        assert runner.invoke(main, ["run", f"e{seed}.dnn", "-q"]).exit_code == 0
    result = runner.invoke(main, ["eval", "e1.dnn", "-c", "ck/e1.h5", "-c", "ck/e2.h5", "--split", "test",
                                  "--top-k", "2", "--per-class", "--json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)["test"]
    models = [dnnspec.compile_text(SPEC.replace("SEED", "1")) for _ in range(2)]
    from dnnspec.ckpt import hdf5

    for m, path in zip(models, ("ck/e1.h5", "ck/e2.h5")):
        m.restore(hdf5.load(path))
    x, y = models[0].load_data().test
    p = (models[0].predict(x).astype(np.float64) + models[1].predict(x)) / 2
    assert got["accuracy"] == pytest.approx(metrics.accuracy(p, y))
    assert got["loss"] == pytest.approx(metrics.log_loss(p, y), rel=1e-5)
    assert got["top_2_accuracy"] == pytest.approx(metrics.top_k_accuracy(p, y, 2))
    assert len(got["per_class"]) == 3


def test_schedule_command_table(in_tmp):
    (in_tmp / "s.dnn").write_text(SPEC.replace("SEED", "1").replace("epochs 3", "epochs 4\n    schedule step(step_size=2, gamma=0.5)"))
    result = CliRunner().invoke(main, ["schedule", "s.dnn"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()[2:]
    assert [float(l.split()[-1]) for l in lines] == [0.01, 0.01, 0.005, 0.005]


def test_schedule_plot(in_tmp):
    pytest.importorskip("matplotlib")
    (in_tmp / "s.dnn").write_text(SPEC.replace("SEED", "1").replace("epochs 3", "epochs 4\n    schedule cosine_restarts(t0=5) per=step"))
    result = CliRunner().invoke(main, ["schedule", "s.dnn", "--plot", "lr.png"])
    assert result.exit_code == 0, result.output
    assert (in_tmp / "lr.png").read_bytes()[:4] == b"\x89PNG"
