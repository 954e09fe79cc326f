"""Checkpoint tools (dnnspec.ckpt.tools) and the `dnnspec ckpt` commands, on real HDF5 files."""

from __future__ import annotations

import re

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import dnnspec
from dnnspec.ckpt import hdf5, tools
from dnnspec.ckpt.tools import PatternError
from dnnspec.cli import main
from dnnspec.errors import CheckpointError, UserError

SPEC = """
model tiny {
    input x[4]
    scope dnn {
        dense hidden1(8, activation=relu)
        batchnorm bn1(momentum=0.9)
        dense hidden2(8, activation=relu)
        dense outputs(3)
    }
}
collection important = [x, dnn/hidden1, dnn/outputs/kernel, accuracy]
train {
    optimizer adam(lr=0.01)
    epochs 1
    batch 16
    seed 1
}
"""

NAMES = ["dnn/hidden1/kernel", "dnn/hidden1/bias", "dnn/bn1/gamma", "dnn/bn1/beta", "dnn/bn1/moving_mean",
         "dnn/bn1/moving_variance", "dnn/hidden2/kernel", "dnn/hidden2/bias", "dnn/outputs/kernel",
         "dnn/outputs/bias"]

# a second model: the lower layers under another scope, a new head of other widths
OTHER = """
model other {
    input x[4]
    scope encoder {
        dense hidden1(8, activation=relu)
        batchnorm bn1(momentum=0.9)
    }
    scope head {
        dense hidden2(5, activation=relu)
        dense outputs(2)
    }
}
train {
    optimizer adam(lr=0.01)
    seed 2
}
"""


def data(n=32, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)).astype(np.float32), rng.integers(0, classes, n)


def trained(path, epochs=1, spec=SPEC, seed=0):
    model = dnnspec.compile_text(spec)
    model.fit(*data(seed=seed), epochs=epochs)
    model.save(path)
    return model


@pytest.fixture
def a(tmp_path):
    trained(tmp_path / "a.h5")
    return tmp_path / "a.h5"


@pytest.fixture
def b(tmp_path):
    """Same spec, trained further: every trainable variable differs from a's."""
    trained(tmp_path / "b.h5", epochs=3)
    return tmp_path / "b.h5"


def cli(*args):
    result = CliRunner().invoke(main, [str(x) for x in args])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def flip_byte(path, dataset):
    """Damage one byte of a chunked dataset's stored data."""
    with h5py.File(path) as f:
        offset = f[dataset].id.get_chunk_info(0).byte_offset
    raw = bytearray(path.read_bytes())
    raw[offset + 3] ^= 0xFF
    path.write_bytes(bytes(raw))


# ---------------------------------------------------------------- select / map_names
def test_select_matches_from_the_start():
    names = [*NAMES, "encoder/dnn/hidden1/kernel"]
    assert tools.select(names, "dnn/hidden[12]") == [n for n in NAMES if "hidden" in n]
    assert tools.select(names, "dnn/hidden1/kernel$") == ["dnn/hidden1/kernel"]
    assert tools.select(names, "") == names
    assert tools.select(names, re.compile("encoder/")) == ["encoder/dnn/hidden1/kernel"]
    assert tools.select(names, "nope", allow_empty=True) == []


def test_select_errors_are_user_errors_listing_names():
    with pytest.raises(PatternError, match=r"invalid pattern 'dnn/\(': missing \)") as e:
        tools.select(NAMES, "dnn/(")
    assert isinstance(e.value, UserError)
    with pytest.raises(PatternError, match="pattern 'hidden1' matches no variable in x.h5; variables: "
                                           "dnn/hidden1/kernel, dnn/hidden1/bias, dnn/bn1/gamma"):
        tools.select(NAMES, "hidden1", where="x.h5")


def test_map_names_scope_and_prefix_rename():
    got = tools.map_names(NAMES, scope="dnn/hidden[12]", rename_from="dnn/", rename_to="encoder/")
    want = {"encoder/" + n[4:]: n for n in NAMES if n.startswith(("dnn/hidden1", "dnn/hidden2"))}
    assert got == want
    assert tools.map_names(NAMES) == {n: n for n in NAMES}
    # a rename pattern that does not match a name leaves it alone; groups work in the replacement
    got = tools.map_names(NAMES, rename_from=r"dnn/hidden(\d)", rename_to=r"enc/layer\1")
    assert got["enc/layer2/bias"] == "dnn/hidden2/bias" and got["dnn/bn1/gamma"] == "dnn/bn1/gamma"
    # anchored at the start: an inner "hidden1" is not replaced
    assert tools.map_names(["a/hidden1/k"], rename_from="hidden1", rename_to="h") == {"a/hidden1/k": "a/hidden1/k"}


