"""Sweeps (`dnnspec sweep`, `sweep-report`, `ensemble`) with the local executor: axes and sweep
files, every trial checked before any runs, the sweep folder, resuming after the sweep process is
interrupted or killed, reports, plots and ensembles. The Ray executor: tests/test_sweep_ray.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from dnnspec.cli import main
from dnnspec.sweep import SweepDef, SweepError, parse_grid, parse_sample, read_sweep_file, run_sweep
from dnnspec.sweep.space import plan_round, split_top

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "specs" / "quickstart.dnn")
# 6 small trials: ~0.3 s each
BASE = ["train.epochs=2", "data.samples=600"]
GRID = ["train.optimizer.lr=0.001,0.01,0.1", "train.batch=16,32"]


def small_sweep() -> SweepDef:
    return SweepDef(QUICKSTART, base=list(BASE), axes=[parse_grid(g) for g in GRID])


def cli_args(out) -> list[str]:
    args = ["sweep", QUICKSTART, "-o", str(out)]
    for s in BASE:
        args += ["--set", s]
    for g in GRID:
        args += ["--grid", g]
    return args


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """The small sweep, run once through the CLI with the default local executor."""
    out = tmp_path_factory.mktemp("sweeps") / "base"
    result = CliRunner().invoke(main, cli_args(out) + ["--json"])
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout.strip().splitlines()[-1])


def manifest(out) -> dict:
    return json.loads((Path(out) / "manifest.json").read_text())


# ---------------------------------------------------------------- axes and files
def test_values_split_at_top_level_commas():
    assert split_top('sgd(lr=0.1), nesterov(lr=0.01, momentum=0.9),adam') == [
        "sgd(lr=0.1)", "nesterov(lr=0.01, momentum=0.9)", "adam"]
    assert split_top('multistep(milestones="15,30", gamma=0.1), constant') == [
        'multistep(milestones="15,30", gamma=0.1)', "constant"]
    axis = parse_grid("train.optimizer=sgd(lr=0.1),adam(lr=0.001)")
    assert axis.values == ("sgd(lr=0.1)", "adam(lr=0.001)")


@pytest.mark.parametrize("text,message", [
    ("train.optimizer.lr", "expected PATH=VALUES"),
    ("train.optimizer.lr=1,,2", "an empty value"),
    ("train.optimizer.lr=1,1", "listed twice"),
    ("1x=2", "not a parameter path"),
])
def test_bad_grid(text, message):
    with pytest.raises(SweepError, match=message):
        parse_grid(text)


@pytest.mark.parametrize("text,message", [
    ("lr=gauss(0,1)", "expected one of"),
    ("lr=loguniform(0,1)", "0 < low"),
    ("lr=uniform(1,0)", "low must be below high"),
    ("lr=int(1.5,3)", "whole numbers"),
    ("lr=uniform(1)", "two numbers"),
])
def test_bad_sample(text, message):
    with pytest.raises(SweepError, match=message):
        parse_sample(text)


def test_sampling_is_deterministic_and_in_range():
    d = SweepDef(QUICKSTART, axes=[parse_grid("train.batch=16,32"),
                                   parse_sample("train.optimizer.lr=loguniform(1e-4,1e-1)"),
                                   parse_sample("width=int(8,64)"), parse_sample("train.optimizer=choice(sgd,adam)")],
                 trials=5, seed=3).finish()
    a, b = plan_round(d, d.axes, 1, 1), plan_round(d, d.axes, 1, 1)
    assert [t.values for t in a] == [t.values for t in b] and len(a) == 10
    assert [t.index for t in a] == list(range(1, 11))
    assert all(1e-4 <= float(t.values["train.optimizer.lr"]) <= 1e-1 for t in a)
    assert all(8 <= int(t.values["width"]) <= 64 for t in a)
    assert {t.values["train.batch"] for t in a[:5]} == {"16"}
    other = plan_round(SweepDef(**{**d.__dict__, "seed": 4}), d.axes, 1, 1)
    assert [t.values for t in other] != [t.values for t in a]


def test_narrowing_around_the_best():
    lr = parse_sample("lr=loguniform(1e-4,1e-0)")
    n = lr.narrowed("0.01", 4)
    assert n.low == pytest.approx(10 ** -2.5) and n.high == pytest.approx(10 ** -1.5)
    edge = lr.narrowed("0.0001", 4)
    assert edge.low == pytest.approx(1e-4) and edge.high == pytest.approx(10 ** -3.5)
    assert parse_grid("batch=16,32").narrowed("32", 4).values == ("32",)
    assert parse_sample("opt=choice(sgd,adam)").narrowed("adam", 4).values == ("adam",)
    k = parse_sample("width=int(8,64)").narrowed("40", 4)
    assert 8 <= k.low < 40 < k.high <= 64 and k.high - k.low <= 16


def test_definition_errors():
    with pytest.raises(SweepError, match="nothing is sampled"):
        SweepDef(QUICKSTART, axes=[parse_grid("train.batch=16,32")], trials=3).finish()
    with pytest.raises(SweepError, match="swept twice"):
        SweepDef(QUICKSTART, axes=[parse_grid("train.batch=16,32"), parse_grid("train.batch=8")]).finish()
    with pytest.raises(SweepError, match="no spec"):
        SweepDef(None, axes=[parse_grid("train.batch=16,32")]).finish()
    with pytest.raises(SweepError, match="nothing to sweep"):
        SweepDef(QUICKSTART).finish()


def test_sweep_files_line_format_and_json(tmp_path):
    lines = tmp_path / "s.sweep"
    lines.write_text("# a comment\nspec a.dnn b.dnn\nset train.epochs=2  # trailing comment\n"
                     "grid train.optimizer=sgd(lr=0.1), adam(lr=0.001)\n"
                     "sample train.optimizer.lr=loguniform(1e-4, 1e-1)\ntrials 4\nseed 7\nrefine 1\n")
    js = tmp_path / "s.json"
    js.write_text(json.dumps({"spec": ["a.dnn", "b.dnn"], "set": ["train.epochs=2"],
                              "grid": {"train.optimizer": ["sgd(lr=0.1)", "adam(lr=0.001)"]},
                              "sample": {"train.optimizer.lr": "loguniform(1e-4, 1e-1)"},
                              "trials": 4, "seed": 7, "refine": 1}))
    a, b = read_sweep_file(lines).finish(), read_sweep_file(js).finish()
    assert a.to_json() == b.to_json()
    assert [x.path for x in a.axes] == ["spec", "train.optimizer", "train.optimizer.lr"] and a.trials == 4
    bad = tmp_path / "bad.sweep"
    bad.write_text("spec a.dnn\n\ngrid train.batch=\n")
    with pytest.raises(SweepError, match=r"bad\.sweep:3: --grid"):
        read_sweep_file(bad)
    bad.write_text("spec a.dnn\ntrails 3\n")
    with pytest.raises(SweepError, match=r"bad\.sweep:2: unknown line 'trails'"):
        read_sweep_file(bad)


def test_shipped_sweep_files_check():
    """Every trial of every shipped sweep file passes the checker (as `dnnspec sweep` checks them)."""
    from dnnspec.check import check_file

    files = sorted((ROOT / "specs" / "sweeps").glob("*"))
    assert len(files) >= 4
    cwd = os.getcwd()
    os.chdir(ROOT)  # sweep files name specs relative to the repository root
    try:
        for f in files:
            d = read_sweep_file(f).finish()
            trials = plan_round(d, d.axes, 1, 1)
            assert trials
            for t in trials:
                check_file(t.spec, t.overrides(d.base))
    finally:
        os.chdir(cwd)


# ---------------------------------------------------------------- checking before running
def test_a_bad_value_in_a_late_trial_is_located_before_any_trial_runs(tmp_path):
    out = tmp_path / "bad"
    result = CliRunner().invoke(main, ["sweep", QUICKSTART, "--set", "train.epochs=1", "--grid",
                                       "train.optimizer.lr=0.01,0.02,0.03,0.04,0.05,-1", "-o", str(out)])
    assert result.exit_code == 2, result.output
    err = result.stderr
    assert err.startswith("trial 6 of 6 (trial-006: train.optimizer.lr=-1) does not check; nothing was run:\n"
                          "--set train.optimizer.lr=-1:1:20: error: 'lr' of optimizer 'adam' must be > 0"), err
    assert "   1 | train.optimizer.lr=-1\n" in err and "^" in err
    assert not out.exists()  # nothing ran, nothing was written


def test_scheduler_needs_ray_and_a_folder_holds_one_sweep(tmp_path, baseline):
    with pytest.raises(SweepError, match="--executor ray"):
        run_sweep(small_sweep(), tmp_path / "x", scheduler="asha")
    other = small_sweep()
    other.base = ["train.epochs=3", "data.samples=600"]
    with pytest.raises(SweepError, match="holds another sweep"):
        run_sweep(other, baseline[0], log=lambda m: None)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(SweepError, match="not a sweep folder"):
        run_sweep(small_sweep(), tmp_path / "busy", log=lambda m: None)


def test_ray_executor_without_ray_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    result = CliRunner().invoke(main, cli_args(tmp_path / "r") + ["--executor", "ray"])
    assert result.exit_code == 1
    assert 'pip install "dnnspec[ray]"' in result.stderr
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- the sweep folder
def test_the_sweep_folder(baseline):
    out, summary = baseline
    doc = manifest(out)
    assert [t["status"] for t in doc["trials"]] == ["done"] * 6
    assert summary["status"] == {"done": 6} and summary["best"]["trial"].startswith("trial-")
    first = doc["trials"][0]
    assert first["values"] == {"train.optimizer.lr": "0.001", "train.batch": "16"}
    assert first["overrides"] == [*BASE, "train.optimizer.lr=0.001", "train.batch=16"]
    for t in doc["trials"]:
        d = out / t["name"]
        assert t["checkpoint"] == f"{t['name']}/model.h5" and (d / "model.h5").is_file()
        rows = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in rows] == [1, 2]
        res = json.loads((d / "result.json").read_text())
        assert res["status"] == "done" and res["result"]["val_accuracy"] == t["metrics"]["val_accuracy"]
    # the same trial by `dnnspec run` gives the same result: a trial is a dnnspec run
    import dnnspec.api as api
    from dnnspec import session
    from dnnspec.train.loop import Silent

    model = api.compile_file(QUICKSTART, [*first["overrides"], f"train.checkpoint={out}/again/m.h5"])
    result = session.run(model, reporter=Silent(), log=lambda m: None)
    assert result["val_accuracy"] == first["metrics"]["val_accuracy"]
    assert result["test_loss"] == first["metrics"]["test_loss"]


def test_rerun_keeps_every_ended_trial(baseline):
    out, _ = baseline
    before = {p: p.stat().st_mtime_ns for p in out.glob("trial-*/model.h5")}
    result = CliRunner().invoke(main, cli_args(out))
    assert result.exit_code == 0, result.output
    assert "6 already ended, kept" in result.stdout
    assert {p: p.stat().st_mtime_ns for p in out.glob("trial-*/model.h5")} == before


def _run_and_stop(out: Path, sig: int) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Start the small sweep (one worker, 3 epochs a trial) as a real process; send `sig` once two
    trials have ended; return the process and the trials done by then."""
    cmd = [sys.executable, "-m", "dnnspec"] + cli_args(out) + ["--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    done: set[str] = set()
    while time.monotonic() < deadline:
        try:
            done = {t["name"] for t in manifest(out)["trials"] if t["status"] == "done"}
        except (OSError, ValueError):
            pass
        if len(done) >= 2:
            break
        time.sleep(0.02)
    os.kill(proc.pid, sig)
    stdout, stderr = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr), done


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_an_interrupted_sweep_resumes_where_it_stopped(tmp_path, baseline, sig):
    out = tmp_path / "s"
    proc, done = _run_and_stop(out, sig)
    assert len(done) >= 2
    if sig == signal.SIGINT:
        assert proc.returncode == 130, proc.stderr
        assert "rerun the same command to continue" in proc.stderr
        assert "Traceback" not in proc.stderr
    else:
        assert proc.returncode == -signal.SIGKILL
        time.sleep(0.5)  # its worker notices within 0.2 s and stops at a safe point
    kept = {t["name"]: (out / t["name"] / "model.h5").stat().st_mtime_ns
            for t in manifest(out)["trials"] if t["name"] in done}
    again = subprocess.run([sys.executable, "-m", "dnnspec"] + cli_args(out), capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, again.stderr
    ended = next(line for line in again.stdout.splitlines() if "already ended, kept" in line)
    assert int(ended.split("; ")[1].split()[0]) >= len(done)
    ran = [line.split()[1] for line in again.stdout.splitlines() if line.startswith("[")]  # "[1/4] trial-003 done ..."
    assert ran and not set(ran) & done  # finished trials are not run again
    assert {n: (out / n / "model.h5").stat().st_mtime_ns for n in kept} == kept
    # every trial ends as it does in an uninterrupted sweep (a resumed trial included)
    ref = {t["name"]: t["metrics"] for t in manifest(baseline[0])["trials"]}
    assert {t["name"]: t["metrics"] for t in manifest(out)["trials"]} == ref


# ---------------------------------------------------------------- coarse to fine
def test_refine_narrows_around_the_best_of_the_first_round(tmp_path):
    d = SweepDef(QUICKSTART, base=["train.epochs=1", "data.samples=600"],
                 axes=[parse_sample("train.optimizer.lr=loguniform(1e-4,1e-1)")], trials=3, refine=1, seed=1)
    lines = []
    run_sweep(d, tmp_path / "r", workers=2, log=lines.append)
    doc = manifest(tmp_path / "r")
    assert [t["round"] for t in doc["trials"]] == [1, 1, 1, 2, 2, 2]
    first = [t for t in doc["trials"] if t["round"] == 1]
    best = max(first, key=lambda t: (t["metrics"]["val_accuracy"], -t["index"]))
    lo, hi = doc["rounds"][1]["axes"][0]["low"], doc["rounds"][1]["axes"][0]["high"]
    assert 1e-4 <= lo <= float(best["values"]["train.optimizer.lr"]) <= hi <= 1e-1
    assert (hi / lo) <= (1e-1 / 1e-4) ** 0.25 * 1.0001
    assert all(lo <= float(t["values"]["train.optimizer.lr"]) <= hi for t in doc["trials"] if t["round"] == 2)
    assert any(line.startswith(f"round 2: around {best['name']}") for line in lines)


# ---------------------------------------------------------------- report and ensemble
def test_report_table_csv_json(baseline):
    out, summary = baseline
    runner = CliRunner()
    table = runner.invoke(main, ["sweep-report", str(out)])
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split()[:5] == ["trial", "status", "lr", "batch", "val_accuracy"]
    assert lines[1].split()[0] == summary["best"]["trial"]
    data = json.loads(runner.invoke(main, ["sweep-report", str(out), "--json"]).stdout)
    values = [t["val_accuracy"] for t in data["trials"]]
    assert values == sorted(values, reverse=True) and data["swept"] == ["lr", "batch"]
    csv = runner.invoke(main, ["sweep-report", str(out), "--csv"]).stdout.splitlines()
    assert csv[0].startswith("trial,status,lr,batch,val_accuracy") and len(csv) == 7


def test_report_plots(baseline, tmp_path):
    pytest.importorskip("matplotlib")
    out, _ = baseline
    result = CliRunner().invoke(main, ["sweep-report", str(out), "--plot", str(tmp_path / "plots")])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert names == ["learning_curves.png", "val_accuracy_vs_batch.png", "val_accuracy_vs_lr.png"]
    assert all((tmp_path / "plots" / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in names)


def test_ensemble_prints_what_eval_prints(baseline, tmp_path):
    out, _ = baseline
    runner = CliRunner()
    result = runner.invoke(main, ["ensemble", str(out), "--top", "3", "--json", "-o", str(tmp_path / "e.json")])
    assert result.exit_code == 0, result.output
    ens = json.loads(result.stdout)
    doc = json.loads((tmp_path / "e.json").read_text())
    assert doc["format"] == "dnnspec-ensemble" and len(doc["checkpoints"]) == 3
    ranked = json.loads(runner.invoke(main, ["sweep-report", str(out), "--json"]).stdout)["trials"]
    assert [m["trial"] for m in doc["members"]] == [t["trial"] for t in ranked[:3]]
    from dnnspec.sweep.ensemble import expand_checkpoints

    ckpts = expand_checkpoints([str(tmp_path / "e.json")])
    assert all(Path(c).resolve() == (out / t["checkpoint"]).resolve() for c, t in zip(ckpts, ranked))
    args = ["eval", QUICKSTART, "--set", "data.samples=600", "--json"]
    for c in ckpts:
        args += ["-c", c]
    evaluated = runner.invoke(main, args)
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout) == ens
    via_manifest = runner.invoke(main, ["eval", QUICKSTART, "--set", "data.samples=600", "--json",
                                        "-c", str(tmp_path / "e.json")])  # eval takes the manifest itself
    assert via_manifest.exit_code == 0, via_manifest.output
    assert json.loads(via_manifest.stdout) == ens
    text = runner.invoke(main, ["ensemble", str(out), "--top", "3", "--split", "test"])
    assert text.exit_code == 0, text.output
    assert "test  accuracy  ensemble" in text.stdout and f"best single ({ranked[0]['trial']})" in text.stdout
    assert (out / "ensemble.json").is_file()
