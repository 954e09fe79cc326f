"""Model.fit / predict / evaluate check their arrays (a DataError that says what was expected,
never a NumPy ValueError/IndexError/ZeroDivisionError), and Model.variables is a mapping whose
item assignment writes into the model."""

from __future__ import annotations

import numpy as np
import pytest

import dnnspec
from dnnspec.errors import DataError, UserError

from conftest import TINY

NO_DATA = """
model m {
    input x[2]
    scope dnn {
        dense hidden(8, activation=relu)
        dense outputs(3)
    }
}
train {
    optimizer adam(lr=0.01)
    epochs 2
    batch 16
}
"""


@pytest.fixture
def model():
    return dnnspec.compile_text(NO_DATA)


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 2)).astype(np.float32), rng.integers(0, 3, n)


def expect(call, match):
    """The call raises a DataError/UserError (not a bare NumPy error) matching `match`."""
    with pytest.raises(UserError, match=match) as e:
        call()
    assert not isinstance(e.value, (IndexError, ZeroDivisionError))
    return str(e.value)


# ---------------------------------------------------------------- fit
def test_wrong_width(model):
    x, y = data()
    expect(lambda: model.fit(np.hstack([x, x[:, :1]]), y),
           r"^x has 3 features per row, but input 'x' has width 2; expected shape \[N, 2\]$")
    expect(lambda: model.fit(np.zeros((64, 1, 3)), y), r"x has 3 features per row \(\[64, 1, 3\] flattened\)")
    expect(lambda: model.fit(np.zeros(2), [1]), r"one example\? pass x.reshape\(1, -1\)")


def test_labels_out_of_range(model):
    x, y = data()
    y[5] = 7
    y[9] = 3
    msg = expect(lambda: model.fit(x, y), r"^labels must be in 0..2 for the 3 outputs of the last layer 'dnn/outputs': "
                                          r"y has label 7 at row 5 \(1 more out of range\)$")
    y[[5, 9]] = [0, -1]
    expect(lambda: model.fit(x, y), "y has label -1 at row 9")
    assert msg


def test_float_labels_must_be_whole_numbers(model):
    x, y = data()
    history = model.fit(x, y.astype(np.float64), epochs=1)  # 0.0, 1.0, 2.0 are fine
    assert len(history) == 1
    yf = y.astype(np.float64)
    yf[3] = 1.5
    expect(lambda: model.fit(x, yf), r"y has 1.5 at row 3; class labels are whole numbers 0..2")


def test_mismatched_lengths(model):
    x, y = data()
    expect(lambda: model.fit(x, y[:-1]), r"^x has 64 rows but y has 63")
    expect(lambda: model.fit(x, y, validation_data=(x[:10], y[:9])),
           r"validation_data x has 10 rows but validation_data y has 9")


def test_empty(model):
    expect(lambda: model.fit(np.zeros((0, 2), np.float32), np.zeros(0, int)), r"x is empty \(shape \[0, 2\]\)")
    expect(lambda: model.evaluate(np.zeros((0, 2)), []), "x is empty")
    assert model.predict(np.zeros((0, 2))).shape == (0, 3)  # nothing to predict is no error


def test_non_numeric(model):
    x, y = data()
    expect(lambda: model.fit(x.astype(str), y), r"x has dtype <U\d+; expected numbers")
    expect(lambda: model.fit(x, np.array(["a"] * 64)), "y has dtype <U1; expected numbers")
    expect(lambda: model.fit([[1.0, 2.0], [3.0]], [0, 1]), "x is not an array of numbers")
    expect(lambda: model.fit(x, None), "y is missing")
    expect(lambda: model.fit(x, y, batch_size=0), "batch_size must be a whole number >= 1")


def test_nan_and_inf_in_inputs_are_not_divergence(model):
    x, y = data()
    x[5, 1] = np.nan
    expect(lambda: model.fit(x, y), r"^x contains NaN at row 5 \(x\[5, 1\]\)")
    x[5, 1] = 0
    x[7, 0] = np.inf
    expect(lambda: model.predict(x), r"x contains Inf at row 7")
    expect(lambda: model.evaluate(x, y), r"x contains Inf at row 7")
    x64 = x.astype(np.float64)
    x64[7, 0] = 1e300  # finite in float64, not in float32
    expect(lambda: model.predict(x64), r"x contains Inf at row 7 \(x\[7, 0\]: too large for float32\)")
    xv = x.copy()
    xv[7, 0] = 0
    xv[2, 0] = np.nan
    expect(lambda: model.fit(xv[3:], y[3:], validation_data=(xv, y)), r"validation_data x contains NaN at row 2")