def test_map_names_assignment_map():
    m = tools.map_names(NAMES, mapping={"dnn/": "base/", "dnn/hidden1/": "enc/h1/",
                                        "dnn/outputs/bias": "head/b"})
    assert m["enc/h1/kernel"] == "dnn/hidden1/kernel"  # the longest scope wins
    assert m["base/bn1/gamma"] == "dnn/bn1/gamma"
    assert m["head/b"] == "dnn/outputs/bias" and "base/outputs/bias" not in m
    assert len(m) == len(NAMES)
    only = tools.map_names(NAMES, mapping={"dnn/bn1/": "norm"})  # a missing "/" on the value is added
    assert set(only) == {"norm/" + n[8:] for n in NAMES if n.startswith("dnn/bn1/")}


def test_map_names_errors():
    with pytest.raises(PatternError, match="matches no variable in the source checkpoint; variables: dnn/hidden1"):
        tools.map_names(NAMES, scope="encoder/")
    with pytest.raises(PatternError, match="invalid pattern 'dnn/hidden\\['"):
        tools.map_names(NAMES, scope="dnn/hidden[")
    with pytest.raises(PatternError, match="invalid replacement"):
        tools.map_names(NAMES, rename_from="dnn/", rename_to=r"\2")
    with pytest.raises(PatternError, match="assignment map entries match no variable.*: enc/"):
        tools.map_names(NAMES, mapping={"enc/": "x/", "dnn/": "y/"})
    with pytest.raises(CheckpointError, match="either a rename"):
        tools.map_names(NAMES, rename_from="dnn/", rename_to="x/", mapping={"dnn/": "y/"})
    with pytest.raises(CheckpointError, match="both dnn/hidden1/kernel and dnn/hidden2/kernel would be named "
                                              "layer/kernel"):
        tools.map_names(NAMES, rename_from=r"dnn/hidden\d", rename_to="layer")


# ---------------------------------------------------------------- plan_reuse / compat
def test_plan_reuse_report(a):
    src = hdf5.load(a)
    target = dnnspec.compile_text(OTHER)
    shapes = {n: i.shape for n, i in target.plan.infos.items()}
    r = tools.plan_reuse(src, shapes, scope="dnn/(hidden1|bn1)/", rename_from="dnn/", rename_to="encoder/",
                         source_path=str(a))
    want_loaded = {n.replace("dnn/", "encoder/"): n for n in NAMES[:6]}
    assert r.loaded == want_loaded
    assert r.left_at_init == [n for n in shapes if n.startswith("head/")]
    assert r.unused == NAMES[6:]
    assert r.conflicts == [] and r.ok and r.no_target == {}
    text = r.format()
    assert f"reuse {a} (scope 'dnn/(hidden1|bn1)/', from 'dnn/' to 'encoder/'):" in text
    assert "loaded (6):" in text and "encoder/hidden1/kernel       (4, 8)  <- dnn/hidden1/kernel" in text
    assert "left at initializer (4): head/hidden2/kernel, head/hidden2/bias" in text
    assert "unused in the checkpoint (4): dnn/hidden2/kernel" in text
    r.raise_on_conflicts()  # none: no error
    r.apply(src, target.variables)
    for t, s in want_loaded.items():
        assert target.variables[t].tobytes() == src.variables[s].value.tobytes()


