"""`run --monitor N` / `monitor layers every=N`, `run --tensorboard`, `allow` lines and `--allow`."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from dnnspec.cli import main

SPEC = """
model m {
    input x[2]
    scope dnn {
        dense hidden1(16, activation=relu)
        dense outputs(3)
    }
}
data d = spirals(samples=300)
train {
    epochs 2
    batch 30
    checkpoint "ck/m.h5"
EXTRA
}
"""


def run(tmp_path, extra="", *args):
    (tmp_path / "m.dnn").write_text(SPEC.replace("EXTRA", extra))
    return CliRunner().invoke(main, ["run", str(tmp_path / "m.dnn"), "-q", *args])


def layer_rows(tmp_path):
    rows = [json.loads(line) for line in (tmp_path / "ck" / "m.jsonl").read_text().splitlines()]
    return [r for r in rows if "layers" in r], [r for r in rows if "epoch" in r and "layers" not in r]


@pytest.mark.parametrize("how", ["flag", "spec"])
def test_monitor_adds_layer_rows_to_the_log(in_tmp, how):
    r = run(in_tmp, "    monitor layers every=3", ) if how == "spec" else run(in_tmp, "", "--monitor", "3")
    assert r.exit_code == 0, r.output
    layers, epochs = layer_rows(in_tmp)
    assert len(epochs) == 2 and len(layers) >= 4  # 10 updates an epoch, a row every 3
    assert all(row["step"] % 3 == 0 for row in layers)
    assert any("dnn/hidden1" in name for name in layers[0]["layers"])


def test_without_monitor_the_log_has_epochs_only(in_tmp):
    assert run(in_tmp).exit_code == 0
    layers, epochs = layer_rows(in_tmp)
    assert layers == [] and len(epochs) == 2


def test_tensorboard_writes_event_files(in_tmp):
    pytest.importorskip("tensorboardX")
    r = run(in_tmp, "", "--tensorboard", str(in_tmp / "tb"), "--monitor", "5")
    assert r.exit_code == 0, r.output
    assert list((in_tmp / "tb").rglob("events.out.tfevents.*"))


def test_allow_silences_a_lint_in_the_spec_and_on_the_command_line(in_tmp):
    deep = SPEC.replace("dense hidden1(16, activation=relu)",
                        "\n".join(f"dense h{i}(8, activation=sigmoid)" for i in range(6)))
    (in_tmp / "s.dnn").write_text(deep.replace("EXTRA", ""))
    runner = CliRunner()
    assert "W101" in runner.invoke(main, ["check", str(in_tmp / "s.dnn")]).stderr
    assert "W101" not in runner.invoke(main, ["check", str(in_tmp / "s.dnn"), "--allow", "w101"]).stderr
    (in_tmp / "a.dnn").write_text(deep.replace("EXTRA", "") + 'allow "W101"\n')
    assert "W101" not in runner.invoke(main, ["check", str(in_tmp / "a.dnn")]).stderr
    (in_tmp / "b.dnn").write_text(deep.replace("EXTRA", "") + 'allow "W999"\n')
    bad = runner.invoke(main, ["check", str(in_tmp / "b.dnn")])
    assert bad.exit_code == 2 and "no lint has that code" in bad.stderr
