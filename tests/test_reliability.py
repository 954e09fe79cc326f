"""Never lose a user's file (issue 14): foreign files are never replaced, outputs are checked
before training, a full disk and a read-only folder are clean errors, Ctrl-C and SIGKILL at
random moments leave a resumable checkpoint, two runs never write one checkpoint.

Real subprocesses, real files, real (tmpfs) file systems where the machine allows mounting.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import dnnspec
from dnnspec import fileio

SPEC = """
model m {{
    input x[2]
    scope dnn {{
        dense hidden1(64, activation=relu)
        batchnorm bn1
        dense hidden2(64, activation=relu)
        dense outputs(3)
    }}
}}
data d = spirals(samples={samples})
train {{
    optimizer adam(lr=0.01)
    epochs {epochs}
    batch 16
    seed 1
    validation 0.1
    checkpoint "{ckpt}" every_steps=7
}}
"""


def dnnspec_cli(*args, cwd, timeout=120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dnnspec", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, **kw)


def clean(proc: subprocess.CompletedProcess) -> None:
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out and "internal error" not in out and "Exception ignored" not in out, out


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "m.dnn"
    path.write_text(SPEC.format(samples=600, epochs=2, ckpt="ck/m.h5"))
    return path


# ---------------------------------------------------------------- 1. foreign files are never replaced
def test_a_run_refuses_to_replace_its_training_data(tmp_path, spec):
    data = tmp_path / "data" / "mydata.npz"
    data.parent.mkdir()
    np.savez(data, x=np.zeros((4, 2)), y=np.zeros(4))
    before = data.read_bytes()
    for target in ("data/mydata.npz", "notes.txt"):
        (tmp_path / "notes.txt").write_text("my notes\n")
        proc = dnnspec_cli("run", spec, "-q", "--set", f'train.checkpoint="{target}"', cwd=tmp_path)
        clean(proc)
        assert proc.returncode == 1 and target in proc.stderr and "not a checkpoint dnnspec wrote" in proc.stderr
        assert "epoch" not in proc.stdout  # refused before any training
    assert data.read_bytes() == before and (tmp_path / "notes.txt").read_text() == "my notes\n"


def test_a_run_refuses_a_foreign_metrics_log(tmp_path, spec):
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "m.jsonl").write_text("not a log of mine\n")
    proc = dnnspec_cli("run", spec, "-q", cwd=tmp_path)
    assert proc.returncode == 1 and "m.jsonl" in proc.stderr
    assert (tmp_path / "ck" / "m.jsonl").read_text() == "not a log of mine\n"


def test_a_run_replaces_its_own_checkpoint_and_appends_its_log(tmp_path, spec):
    for _ in range(2):
        proc = dnnspec_cli("run", spec, "-q", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in (tmp_path / "ck" / "m.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and len({r["run"] for r in rows}) >= 1


def test_commands_with_outputs_refuse_existing_files(tmp_path, spec):
    assert dnnspec_cli("run", spec, "-q", cwd=tmp_path).returncode == 0
    ck = tmp_path / "ck" / "m.h5"
    spec_text = spec.read_text()
    attempts = [
        ("ckpt", "extract", ck, "dnn/hidden1", "-o", spec),
        ("ckpt", "extract", ck, "dnn/hidden1", "-o", spec, "--force"),  # --force never replaces a spec
        ("ckpt", "rename", ck, "--from", "dnn/", "--to", "x/", "-o", spec),
        ("ckpt", "merge", ck, ck, "-o", spec, "--force"),
        ("ckpt", "export", ck, "--to", "npz", "-o", spec),
        ("ckpt", "export", ck, "--to", "onnx", "-o", spec, "--force"),
    ]
    for args in attempts:
        proc = dnnspec_cli(*args, cwd=tmp_path)
        clean(proc)
        assert proc.returncode == 1 and str(spec) in proc.stderr, (args, proc.stderr)
    assert spec.read_text() == spec_text
    # an existing file of the same kind: refused without --force, replaced with it
    out = tmp_path / "w.npz"
    assert dnnspec_cli("ckpt", "export", ck, "-o", out, cwd=tmp_path).returncode == 0
    proc = dnnspec_cli("ckpt", "export", ck, "-o", out, cwd=tmp_path)
    assert proc.returncode == 1 and "--force" in proc.stderr
    assert dnnspec_cli("ckpt", "export", ck, "-o", out, "--force", cwd=tmp_path).returncode == 0
    lower = tmp_path / "lower.h5"
    assert dnnspec_cli("ckpt", "extract", ck, "dnn/hidden1", "-o", lower, cwd=tmp_path).returncode == 0
    assert dnnspec_cli("ckpt", "extract", ck, "dnn/hidden1", "-o", lower, cwd=tmp_path).returncode == 1
    assert dnnspec_cli("ckpt", "extract", ck, "dnn/hidden1", "-o", lower, "--force", cwd=tmp_path).returncode == 0


def test_import_refuses_to_replace_a_spec(tmp_path, spec):
    assert dnnspec_cli("run", spec, "-q", cwd=tmp_path).returncode == 0
    weights = tmp_path / "w.npz"
    assert dnnspec_cli("ckpt", "export", tmp_path / "ck" / "m.h5", "-o", weights, cwd=tmp_path).returncode == 0
    other = tmp_path / "other.dnn"
    other.write_text(spec.read_text())
    for extra in ((), ("--force",)):
        proc = dnnspec_cli("ckpt", "import", weights, "--spec", spec, "-o", other, *extra, cwd=tmp_path)
        clean(proc)
        assert proc.returncode == 1 and "other.dnn" in proc.stderr
    assert other.read_text() == spec.read_text()


# ---------------------------------------------------------------- 2. full disks, read-only folders
@pytest.fixture
def small_fs(tmp_path):
    """A real 1.5 MB tmpfs (root only); skipped where the machine does not allow mounting."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1536k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small file system here (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_disk_full_while_saving_is_a_clean_error(tmp_path, small_fs):
    # ~0.3 MB per checkpoint: the first saves fit, then the disk fills up
    spec = tmp_path / "big.dnn"
    spec.write_text(SPEC.format(samples=600, epochs=30, ckpt=f"{small_fs}/m.h5").replace("(64", "(256")
                    .replace("every_steps=7", "best=val_accuracy"))
    filler = small_fs / "filler.bin"
    proc = dnnspec_cli("run", spec, "-q", cwd=tmp_path)
    clean(proc)
    if proc.returncode == 0:  # the checkpoints fit: fill the disk and go again
        filler.write_bytes(b"\0" * (os.statvfs(small_fs).f_bavail * os.statvfs(small_fs).f_frsize - 200_000))
        proc = dnnspec_cli("run", spec, "-q", "--set", "train.seed=2", cwd=tmp_path)
        clean(proc)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "disk full while writing" in proc.stderr and "MB" in proc.stderr
    assert [p.name for p in small_fs.iterdir() if p.name.endswith(".tmp")] == []
    saved = [p for p in (small_fs / "m.h5", small_fs / "m.last.h5") if p.exists()]
    for path in saved:  # whatever was saved before is whole
        dnnspec.load_checkpoint(path)
    log = small_fs / "m.jsonl"
    if log.exists() and saved:  # the log lists no epoch beyond the last state on disk
        last = dnnspec.load_checkpoint(small_fs / "m.last.h5").history
        logged = [json.loads(line)["epoch"] for line in log.read_text().splitlines()]
        assert max(logged) <= len(last) + 0