def test_plan_reuse_shape_conflict_names_both_shapes(a):
    src = hdf5.load(a)
    target = dnnspec.compile_text(OTHER)
    # rename everything to the target's scopes: head/hidden2 is (8, 5) in the model, (8, 8) in the file
    r = tools.plan_reuse(src, tools.target_shapes(target), mapping={"dnn/hidden1/": "encoder/hidden1/",
                                                                    "dnn/bn1/": "encoder/bn1/",
                                                                    "dnn/hidden2/": "head/hidden2/"})
    assert [c.target for c in r.conflicts] == ["head/hidden2/kernel", "head/hidden2/bias"]
    assert r.conflicts[0] == ("head/hidden2/kernel", "dnn/hidden2/kernel", (8, 5), (8, 8))
    assert "dnn/hidden2/kernel" not in r.unused and "head/hidden2/kernel" not in r.left_at_init
    assert "head/hidden2/kernel (8, 5) in the model <- dnn/hidden2/kernel (8, 8) in the checkpoint" in r.format()
    with pytest.raises(CheckpointError, match=r"a.h5: cannot reuse: variable head/hidden2/kernel of the model has "
                                              r"shape \(8, 5\) but dnn/hidden2/kernel in the checkpoint has shape "
                                              r"\(8, 8\); variable head/hidden2/bias"):
        r.raise_on_conflicts(str(a))
    with pytest.raises(CheckpointError, match="cannot reuse"):
        r.apply(src, target.variables)


def test_compat_accepts_model_plan_infos_or_shapes(a):
    src = hdf5.load(a)
    model = dnnspec.compile_text(SPEC)
    shapes = {n: tuple(v.shape) for n, v in model.variables.items()}
    reports = [tools.compat(x, src) for x in (model, model.plan, model.plan.infos, shapes)]
    assert all(r.loaded == {n: n for n in NAMES} and not r.left_at_init and not r.unused for r in reports)
    nothing = tools.compat(shapes, src, rename_from="dnn/", rename_to="enc/")
    assert not nothing.loaded and nothing.no_target["dnn/hidden1/kernel"] == "enc/hidden1/kernel"
    with pytest.raises(CheckpointError, match="fills no variable of the model, selected names without a variable "
                                              "in the model: dnn/hidden1/kernel -> enc/hidden1/kernel"):
        nothing.raise_if_empty()


# ---------------------------------------------------------------- diff
def test_diff_reports_changes_with_max_abs_difference(a, b):
    ca, cb = hdf5.load(a), hdf5.load(b)
    rows = {r.name: r for r in tools.diff(ca, cb)}
    assert list(rows) == NAMES
    for n in NAMES:
        va, vb = ca.variables[n].value, cb.variables[n].value
        want = float(np.max(np.abs(va.astype(np.float64) - vb.astype(np.float64))))
        assert rows[n].max_abs == want
        assert rows[n].status == ("same" if want == 0 else "changed") and rows[n].equal == (want == 0)
    assert rows["dnn/hidden1/kernel"].status == "changed"
    same = tools.diff(ca, ca)
    assert all(r.status == "same" and r.equal and r.max_abs == 0.0 for r in same)
    big = max(r.max_abs for r in rows.values())
    assert all(r.status in ("same", "close") for r in tools.diff(ca, cb, atol=big))


def test_diff_shape_changes_and_missing_names(a, tmp_path):
    ca = hdf5.load(a)
    other = dnnspec.compile_text(SPEC.replace("hidden2(8", "hidden2(6")).to_checkpoint()
    rows = {r.name: r for r in tools.diff(ca, tools.extract(other, "dnn/(hidden2|outputs)/kernel"))}
    assert rows["dnn/hidden2/kernel"][:4] == ("dnn/hidden2/kernel", "shape", (8, 8), (8, 6))
    assert rows["dnn/hidden1/kernel"].status == "only_a" and rows["dnn/hidden1/kernel"].shape_b is None
    rows = tools.diff(tools.extract(ca, "dnn/hidden1"), ca)
    assert [r.status for r in rows].count("only_b") == 8


def test_max_abs_difference_handles_nan_and_inf():
    a = np.array([np.nan, np.inf, 1.0, -np.inf], np.float32)
    assert tools.max_abs_difference(a, a.copy()) == 0.0
    b = a.copy()
    b[2] = 1.5
    assert tools.max_abs_difference(a, b) == 0.5
    b[1] = 0.0
    assert tools.max_abs_difference(a, b) == np.inf
    assert np.isnan(tools.max_abs_difference(np.array([np.nan], np.float32), np.array([0.0], np.float32)))