def test_evaluate_and_predict_check_too(model):
    x, y = data()
    expect(lambda: model.evaluate(x, y + 3), "labels must be in 0..2")
    expect(lambda: model.predict(x[:, :1]), "x has 1 features per row, but input 'x' has width 2")
    assert model.predict(x.astype(np.float64).tolist()).shape == (64, 3)


def test_one_hot_rows_and_other_losses():
    x, y = data()
    model = dnnspec.compile_text(NO_DATA)
    model.fit(x, np.eye(3, dtype=np.float32)[y], epochs=1)  # probability rows
    expect(lambda: model.fit(x, np.eye(4)[y % 4]), r"y has shape \[64, 4\], but the model's output has width 3")
    reg = dnnspec.compile_text(NO_DATA.replace("dense outputs(3)", "dense outputs(1)")
                               .replace("train {", "train {\n    loss mse"))
    reg.fit(x, x[:, 0], epochs=1)
    expect(lambda: reg.fit(x, x), r"y has shape \[64, 2\], but the model's output has width 1")
    targets = x[:, 0].copy()
    targets[4] = np.nan
    expect(lambda: reg.fit(x, targets), r"y contains NaN at row 4")
    binary = dnnspec.compile_text(NO_DATA.replace("dense outputs(3)", "dense outputs(1)")
                                  .replace("train {", "train {\n    loss sigmoid_cross_entropy"))
    binary.fit(x, y % 2, epochs=1)
    expect(lambda: binary.fit(x, y), r"y has 2 at row \d+; for sigmoid_cross_entropy .* takes labels 0 and 1")


def test_good_inputs_still_train(model):
    x, y = data()
    history = model.fit(x.astype(np.float64), y.astype(np.int32), validation_data=(x[:8], y[:8]), epochs=2)
    assert len(history) == 2 and "val_loss" in history[-1]
    assert set(model.evaluate(x, y)) == {"loss", "accuracy"}


# ---------------------------------------------------------------- variables
def test_assigning_a_variable_writes_into_the_model(in_tmp):
    model = dnnspec.compile_text(TINY)
    x = np.random.default_rng(1).normal(size=(16, 2)).astype(np.float32)
    before = model.predict(x)
    name = "dnn/outputs/bias"
    model.variables[name] = np.array([5.0, -5.0, 0.0])  # float64 in: stored as float32
    value = model.variables[name]
    assert value.dtype == np.float32 and np.shares_memory(value, model.plan.theta)
    np.testing.assert_array_equal(value, [5, -5, 0])
    after = model.predict(x)
    assert not np.allclose(before, after) and (after.argmax(axis=1) == 0).mean() > 0.5
    model.save("m.h5")
    from dnnspec.ckpt.tools import verify

    assert verify("m.h5") == []  # the file passes its own verification
    again = dnnspec.load_checkpoint("m.h5")
    np.testing.assert_array_equal(again.variables[name], [5, -5, 0])
    np.testing.assert_array_equal(again.predict(x), after)


def test_variable_assignment_errors():
    model = dnnspec.compile_text(TINY)
    v = model.variables
    with pytest.raises(UserError, match=r"variables\['dnn/outputs/bias'\] = \.\.\.: shape \(4,\) does not fit "
                                        r"the variable's shape \(3,\)"):
        v["dnn/outputs/bias"] = np.zeros(4)
    with pytest.raises(UserError, match="the model has no variable 'dnn/outputs/bais' — did you mean "
                                        "'dnn/outputs/bias'"):
        v["dnn/outputs/bais"] = np.zeros(3)
    with pytest.raises(KeyError):  # a mapping's lookup error, still
        v["nope"]
    with pytest.raises(UserError, match="cannot delete variable 'dnn/outputs/bias'"):
        del v["dnn/outputs/bias"]
    with pytest.raises(UserError, match="expected numbers"):
        v["dnn/outputs/bias"] = ["a", "b", "c"]
    assert "dnn/outputs/bias" in v and "nope" not in v and v.get("nope") is None


def test_variables_still_iterate_and_write_in_place():
    model = dnnspec.compile_text(TINY)
    v = model.variables
    assert list(v) == list(v.keys()) == list(model.plan.infos) and len(v) == len(model.plan.infos)
    assert [a.shape for a in v.values()] == [i.shape for i in model.plan.infos.values()]
    assert dict(v.items()).keys() == set(model.plan.infos)
    v["dnn/bn/moving_mean"][...] = 2.0
    assert (model.plan.fixed == 2.0).sum() == 16
    v.update({"dnn/bn/gamma": np.full(16, 3.0)})
    np.testing.assert_array_equal(model.variables["dnn/bn/gamma"], 3.0)