def test_a_read_only_checkpoint_folder_is_found_before_training(tmp_path, small_fs):
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    spec = tmp_path / "ro.dnn"
    spec.write_text(SPEC.format(samples=600, epochs=2, ckpt=f"{small_fs}/sub/m.h5"))
    proc = dnnspec_cli("run", spec, "-q", cwd=tmp_path)
    clean(proc)
    assert proc.returncode == 1 and "not writable" in proc.stderr and "epoch" not in proc.stdout


def test_write_errors_name_the_file(tmp_path, monkeypatch):
    import errno

    target = tmp_path / "f.h5"

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio, "_fsync_file", full)
    with pytest.raises(fileio.OutputError, match=r"disk full while writing .*f.h5 \(needs ~0.1 MB\)"):
        fileio.write_bytes(target, b"x" * 1000)
    assert not target.exists() and list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- 3. Ctrl-C at any moment
def interrupt_run(tmp_path: Path, delay: float, sig=signal.SIGINT, twice: bool = False, after: Path | None = None):
    """Run m.dnn and signal it `delay` seconds after start (or after the file `after` appears)."""
    proc = subprocess.Popen([sys.executable, "-m", "dnnspec", "run", "m.dnn", "-q"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while after is not None and not after.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(delay)
    proc.send_signal(sig)
    if twice:
        time.sleep(0.002)
        proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def check_interrupted(tmp_path: Path, code: int, out: str, err: str) -> None:
    assert "Traceback" not in out + err and "internal error" not in out + err, err
    if code == 0:  # the run had finished
        return
    assert code == 130, (code, err)
    ck = tmp_path / "ck" / "m.h5"
    temps = lambda: [p.name for p in (tmp_path / "ck").glob(".*.tmp")] if (tmp_path / "ck").exists() else []  # noqa
    if "interrupted again" not in err:  # one signal: the run stopped at a safe point, nothing left over
        assert temps() == [], err
    if ck.exists():  # the message names the checkpoint to continue from, which is whole and resumes
        # (a second signal that came after the run had stopped and saved, while it left, once met
        # Python's own handler: a bare "interrupted" instead of this message)
        assert "--resume ck/m.h5" in err, err
        dnnspec.load_checkpoint(ck)
        resumed = dnnspec_cli("run", "m.dnn", "-q", "--resume", ck, "--json", cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr
        assert temps() == []  # a second signal's abandoned temporary file went at the next save


def sigint_trials(tmp_path, n, seed):
    rng = random.Random(seed)
    # long enough (about 3.5 s of training on an idle machine) that a signal within 1.5 s of the
    # start lands inside training even when the machine is fast
    (tmp_path / "m.dnn").write_text(SPEC.format(samples=1500, epochs=12, ckpt="ck/m.h5"))
    codes = []
    for _ in range(n):
        for p in (tmp_path / "ck").glob("*") if (tmp_path / "ck").exists() else []:
            p.unlink()
        # moments from when the run has begun (it holds its checkpoint's lock) to past its end; a
        # signal during the interpreter's own start-up, before any dnnspec code runs, is Python's
        code, out, err = interrupt_run(tmp_path, rng.uniform(0.0, 1.5), twice=rng.random() < 0.3,
                                       after=tmp_path / "ck" / ".m.h5.owner")
        check_interrupted(tmp_path, code, out, err)
        codes.append(code)
    return codes


def test_sigint_at_random_moments_ends_cleanly_and_resumes(tmp_path):
    codes = sigint_trials(tmp_path, 5, seed=1)
    assert codes.count(130) >= 3, codes  # most interrupts land inside training


@pytest.mark.slow
def test_sigint_many_random_moments(tmp_path):
    codes = sigint_trials(tmp_path, 30, seed=2)
    assert codes.count(130) >= 20, codes


@pytest.mark.parametrize("after_stop", [None, signal.SIG_IGN], ids=["library", "cli"])
def test_a_signal_after_the_run_stopped_meets_the_handler_the_caller_chose(after_stop):
    """Once a signal has stopped a run, the CLI ignores further ones on its way out (Python's own
    handler would raise KeyboardInterrupt there, replacing the message that names the checkpoint);
    a library caller gets its own handlers back; a run that no signal stopped always does."""
    from dnnspec.session import Interrupts

    before = signal.getsignal(signal.SIGINT)
    try:
        with Interrupts(after_stop=after_stop) as signals:
            os.kill(os.getpid(), signal.SIGINT)  # the first signal: the run is asked to stop
            time.sleep(0.01)  # the handler runs in the main thread between bytecodes
        assert signals.received == signal.SIGINT
        assert signal.getsignal(signal.SIGINT) is (before if after_stop is None else after_stop)
        signal.signal(signal.SIGINT, before)
        with Interrupts(after_stop=after_stop):
            pass
        assert signal.getsignal(signal.SIGINT) is before
    finally:
        signal.signal(signal.SIGINT, before)


def test_an_interrupted_run_resumes_exactly(tmp_path):
    """The state saved at the interruption (mid-epoch) continues bit for bit."""
    (tmp_path / "m.dnn").write_text(SPEC.format(samples=1500, epochs=3, ckpt="ck/m.h5"))
    code, out, err = interrupt_run(tmp_path, 0.3, after=tmp_path / "ck" / "m.h5")  # once training saves
    if code != 130:
        pytest.skip("the run finished before the signal")
    assert dnnspec_cli("run", "m.dnn", "-q", "--resume", "ck/m.h5", cwd=tmp_path).returncode == 0
    whole = tmp_path / "whole"
    whole.mkdir()
    (whole / "m.dnn").write_text((tmp_path / "m.dnn").read_text())
    assert dnnspec_cli("run", "m.dnn", "-q", cwd=whole).returncode == 0
    a, b = dnnspec.load_checkpoint(tmp_path / "ck" / "m.h5"), dnnspec.load_checkpoint(whole / "ck" / "m.h5")
    for n, v in a.variables.items():
        np.testing.assert_array_equal(v, b.variables[n])


# ---------------------------------------------------------------- 4. SIGKILL during saves
def test_sigkill_never_loses_the_checkpoint_and_stale_temps_are_cleaned(tmp_path):
    rng = random.Random(3)
    (tmp_path / "m.dnn").write_text(SPEC.format(samples=1500, epochs=4, ckpt="ck/m.h5"))
    for _ in range(4):
        code, out, err = interrupt_run(tmp_path, rng.uniform(0.0, 1.5), sig=signal.SIGKILL,
                                       after=tmp_path / "ck" / ".m.h5.owner")
        ck = tmp_path / "ck" / "m.h5"
        if ck.exists():
            dnnspec.load_checkpoint(ck)
    # a temporary file of a dead writer (as a kill mid-save leaves) is removed at the next save
    dead = tmp_path / "ck" / ".m.h5.999999.0123abcd.tmp"
    dead.parent.mkdir(exist_ok=True)
    dead.write_bytes(b"half a checkpoint")
    foreign = tmp_path / "ck" / ".m.h5.keep.tmp"  # not dnnspec's pattern: left alone
    foreign.write_bytes(b"someone else's")
    proc = dnnspec_cli("run", "m.dnn", "-q", "--set", "train.epochs=1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not dead.exists() and foreign.exists()
    assert [p.name for p in (tmp_path / "ck").glob(".m.h5.*.tmp")] == [foreign.name]


def test_stale_temp_rules(tmp_path):
    target = tmp_path / "c.h5"
    mine = tmp_path / f".c.h5.{os.getpid()}.0123abcd.tmp"  # this process: a save in progress
    alive_other = tmp_path / f".c.h5.{os.getppid()}.0123abcd.tmp"  # a live process: kept while young
    dead = tmp_path / ".c.h5.999999.0123abcd.tmp"
    old_style = tmp_path / ".c.h5.k2j3h4g5.tmp"  # mkstemp's names, from dnnspec 0.1.0
    other_target = tmp_path / ".d.h5.999999.0123abcd.tmp"
    for p in (mine, alive_other, dead, old_style, other_target):
        p.write_bytes(b"x")
    removed = fileio.clean_stale(target)
    assert set(removed) == {dead}
    past = time.time() - 2 * fileio.STALE_SECONDS
    os.utime(old_style, (past, past))
    os.utime(alive_other, (past, past))
    assert set(fileio.clean_stale(target)) == {old_style, alive_other}
    assert mine.exists() and other_target.exists()


# ---------------------------------------------------------------- 5. one writer per checkpoint
def test_a_second_run_on_the_same_checkpoint_is_refused(tmp_path):
    (tmp_path / "m.dnn").write_text(SPEC.format(samples=3000, epochs=60, ckpt="ck/m.h5"))  # outlasts the second
    first = subprocess.Popen([sys.executable, "-m", "dnnspec", "run", "m.dnn", "-q"], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        while not (tmp_path / "ck" / ".m.h5.owner").exists() and time.time() < deadline:
            time.sleep(0.05)
        second = dnnspec_cli("run", "m.dnn", "-q", cwd=tmp_path)
        clean(second)
        assert second.returncode == 1
        assert "being written by another dnnspec run" in second.stderr and f"pid {first.pid}" in second.stderr
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
    log = tmp_path / "ck" / "m.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    assert len({r["run"] for r in rows}) <= 1  # only the first run wrote the log
    third = dnnspec_cli("run", "m.dnn", "-q", "--set", "train.epochs=1", cwd=tmp_path)
    assert third.returncode == 0, third.stderr  # the lock went with the first run


FEATURES = {  # the issue-16 features whose random draws (and phase) a resume must continue exactly
    "augmentation": ('    dense hidden(32, activation=elu)\n',
                     ', image=[6, 5], augment=[shift(1), rotate(15), noise(0.1)]', ""),
    "stochastic_depth": ('    dense hidden(32, activation=relu)\n    repeat 3 {{\n        residual block(survival=0.5) {{\n'
                         '            dense(32, activation=relu)\n            dense(32)\n        }}\n    }}\n', "", ""),
    "pretraining": ('    dense hidden1(32, activation=sigmoid)\n    dense hidden2(32, activation=sigmoid)\n', "",
                    'pretrain "hidden" method=rbm(k=2) epochs=40 batch=10 lr=0.05 momentum=0.5\n'),
}
FEATURE_SPEC = """
model m {{
    input x[30]
{layers}    dense outputs(3)
}}
data d = npz(path="img.npz", validation=100{data})
train {{
    epochs 40
    batch 16
    seed 5
    checkpoint "ck/m.h5"
}}
{extra}"""


@pytest.mark.slow
@pytest.mark.parametrize("feature", list(FEATURES))
def test_a_run_interrupted_by_sigint_resumes_exactly_with_each_new_feature(tmp_path, feature):
    """Augmentation, stochastic depth and pretraining each draw from streams of their own (and
    pretraining has a phase): a real SIGINT to a real process, then --resume, gives the weights of
    an uninterrupted run bit for bit."""
    layers, data, extra = FEATURES[feature]
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 1600)
    x = (rng.random((1600, 6, 5)) * 0.5 + y[:, None, None] * 0.25).astype(np.float32)
    spec = FEATURE_SPEC.format(layers=layers.format(), data=data, extra=extra)
    for d in (tmp_path, tmp_path / "whole"):
        d.mkdir(exist_ok=True)
        np.savez(d / "img.npz", x_train=x, y_train=y, x_test=x[:50], y_test=y[:50])
        (d / "m.dnn").write_text(spec)
    code, out, err = interrupt_run(tmp_path, 0.05, after=tmp_path / "ck" / "m.h5")  # once it has saved
    if code != 130:
        pytest.skip("the run finished before the signal")
    assert "Traceback" not in err and "--resume ck/m.h5" in err, err
    assert ("interrupted at pretraining" in err) == (feature == "pretraining"), err
    resumed = dnnspec_cli("run", "m.dnn", "-q", "--resume", "ck/m.h5", cwd=tmp_path)
    clean(resumed)
    assert resumed.returncode == 0, resumed.stderr
    whole = dnnspec_cli("run", "m.dnn", "-q", cwd=tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    a = dnnspec.load_checkpoint(tmp_path / "ck" / "m.h5")
    b = dnnspec.load_checkpoint(tmp_path / "whole" / "ck" / "m.h5")
    assert a.step == b.step
    for n, v in b.variables.items():
        np.testing.assert_array_equal(a.variables[n], v, err_msg=n)


# ---------------------------------------------------------------- 12-14. resume and outputs tell the truth
def test_resume_refuses_another_model_and_warns_on_settings(tmp_path, spec):
    assert dnnspec_cli("run", spec, "-q", cwd=tmp_path).returncode == 0
    other = tmp_path / "other.dnn"
    other.write_text(spec.read_text().replace("hidden2(64", "hidden2(32"))
    proc = dnnspec_cli("run", other, "-q", "--resume", "ck/m.h5", "--set", 'train.checkpoint="ck/o.h5"',
                       cwd=tmp_path)
    assert proc.returncode == 1 and "different model" in proc.stderr and "dnn/hidden2/kernel" in proc.stderr
    proc = dnnspec_cli("run", spec, "-q", "--resume", "ck/m.h5", "--set", "train.optimizer=sgd", cwd=tmp_path)
    assert proc.returncode == 1 and "trained with adam" in proc.stderr
    proc = dnnspec_cli("run", spec, "--resume", "ck/m.h5", "--set", "train.epochs=3", cwd=tmp_path)
    assert proc.returncode == 0 and "settings that differ" in proc.stdout and "epochs 3" in proc.stdout


def test_resuming_a_finished_run_says_so_and_reports_existing_files(tmp_path, spec):
    spec.write_text(spec.read_text().replace("every_steps=7", "best=val_accuracy"))
    assert dnnspec_cli("run", spec, "-q", cwd=tmp_path).returncode == 0
    proc = dnnspec_cli("run", spec, "--json", "--resume", "ck/m.last.h5", "--set", 'train.checkpoint="ck/n.h5"',
                       cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "nothing to train" in proc.stderr
    result = json.loads(proc.stdout)
    assert result["checkpoint"] is None or Path(tmp_path / result["checkpoint"]).is_file()


def test_json_says_which_weights_each_number_comes_from(tmp_path, spec):
    spec.write_text(spec.read_text().replace("every_steps=7", "best=val_accuracy").replace("epochs 2", "epochs 4"))
    proc = dnnspec_cli("run", spec, "--json", cwd=tmp_path)
    r = json.loads(proc.stdout)
    assert r["weights"] == "best checkpoint" and r["weights_epoch"] == r["best_epoch"]
    best = dnnspec.load_checkpoint(tmp_path / "ck" / "m.h5")
    assert len(best.history) == r["best_epoch"]
    assert r["final_weights"]["val_accuracy"] == r["val_accuracy"]
    assert r["last_epoch"] == 4


def test_done_line_grammar_and_early_stopping(tmp_path, spec):
    proc = dnnspec_cli("run", spec, "--set", "train.epochs=1", cwd=tmp_path)
    assert "done: 1 epoch in" in proc.stdout
    spec.write_text(spec.read_text().replace("every_steps=7", "every_steps=7\n    early_stopping monitor=val_loss "
                                                             "patience=0 min_delta=10"))
    proc = dnnspec_cli("run", spec, "--set", "train.epochs=5", "--set", 'train.checkpoint="ck/e.h5"', cwd=tmp_path)
    assert "stopped early at epoch" in proc.stdout, proc.stdout


def test_h5_marker_of_dnnspec_checkpoints(tmp_path, spec):
    from dnnspec.ckpt import hdf5

    assert dnnspec_cli("run", spec, "-q", cwd=tmp_path).returncode == 0
    assert hdf5.is_checkpoint(tmp_path / "ck" / "m.h5")
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = np.zeros(3)
    assert not hdf5.is_checkpoint(tmp_path / "plain.h5") and not hdf5.is_checkpoint(spec)


def test_results_render_keeps_the_machine_recorded_with_the_data():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    try:
        from benchmarks import results
    finally:
        sys.path.pop(0)
    data = {"a": {"date": "2026-01-01 10:00", "cpu": {"model": "Some Other CPU", "logical_cpus": 64}},
            "b": {"date": "2026-01-02 10:00"}}
    line = results._machine(data)
    assert "Some Other CPU (64 logical CPUs)" in line and "not recorded" in line


def test_no_data_is_said_before_a_huge_model_is_allocated(tmp_path):
    spec = tmp_path / "big.dnn"
    spec.write_text("model m {\n    input x[20000]\n    dense(20000)\n}\n")  # 1.6 GB of float32 weights
    start = time.perf_counter()
    proc = dnnspec_cli("run", spec, "-q", cwd=tmp_path)
    clean(proc)
    assert proc.returncode == 1 and "no `data` declaration" in proc.stderr
    assert time.perf_counter() - start < 20