# ---------------------------------------------------------------- rename / extract / merge
def test_rename_moves_variables_slots_and_collections(a, tmp_path):
    c = hdf5.load(a)
    r = tools.rename(c, "dnn/hidden([12])", r"encoder/layer\1")
    new = {n: (n.replace("dnn/hidden", "encoder/layer") if "hidden" in n else n) for n in NAMES}
    assert list(r.variables) == [new[n] for n in NAMES]  # order kept
    for old, n in new.items():
        assert r.variables[n].value.tobytes() == c.variables[old].value.tobytes()
        assert r.variables[n].role == c.variables[old].role
    for slot in ("m", "v"):
        assert set(r.optimizer["slots"][slot]) == {new[n] for n in c.optimizer["slots"][slot]}
        np.testing.assert_array_equal(r.optimizer["slots"][slot]["encoder/layer2/kernel"],
                                      c.optimizer["slots"][slot]["dnn/hidden2/kernel"])
    assert r.collections["important"] == ["x", "encoder/layer1", "dnn/outputs/kernel", "accuracy"]
    assert r.spec == c.spec and r.state["epoch"] == c.state["epoch"]
    assert r.state["derived"] == [{"op": "rename", "from": "dnn/hidden([12])", "to": r"encoder/layer\1",
                                   "renamed": 4}]
    again = hdf5.load(hdf5.save(tmp_path / "r.h5", r))  # still a valid file
    assert list(again.variables) == list(r.variables) and again.state["derived"] == r.state["derived"]
    assert "dnn/hidden1/kernel" in c.variables  # the input is untouched


def test_rename_refuses_collisions_and_non_matching_patterns(a):
    c = hdf5.load(a)
    with pytest.raises(CheckpointError, match="rename: both dnn/hidden1/kernel and dnn/hidden2/kernel would be named "
                                              "dnn/hidden2/kernel"):
        tools.rename(c, "dnn/hidden1/", "dnn/hidden2/")
    with pytest.raises(PatternError, match="pattern 'hidden' matches no variable; variables: dnn/hidden1/kernel"):
        tools.rename(c, "hidden", "x")
    with pytest.raises(PatternError, match="invalid pattern"):
        tools.rename(c, "dnn/[", "x")


def test_extract_takes_the_subset_with_slots_and_collections(a):
    c = hdf5.load(a)
    e = tools.extract(c, "dnn/hidden[12]")
    kept = [n for n in NAMES if "hidden" in n]
    assert list(e.variables) == kept
    for slot, arrays in e.optimizer["slots"].items():
        assert list(arrays) == [n for n in c.optimizer["slots"][slot] if n in kept]
    assert e.optimizer["name"] == "adam" and e.optimizer["step"] == c.optimizer["step"]
    assert e.collections == {"important": ["dnn/hidden1"]}  # x, outputs kernel, accuracy dropped
    assert e.variables["dnn/hidden1/kernel"].collections == ("important",)
    assert e.spec == c.spec and e.state["derived"][-1] == {"op": "extract", "pattern": "dnn/hidden[12]",
                                                           "variables": 4}
    assert tools.extract(c, "dnn/bn1/moving").collections == {}
    with pytest.raises(PatternError, match="matches no variable"):
        tools.extract(c, "dnn/hidden3")


def test_merge_of_two_extracts_gives_back_the_whole(a):
    c = hdf5.load(a)
    lower, upper = tools.extract(c, "dnn/(hidden1|bn1)/"), tools.extract(c, "dnn/(hidden2|outputs)/")
    m = tools.merge(lower, upper)
    assert list(m.variables) == NAMES
    assert all(r.equal for r in tools.diff(c, m))
    for slot, arrays in c.optimizer["slots"].items():
        assert set(m.optimizer["slots"][slot]) == set(arrays)
        for n, arr in arrays.items():
            assert m.optimizer["slots"][slot][n].tobytes() == arr.tobytes()
    assert m.collections == {"important": ["dnn/hidden1", "dnn/outputs/kernel"]}
    assert [d["op"] for d in m.state["derived"]] == ["extract", "merge"]
    assert tools.merge(c, c).variables.keys() == c.variables.keys()  # identical values: no conflict


