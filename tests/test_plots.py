"""`dnnspec plot`: learning curves of runs (metrics logs and checkpoints) on one chart, legends of
what differs between their specs, per-layer monitor curves; figures read back as images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dnnspec import api
from dnnspec.cli import main

from conftest import TINY

mpl = pytest.importorskip("matplotlib")


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        yield


def write_log(path: Path, runs: dict[str, list[dict]], layers: dict[str, list[dict]] | None = None) -> Path:
    lines = []
    for rid, rows in runs.items():
        lines += [json.dumps({"run": rid, **row}) for row in rows]
        lines += [json.dumps({"run": rid, **row}) for row in (layers or {}).get(rid, [])]
    path.write_text("\n".join(lines) + "\n")
    return path


def epochs(n: int, start: float = 1.0, first: int = 1) -> list[dict]:
    return [{"epoch": e, "loss": start / e, "accuracy": 1 - 0.5 / e, "val_loss": 1.2 * start / e,
             "val_accuracy": 1 - 0.6 / e, "lr": 0.01 * 0.9 ** e, "seconds": 0.1} for e in range(first, first + n)]


def image_ok(path: Path) -> None:
    from matplotlib import image

    img = image.imread(path)
    assert img.shape[0] > 250 and img.shape[1] > 500
    assert img[..., :3].std() > 0.05  # not blank


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> list[Path]:
    """Two real 2-epoch runs of the tiny spec that differ in their optimizer."""
    folder = tmp_path_factory.mktemp("ckpt")
    out = []
    for name, opt in (("adam", "train.optimizer=adam(lr=0.01)"), ("sgd", "train.optimizer=sgd(lr=0.1)")):
        model = api.compile_text(TINY, [opt, "train.epochs=2"])
        model.fit()
        out.append(model.save(folder / f"{name}.h5"))
    return out


def test_plot_jsonl_runs(tmp_path):
    from dnnspec import plots

    log = write_log(tmp_path / "a.jsonl", {"20240101T000000": epochs(5), "20240102T000000": epochs(4, 2.0)})
    other = write_log(tmp_path / "b.jsonl", {"20240103T000000": epochs(3)})
    runs = plots.load_runs([str(log), str(other)])
    assert [r.label for r in runs] == ["a.jsonl [20240101T000000]", "a.jsonl [20240102T000000]",
                                       "b.jsonl [20240103T000000]"]
    fig = plots.learning_curves(runs, title="three runs")
    assert len(fig.legends) == 1 and len(fig.legends[0].get_lines()) == 3
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "accuracy", "learning rate"]
    assert fig.axes[2].get_yscale() == "log" and fig._suptitle.get_text() == "three runs"
    assert all(ax.get_xlabel() == "epoch" for ax in fig.axes)
    plots.pyplot().close(fig)
    out = tmp_path / "curves.png"
    result = CliRunner().invoke(main, ["plot", str(log), str(other), "-o", str(out), "--log-y"])
    assert result.exit_code == 0, result.output
    image_ok(out)


def test_a_resumed_run_continues_its_line(tmp_path):
    from dnnspec import plots

    log = write_log(tmp_path / "r.jsonl", {"first": epochs(3), "resumed": epochs(2, first=4)})
    [run] = plots.load_runs([str(log)])
    assert [row["epoch"] for row in run.epochs] == [1, 2, 3, 4, 5]


def test_plot_checkpoints_legend_says_what_differs(checkpoints, tmp_path):
    from dnnspec import plots

    runs = plots.load_runs([str(p) for p in checkpoints])
    assert [r.label for r in runs] == ["adam(lr=0.01)", "sgd(lr=0.1)"]
    assert all(len(r.epochs) == 2 for r in runs)
    fig = plots.learning_curves(runs, metrics=["loss"])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["adam(lr=0.01)", "sgd(lr=0.1)"]
    lines = fig.axes[0].get_lines()
    assert len(lines) == 4  # training and validation per run
    plots.pyplot().close(fig)
    out = tmp_path / "ck.png"
    result = CliRunner().invoke(main, ["plot", *map(str, checkpoints), "-o", str(out), "--metric", "accuracy",
                                       "--title", "adam vs sgd"])
    assert result.exit_code == 0, result.output
    image_ok(out)


def test_plot_refuses_to_replace_without_force(tmp_path):
    log = write_log(tmp_path / "a.jsonl", {"r": epochs(2)})
    out = tmp_path / "c.png"
    args = ["plot", str(log), "-o", str(out)]
    assert CliRunner().invoke(main, args).exit_code == 0
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 1 and "without --force" in again.stderr
    assert CliRunner().invoke(main, args + ["--force"]).exit_code == 0
    data = tmp_path / "notes.png"
    data.write_text("my notes")  # not a figure: never replaced
    refused = CliRunner().invoke(main, ["plot", str(log), "-o", str(data), "--force"])
    assert refused.exit_code == 1 and "not a figure dnnspec wrote" in refused.stderr
    assert data.read_text() == "my notes"


def test_plot_errors_are_plain(tmp_path):
    log = write_log(tmp_path / "a.jsonl", {"r": epochs(2)})
    missing = CliRunner().invoke(main, ["plot", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "x.png")])
    assert missing.exit_code == 1 and "no such run" in missing.stderr
    metric = CliRunner().invoke(main, ["plot", str(log), "-o", str(tmp_path / "x.png"), "--metric", "top_5"])
    assert metric.exit_code == 1 and "no such metric" in metric.stderr and "accuracy" in metric.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"run": "r", "epoch": 1}\nnot json\n')
    broken = CliRunner().invoke(main, ["plot", str(bad), "-o", str(tmp_path / "x.png")])
    assert broken.exit_code == 1 and "bad.jsonl:2" in broken.stderr
    suffix = CliRunner().invoke(main, ["plot", str(log), "-o", str(tmp_path / "x.txt")])
    assert suffix.exit_code == 1 and ".png" in suffix.stderr


def test_plot_layers_from_monitor_rows(tmp_path):
    from dnnspec import plots

    layer_rows = [{"monitor": "layers", "epoch": 1, "step": s,
                   "layers": {f"dnn/hidden{i}": {"mean": 0.1, "std": 0.5 / i, "saturated": None, "dead": 0.01 * i,
                                                 "grad_norm": 0.1 * i * s, "weight_norm": 3.0, "grad_ratio": 0.01,
                                                 "update_ratio": 1e-3 * i}
                              for i in (1, 2, 3)}} for s in (10, 20, 30)]
    log = write_log(tmp_path / "m.jsonl", {"r": epochs(1)}, {"r": layer_rows})
    [run] = plots.load_runs([str(log)])
    assert len(run.layers) == 3 and len(run.epochs) == 1
    fig = plots.layer_curves([run])
    top = fig.axes[0]
    assert [t.get_text() for t in top.get_legend().get_texts()] == ["hidden1", "hidden2", "hidden3"]
    ylabels = [ax.get_ylabel() for ax in fig.axes]
    assert ylabels == ["‖∂L/∂W‖", "‖ΔW‖ / ‖W‖", "activation std", "dead fraction"]
    plots.pyplot().close(fig)
    out = tmp_path / "layers.png"
    result = CliRunner().invoke(main, ["plot", str(log), "--layers", "-o", str(out)])
    assert result.exit_code == 0, result.output
    image_ok(out)
    plain = write_log(tmp_path / "p.jsonl", {"r": epochs(2)})
    none = CliRunner().invoke(main, ["plot", str(plain), "--layers", "-o", str(tmp_path / "n.png")])
    assert none.exit_code == 1 and "monitor layers every=N" in none.stderr


def test_missing_matplotlib_is_a_clear_message(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_mpl(name, *a, **k):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    log = write_log(tmp_path / "a.jsonl", {"r": epochs(2)})
    result = CliRunner().invoke(main, ["plot", str(log), "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 1 and "pip install 'dnnspec[plot]'" in result.stderr