def test_merge_conflicts_are_refused_unless_allowed(a, b):
    ca, cb = hdf5.load(a), hdf5.load(b)
    with pytest.raises(CheckpointError, match=r"merge: 10 variable\(s\) conflict: dnn/bn1/beta: values differ "
                                              r"\(max abs difference .*--allow-conflicts"):
        tools.merge(ca, cb)
    m = tools.merge(ca, cb, allow_conflicts=True, prefer="b")
    for n in NAMES:
        assert m.variables[n].value.tobytes() == cb.variables[n].value.tobytes()
    assert m.optimizer["slots"]["m"]["dnn/hidden1/kernel"].tobytes() == \
        cb.optimizer["slots"]["m"]["dnn/hidden1/kernel"].tobytes()
    assert m.spec == ca.spec and m.state["derived"][-1]["conflicts"] == 10
    keep_a = tools.merge(ca, cb, allow_conflicts=True)
    assert all(r.equal for r in tools.diff(ca, keep_a))
    narrow = dnnspec.compile_text(SPEC.replace("hidden2(8", "hidden2(6")).to_checkpoint()
    with pytest.raises(CheckpointError, match=r"dnn/hidden2/kernel: shape \(8, 8\) in a, \(8, 6\) in b"):
        tools.merge(ca, narrow)
    with pytest.raises(UserError, match="prefer must be"):
        tools.merge(ca, cb, prefer="c")


# ---------------------------------------------------------------- verify
def test_verify_clean_file_and_against(a, b, tmp_path):
    assert tools.verify(a) == []
    assert tools.verify(a, against=a) == []
    problems = tools.verify(a, against=b, pattern="dnn/hidden1")
    assert len(problems) == 2
    ca, cb = hdf5.load(a), hdf5.load(b)
    want = tools.max_abs_difference(ca.variables["dnn/hidden1/kernel"].value, cb.variables["dnn/hidden1/kernel"].value)
    assert problems[0] == f"variable dnn/hidden1/kernel differs from {b} (max abs difference {want:.3g})"
    # moving statistics equal in both? no: b trained longer; but an extract of a is bit-identical to a
    part = hdf5.save(tmp_path / "part.h5", tools.extract(ca, "dnn/bn1"))
    assert tools.verify(part, against=a) == []
    problems = tools.verify(a, against=part, pattern="dnn/(bn1|outputs/bias)")
    assert problems == [f"variable dnn/outputs/bias is not in {part}"]
    with pytest.raises(PatternError, match="matches no variable in"):
        tools.verify(a, against=b, pattern="nope")
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        tools.verify(tmp_path / "missing.h5")
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        tools.verify(a, against=tmp_path / "missing.h5")


def test_verify_finds_damage_nan_and_bad_slots(a, tmp_path):
    c = hdf5.load(a)
    c.variables["dnn/hidden2/bias"].value[[1, 3]] = np.nan
    c.variables["dnn/outputs/kernel"].value[0, 0] = np.inf
    c.optimizer["slots"]["v"]["dnn/outputs/bias"][0] = np.nan
    c.optimizer["slots"]["m"]["dnn/bn1/moving_mean"] = np.zeros(8, np.float32)  # no slot for a statistic
    c.optimizer["slots"]["m"]["dnn/gone"] = np.zeros(2, np.float32)
    bad = hdf5.save(tmp_path / "bad.h5", c)
    problems = tools.verify(bad)
    assert "variable dnn/hidden2/bias holds 2 NaN and 0 Inf values" in problems
    assert "variable dnn/outputs/kernel holds 0 NaN and 1 Inf values" in problems
    assert "optimizer slot v of dnn/outputs/bias holds 1 NaN and 0 Inf values" in problems
    assert "optimizer slot m of dnn/bn1/moving_mean: the variable is not trainable" in problems
    assert "optimizer slot m of dnn/gone: no such variable" in problems
    assert len(problems) == 5

    flip_byte(a, "variables/dnn/hidden1/kernel")
    problems = tools.verify(a)
    assert problems[0].startswith(f"{a}: damaged or not a dnnspec checkpoint")
    assert problems[1].startswith("/variables/dnn/hidden1/kernel: cannot be read")
    assert len(problems) == 2


def test_verify_reports_format_version_and_missing_checksums(a, tmp_path):
    with h5py.File(a, "a") as f:
        f.attrs["format_version"] = hdf5.FORMAT_VERSION + 1
    assert len(tools.verify(a)) == 1 and "newer than this dnnspec understands" in tools.verify(a)[0]
    with h5py.File(a, "a") as f:
        f.attrs["format_version"] = hdf5.FORMAT_VERSION
        data = f["variables/dnn/outputs/bias"][()]
        del f["variables/dnn/outputs/bias"]
        f["variables/dnn/outputs/bias"] = data  # rewritten without fletcher32
    assert tools.verify(a) == ["/variables/dnn/outputs/bias: no checksum (damage would go unnoticed)"]


# ---------------------------------------------------------------- the story: reuse, freeze, verify, diff
def test_reused_frozen_layers_stay_bit_identical(a, tmp_path):
    src = hdf5.load(a)
    model = dnnspec.compile_text(OTHER + '\nfreeze "encoder/"\n')
    report = tools.compat(model, src, scope="dnn/(hidden1|bn1)/", rename_from="dnn/", rename_to="encoder/")
    report.apply(src, model.variables)
    model.fit(*data(classes=2, seed=5), epochs=2)
    out = model.save(tmp_path / "new.h5")
    lower = tools.rename(tools.extract(src, "dnn/(hidden1|bn1)/"), "dnn/", "encoder/")
    renamed = hdf5.save(tmp_path / "renamed.h5", lower)
    assert tools.verify(out, against=renamed, pattern="encoder/") == []
    rows = {r.name: r.status for r in tools.diff(hdf5.load(renamed), hdf5.load(out))}
    assert rows == {**{n: "same" for n in lower.variables}, **{n: "only_b" for n in model.variables if "head/" in n}}
    assert len(rows) == 10


# ---------------------------------------------------------------- CLI
def test_cli_ls(a):
    r = cli("ckpt", "ls", a)
    assert r.exit_code == 0
    lines = r.output.splitlines()
    assert [ln.split()[0] for ln in lines] == NAMES
    assert lines[0].split() == ["dnn/hidden1/kernel", "(4,", "8)", "float32", "trainable", "kernel", "[important]"]
    assert lines[4].split()[3:5] == ["fixed", "moving_mean"]
    r = cli("ckpt", "ls", a, "dnn/bn1/moving", "--names")
    assert r.exit_code == 0 and r.output == "dnn/bn1/moving_mean\ndnn/bn1/moving_variance\n"


def test_cli_ls_errors(a, tmp_path):
    r = cli("ckpt", "ls", a, "hidden1")
    assert r.exit_code == 1
    assert r.stderr == (f"error: pattern 'hidden1' matches no variable in {a}; variables: " + ", ".join(NAMES) + "\n")
    r = cli("ckpt", "ls", a, "dnn/(")
    assert r.exit_code == 1 and r.stderr.startswith("error: invalid pattern 'dnn/(': missing )")
    r = cli("ckpt", "ls", tmp_path / "missing.h5")
    assert r.exit_code == 1 and r.stderr == f"error: {tmp_path / 'missing.h5'}: no such checkpoint file\n"
    (tmp_path / "text.h5").write_text("not hdf5")
    r = cli("ckpt", "ls", tmp_path / "text.h5")
    assert r.exit_code == 1 and "not a dnnspec checkpoint" in r.stderr


def test_cli_show_lists_derivation(a, tmp_path):
    cli("ckpt", "extract", a, "dnn/hidden1", "-o", tmp_path / "e.h5")
    r = cli("ckpt", "show", tmp_path / "e.h5")
    assert r.exit_code == 0
    assert "derived: op extract, pattern dnn/hidden1, variables 2" in r.output
    assert "variables (2, 40 values):" in r.output and "slots ['m', 'v'] (4 arrays)" in r.output


def test_cli_verify(a, b, tmp_path):
    r = cli("ckpt", "verify", a)
    assert r.exit_code == 0
    assert r.output == (f"{a}: ok (format version 1, 10 variables, 16 optimizer slot arrays: checksums verified, "
                        "no NaN or Inf)\n")
    r = cli("ckpt", "verify", a, "--against", a, "dnn/hidden")
    assert r.exit_code == 0 and r.output.endswith(f"4 variables matching 'dnn/hidden' bit-identical to {a}\n")
    r = cli("ckpt", "verify", a, "--against", b, "dnn/bn1/moving")
    assert r.exit_code == 1
    lines = r.output.splitlines()
    assert lines[0] == f"{a}: 2 problems:"
    assert lines[1].startswith(f"  - variable dnn/bn1/moving_mean differs from {b} (max abs difference ")
    r = cli("ckpt", "verify", a, "dnn/hidden")
    assert r.exit_code == 2 and "give --against OTHER too" in r.output
    r = cli("ckpt", "verify", tmp_path / "missing.h5")
    assert r.exit_code == 1 and "no such checkpoint file" in r.stderr
    flip_byte(b, "optimizer/slots/m/dnn/outputs/kernel")
    r = cli("ckpt", "verify", b)
    assert r.exit_code == 1
    assert r.output.splitlines()[0] == f"{b}: 2 problems:"
    assert "  - /optimizer/slots/m/dnn/outputs/kernel: cannot be read" in r.output


def test_cli_compat(a, tmp_path):
    same = tmp_path / "same.dnn"
    same.write_text(SPEC)
    r = cli("ckpt", "compat", same, a)
    assert r.exit_code == 0
    assert "loaded (10):" in r.output and "left at initializer (0): (none)" in r.output
    assert r.output.endswith(f"compatible: the checkpoint fills 10 of 10 variables of {same}\n")

    other = tmp_path / "other.dnn"
    other.write_text(OTHER)
    r = cli("ckpt", "compat", other, a, "--scope", "dnn/(hidden1|bn1)/", "--from", "dnn/", "--to", "encoder/")
    assert r.exit_code == 0
    assert "    encoder/bn1/gamma            (8,)    <- dnn/bn1/gamma\n" in r.output
    assert "left at initializer (4): head/hidden2/kernel, head/hidden2/bias, head/outputs/kernel" in r.output
    assert "unused in the checkpoint (4): dnn/hidden2/kernel, dnn/hidden2/bias, dnn/outputs/kernel" in r.output
    assert r.output.endswith("fills 6 of 10 variables of " + str(other) + "\n")

    r = cli("ckpt", "compat", other, a, "--map", "dnn/hidden1/=encoder/hidden1/", "--map", "dnn/hidden2/=head/hidden2/")
    assert r.exit_code == 1
    assert "shape conflicts (2):" in r.output
    assert r.stderr == (f"error: {a}: cannot reuse: variable head/hidden2/kernel of the model has shape (8, 5) but "
                        "dnn/hidden2/kernel in the checkpoint has shape (8, 8); variable head/hidden2/bias of the "
                        "model has shape (5,) but dnn/hidden2/bias in the checkpoint has shape (8,)\n")

    r = cli("ckpt", "compat", other, a)  # names do not line up: nothing filled
    assert r.exit_code == 1 and "fills no variable of the model" in r.stderr
    r = cli("ckpt", "compat", other, a, "--scope", "encoder/")
    assert r.exit_code == 1 and "pattern 'encoder/' matches no variable in the source checkpoint" in r.stderr
    r = cli("ckpt", "compat", other, a, "--to", "x/")
    assert r.exit_code == 2 and "--to needs --from" in r.output
    r = cli("ckpt", "compat", other, a, "--map", "nonsense")
    assert r.exit_code == 2 and "is not SRC=DST" in r.output
    r = cli("ckpt", "compat", tmp_path / "nope.dnn", a)
    assert r.exit_code == 1 and "no such spec file" in r.stderr


def test_cli_diff(a, b, tmp_path):
    r = cli("ckpt", "diff", a, a)
    assert r.exit_code == 0
    assert r.output.splitlines()[-1] == "10 same, 0 close, 0 changed, 0 shape, 0 only in A, 0 only in B"
    r = cli("ckpt", "diff", a, b, "--exit-code")
    assert r.exit_code == 1
    ca, cb = hdf5.load(a), hdf5.load(b)
    k = "dnn/hidden1/kernel"
    want = tools.max_abs_difference(ca.variables[k].value, cb.variables[k].value)
    line = next(ln for ln in r.output.splitlines() if k in ln)
    assert line.split() == ["changed", k, "(4,", "8)", "max", "|a-b|", f"{want:.3g}"]
    assert r.output.splitlines()[-1] == "0 same, 0 close, 10 changed, 0 shape, 0 only in A, 0 only in B"
    r = cli("ckpt", "diff", a, b, "--atol", "1e9")
    assert r.exit_code == 0 and r.output.splitlines()[-1].startswith("0 same, 10 close, 0 changed")
    cli("ckpt", "extract", a, "dnn/hidden1", "-o", tmp_path / "e.h5")
    r = cli("ckpt", "diff", tmp_path / "e.h5", a, "--changed", "--exit-code")
    assert r.exit_code == 1
    body = r.output.splitlines()[2:-1]
    assert [ln.split()[:3] for ln in body] == [["only", "in", "B"]] * 8
    r = cli("ckpt", "diff", a, b, "--atol", "-1")
    assert r.exit_code == 2


def test_cli_rename(a, tmp_path):
    out = tmp_path / "r.h5"
    r = cli("ckpt", "rename", a, "--from", "dnn/", "--to", "encoder/", "-o", out)
    assert r.exit_code == 0
    assert r.output.splitlines()[:2] == [f"wrote {out}: renamed 10 of 10 variables",
                                         "  dnn/hidden1/kernel -> encoder/hidden1/kernel"]
    assert list(hdf5.load(out).variables) == [n.replace("dnn/", "encoder/") for n in NAMES]
    r = cli("ckpt", "rename", a, "--from", "dnn/hidden1/", "--to", "dnn/hidden2/", "-o", tmp_path / "c.h5")
    assert r.exit_code == 1 and "would be named dnn/hidden2/kernel" in r.stderr
    assert not (tmp_path / "c.h5").exists()
    r = cli("ckpt", "rename", a, "--from", "dnn/[", "--to", "x", "-o", tmp_path / "c.h5")
    assert r.exit_code == 1 and "invalid pattern 'dnn/['" in r.stderr
    r = cli("ckpt", "rename", a, "--from", "dnn/", "--to", "x/")
    assert r.exit_code == 2 and "Missing option '-o'" in r.output


def test_cli_refuses_to_overwrite_an_input(a, b):
    before = a.read_bytes()
    r = cli("ckpt", "rename", a, "--from", "dnn/", "--to", "enc/", "-o", a)
    assert r.exit_code == 1 and r.stderr == f"error: {a} exists; refusing to replace it without --force\n"
    assert a.read_bytes() == before
    r = cli("ckpt", "merge", a, b, "--allow-conflicts", "-o", b)
    assert r.exit_code == 1 and "without --force" in r.stderr
    r = cli("ckpt", "extract", a, "dnn/hidden1", "-o", a, "--force")
    assert r.exit_code == 0 and list(hdf5.load(a).variables) == NAMES[:2]


def test_cli_extract(a, tmp_path):
    out = tmp_path / "lower.h5"
    r = cli("ckpt", "extract", a, "dnn/(hidden1|bn1)/", "-o", out)
    assert r.exit_code == 0
    assert r.output.splitlines() == [f"wrote {out}: 6 of 10 variables", *[f"  {n}" for n in NAMES[:6]]]
    assert tools.verify(out, against=a) == []
    r = cli("ckpt", "extract", a, "dnn/hidden3", "-o", tmp_path / "x.h5")
    assert r.exit_code == 1
    assert r.stderr.startswith("error: pattern 'dnn/hidden3' matches no variable; variables: dnn/hidden1/kernel")


def test_cli_merge(a, b, tmp_path):
    lower, upper = tmp_path / "lower.h5", tmp_path / "upper.h5"
    cli("ckpt", "extract", a, "dnn/(hidden1|bn1)/", "-o", lower)
    cli("ckpt", "extract", b, "dnn/(hidden2|outputs)/", "-o", upper)
    out = tmp_path / "m.h5"
    r = cli("ckpt", "merge", lower, upper, "-o", out)
    assert r.exit_code == 0 and r.output == f"wrote {out}: 10 variables (4 only in B)\n"
    m = hdf5.load(out)
    assert tools.verify(out, against=a, pattern="dnn/(hidden1|bn1)/") == []
    assert tools.verify(out, against=b, pattern="dnn/(hidden2|outputs)/") == []
    assert m.spec == hdf5.load(a).spec

    r = cli("ckpt", "merge", a, b, "-o", tmp_path / "c.h5")
    assert r.exit_code == 1
    assert r.stderr.startswith("error: merge: 10 variable(s) conflict: dnn/bn1/beta: values differ")
    assert not (tmp_path / "c.h5").exists()
    r = cli("ckpt", "merge", a, b, "-o", tmp_path / "c.h5", "--allow-conflicts", "--prefer", "b")
    assert r.exit_code == 0
    assert r.output == f"wrote {tmp_path / 'c.h5'}: 10 variables (0 only in B; 10 conflicts resolved in favour of B)\n"
    assert all(row.equal for row in tools.diff(hdf5.load(b), hdf5.load(tmp_path / "c.h5")))
    r = cli("ckpt", "merge", a, b, "-o", tmp_path / "c.h5", "--prefer", "c")
    assert r.exit_code == 2
