"""Data augmentation (dnnspec/augment.py): each augmentation against its formula (centre of mass,
norms, second moments, np.flip, noise statistics, scipy's affine_transform as an oracle), the
batch warp (no allocation, float32), training-only application, exact resume, the frozen-layer
cache, the checker and lint, and `dnnspec augment`."""

from __future__ import annotations

import math
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

import dnnspec
from dnnspec.augment import (AUGMENTATIONS, Augmenter, FlipHorizontal, FlipVertical, Noise, Rotate, Scale, Shear,
                             Shift, Stretch)
from dnnspec.check import check_text
from dnnspec.errors import SpecError
from dnnspec.rng import stream

from conftest import ROOT, SHARED_MNIST

H, W = 24, 20  # not square: a mix-up of height and width shows


def blob(n: int, cx: float, cy: float, sigma: float = 2.0, h: int = H, w: int = W) -> np.ndarray:
    """n copies of a smooth Gaussian blob centred at pixel (cx, cy), as rows [n, h*w] float32."""
    ys, xs = np.mgrid[0:h, 0:w]
    img = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))
    return np.repeat(img.reshape(1, -1), n, axis=0).astype(np.float32)


def moments(x: np.ndarray, h: int = H, w: int = W):
    """Per image: mass, centre of mass (x, y) and spread (std along x, y), about pixel indices."""
    img = x.reshape(len(x), h, w).astype(np.float64)
    ys, xs = np.mgrid[0:h, 0:w]
    mass = img.sum(axis=(1, 2))
    mx = (img * xs).sum(axis=(1, 2)) / mass
    my = (img * ys).sum(axis=(1, 2)) / mass
    sx = np.sqrt((img * (xs - mx[:, None, None]) ** 2).sum(axis=(1, 2)) / mass)
    sy = np.sqrt((img * (ys - my[:, None, None]) ** 2).sum(axis=(1, 2)) / mass)
    return mass, mx, my, sx, sy


def augmented(augmentations, x, seed=0, image=(H, W)):
    a = Augmenter(augmentations, image, np.random.default_rng(seed))
    out = x.copy()
    a(out)
    return a, out


CX, CY = (W - 1) / 2, (H - 1) / 2


# ---------------------------------------------------------------- each augmentation's formula
def test_shift_moves_the_centre_of_mass_by_the_drawn_whole_pixels():
    x = np.zeros((400, H, W), np.float32)  # random content with a margin of 3 zero pixels: nothing falls off
    x[:, 3:-3, 3:-3] = np.random.default_rng(0).random((400, H - 6, W - 6))
    x = x.reshape(400, -1)
    a, out = augmented([Shift(2)], x)
    _, mx0, my0, _, _ = moments(x)
    _, mx, my, _, _ = moments(out)
    dx, dy = -a.matrices[:, 0, 2], -a.matrices[:, 1, 2]  # the maps hold the inverse
    assert set(np.unique(dx)) == set(np.unique(dy)) == {-2.0, -1.0, 0.0, 1.0, 2.0}  # every shift, no other
    np.testing.assert_allclose(mx - mx0, dx, atol=1e-4)
    np.testing.assert_allclose(my - my0, dy, atol=1e-4)
    # whole pixels: the values are the original's, moved (no interpolation blur)
    assert set(np.unique(out)) <= set(np.unique(x)) | {0.0}


def test_subpixel_shift_keeps_mass_and_moves_the_centre_exactly():
    x = np.zeros((200, H, W), np.float32)
    x[:, 3:-3, 3:-3] = np.random.default_rng(1).random((200, H - 6, W - 6))
    x = x.reshape(200, -1)
    a, out = augmented([Shift(1.5, whole=False)], x, seed=3)
    m0, mx0, my0, _, _ = moments(x)
    m, mx, my, _, _ = moments(out)
    dx, dy = -a.matrices[:, 0, 2], -a.matrices[:, 1, 2]
    assert np.abs(dx).max() <= 1.5 and len(np.unique(dx)) == 200
    np.testing.assert_allclose(m, m0, rtol=1e-5)  # linear interpolation conserves mass inside the frame
    np.testing.assert_allclose(mx - mx0, dx, atol=1e-4)
    np.testing.assert_allclose(my - my0, dy, atol=1e-4)


def test_rotation_keeps_the_norm_and_turns_the_centre_counter_clockwise():
    h, w, r = 44, 40, 6.0  # a smooth blob right of the centre, its tails well inside the frame
    cx, cy = (w - 1) / 2, (h - 1) / 2
    x = blob(300, cx + r, cy, sigma=3.0, h=h, w=w)
    a, out = augmented([Rotate(30)], x, seed=1, image=(h, w))
    angle = np.arctan2(a.matrices[:, 1, 0], a.matrices[:, 0, 0])  # inverse = [[cos, -sin], [sin, cos]]
    assert np.abs(angle).max() <= math.radians(30) and angle.min() < -0.4 and angle.max() > 0.4
    norm0, norm = np.linalg.norm(x, axis=1), np.linalg.norm(out, axis=1)
    np.testing.assert_allclose(norm / norm0, 1.0, atol=0.015)  # bilinear interpolation smooths a little
    assert (norm <= norm0 * (1 + 1e-6)).all()  # and never sharpens
    _, mx, my, _, _ = moments(out, h, w)
    np.testing.assert_allclose(mx - cx, r * np.cos(angle), atol=0.01)
    np.testing.assert_allclose(my - cy, -r * np.sin(angle), atol=0.01)  # y points down: up the screen


def test_scale_multiplies_the_spread_by_the_factor_about_the_centre():
    x = blob(200, CX, CY, sigma=2.5)
    a, out = augmented([Scale(0.8, 1.25)], x, seed=2)
    s = 1 / a.matrices[:, 0, 0]
    assert s.min() >= 0.8 and s.max() <= 1.25 and np.ptp(s) > 0.3
    np.testing.assert_array_equal(a.matrices[:, 0, 0], a.matrices[:, 1, 1])
    _, _, _, sx0, sy0 = moments(x)
    _, mx, my, sx, sy = moments(out)
    np.testing.assert_allclose(mx, CX, atol=1e-3)
    np.testing.assert_allclose(sx / sx0, s, rtol=0.03)
    np.testing.assert_allclose(sy / sy0, s, rtol=0.03)


def test_stretch_scales_width_and_height_independently():
    x = blob(200, CX, CY, sigma=2.5)
    a, out = augmented([Stretch(0.8, 1.25)], x, seed=4)
    fx, fy = 1 / a.matrices[:, 0, 0], 1 / a.matrices[:, 1, 1]
    assert np.corrcoef(fx, fy)[0, 1] < 0.5
    _, _, _, sx0, sy0 = moments(x)
    _, _, _, sx, sy = moments(out)
    np.testing.assert_allclose(sx / sx0, fx, rtol=0.03)
    np.testing.assert_allclose(sy / sy0, fy, rtol=0.03)


def test_shear_moves_x_by_tan_angle_times_y():
    x = blob(200, CX, CY + 6, sigma=1.8)  # below the centre
    a, out = augmented([Shear(20)], x, seed=5)
    tan = -a.matrices[:, 0, 1]
    assert np.abs(tan).max() <= math.tan(math.radians(20)) + 1e-12
    _, mx, my, _, _ = moments(out)
    np.testing.assert_allclose(mx - CX, tan * 6, atol=0.02)
    np.testing.assert_allclose(my - CY, 6, atol=0.02)


@pytest.mark.parametrize("cls,axis", [(FlipHorizontal, 2), (FlipVertical, 1)])
def test_flips_are_exact(cls, axis):
    rng = np.random.default_rng(0)
    x = rng.random((64, H * W), dtype=np.float32)
    _, out = augmented([cls(1.0)], x)
    np.testing.assert_array_equal(out.reshape(-1, H, W), np.flip(x.reshape(-1, H, W), axis=axis))
    a, out = augmented([cls(0.5)], x, seed=9)  # each image either untouched or flipped, about half each
    flipped = np.array([not np.array_equal(o, i) for o, i in zip(out, x)])
    assert 16 < flipped.sum() < 48
    np.testing.assert_array_equal(out[~flipped], x[~flipped])
    np.testing.assert_array_equal(out[flipped].reshape(-1, H, W), np.flip(x[flipped].reshape(-1, H, W), axis=axis))


def test_flips_and_whole_shifts_compose_exactly_and_in_order():
    rng = np.random.default_rng(1)
    x = rng.random((32, H * W), dtype=np.float32)
    a, out = augmented([Shift(3), FlipHorizontal(1.0)], x, seed=2)
    assert a.nearest
    for img, src, m in zip(out.reshape(-1, H, W), x.reshape(-1, H, W), a.matrices):
        dx, dy = int(-m[0, 2]), int(m[1, 2] * -1)  # shift first, then the flip of the shifted image
        moved = np.zeros_like(src)
        moved[max(dy, 0):H + min(dy, 0), max(dx, 0):W + min(dx, 0)] = src[max(-dy, 0):H + min(-dy, 0),
                                                                          max(-dx, 0):W + min(-dx, 0)]
        np.testing.assert_array_equal(img, moved[:, ::-1])


def test_noise_has_the_declared_standard_deviation_in_input_units():
    x = np.full((500, H * W), 0.25, np.float32)
    _, out = augmented([Noise(0.05)], x, seed=3)
    d = (out - 0.25).astype(np.float64)
    assert out.dtype == np.float32
    assert abs(d.mean()) < 3 * 0.05 / math.sqrt(d.size)
    assert abs(d.std() - 0.05) < 0.002
    assert abs(float(np.mean(d**4) / d.var() ** 2) - 3.0) < 0.1  # Gaussian kurtosis


def test_bilinear_warp_matches_scipy_affine_transform():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(2)
    x = rng.random((40, H * W), dtype=np.float32)
    a, out = augmented([Shift(2), Rotate(25), Scale(0.8, 1.2), Shear(15), FlipVertical(), Stretch()], x, seed=6)
    assert not a.nearest
    c = np.array([CY, CX])
    for img, src, m in zip(out.reshape(-1, H, W), x.reshape(-1, H, W), a.matrices):
        # scipy maps output (row, col) to input (row, col): swap our (x, y) map's axes
        lin = m[:2, :2][::-1, ::-1]
        offset = c - lin @ c + m[:2, 2][::-1]
        ref = ndimage.affine_transform(src.astype(np.float64), lin, offset, order=1, mode="grid-constant", cval=0.0)
        np.testing.assert_allclose(img, ref, atol=2e-5)


def keras_on_torch():
    """Keras 3 on the torch backend (set before its first import), or a skip."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


class Drawn:
    """A stand-in random stream whose uniform draws are all `u`: U(low, high) gives low + u·(high - low)."""

    def __init__(self, u: float):
        self.u = u

    def random(self, out, dtype=None):
        out[...] = self.u
        return out


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
@pytest.mark.parametrize("degrees", [90.0, 30.0, -17.0])
def test_rotation_is_keras_random_rotation_with_a_constant_zero_fill(degrees):
    """Keras' RandomRotation turns by factor·360° counter-clockwise (positive factor) about the
    centre, bilinear; dnnspec's rotate is the same map with fill_mode="constant", fill_value=0
    (Keras' default fill is "reflect": docs/conventions.md, "Data augmentation")."""
    keras = keras_on_torch()
    x = np.random.default_rng(3).random((1, H * W), dtype=np.float32)
    u = 1.0 if degrees > 0 else 0.0  # the largest or the smallest angle of rotate(|degrees|)
    out = x.copy()
    Augmenter([Rotate(abs(degrees))], (H, W), Drawn(u))(out)
    layer = keras.layers.RandomRotation(factor=(degrees / 360, degrees / 360), fill_mode="constant",
                                        fill_value=0.0, interpolation="bilinear")
    ref = keras.ops.convert_to_numpy(layer(x.reshape(1, H, W, 1), training=True)).reshape(1, -1)
    np.testing.assert_allclose(out, ref, atol=2e-5)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_whole_shift_is_keras_random_translation_with_a_constant_zero_fill():
    """Positive shifts move the image right and down, as Keras' RandomTranslation's positive
    factors do (fill_mode="constant"; its default is "reflect")."""
    keras = keras_on_torch()
    x = np.random.default_rng(4).random((1, H * W), dtype=np.float32)
    out = x.copy()
    Augmenter([Shift(3)], (H, W), Drawn(0.999))(out)  # floor(U(-3, 4)) = 3 in x and in y
    layer = keras.layers.RandomTranslation(height_factor=(3 / H, 3 / H), width_factor=(3 / W, 3 / W),
                                           fill_mode="constant", fill_value=0.0, interpolation="nearest")
    ref = keras.ops.convert_to_numpy(layer(x.reshape(1, H, W, 1), training=True)).reshape(1, -1)
    np.testing.assert_array_equal(out, ref)
    assert out.reshape(H, W)[3, 3] == x.reshape(H, W)[0, 0] and (out.reshape(H, W)[:3] == 0).all()


def test_channels_last_images_flip_every_channel():
    rng = np.random.default_rng(3)
    x = rng.random((8, 6 * 5 * 3), dtype=np.float32)
    _, out = augmented([FlipHorizontal(1.0)], x, image=(6, 5, 3))
    np.testing.assert_array_equal(out.reshape(-1, 6, 5, 3), np.flip(x.reshape(-1, 6, 5, 3), axis=2))
    _, out = augmented([Rotate(20)], x, image=(6, 5, 3))  # the bilinear gather carries channels too
    assert np.isfinite(out).all() and not np.array_equal(out, x)


# ---------------------------------------------------------------- the batch warp
def test_augmenting_a_batch_allocates_no_arrays_and_stays_float32():
    x = np.random.default_rng(0).random((200, 784), dtype=np.float32)
    a = Augmenter([Shift(2), Rotate(10), Scale(), FlipHorizontal(), Noise(0.1)], (28, 28), np.random.default_rng(1))
    a(x)  # buffers are made once for the largest batch
    a(x[:150])  # a smaller (last) batch uses the front of them
    tracemalloc.start()
    try:
        a(x)
        a(x[:77])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 * 784 * 4 * 0.25, peak  # a batch of images is 627 KB; small views and draws only
    assert x.dtype == np.float32 and np.isfinite(x).all()


def test_the_same_stream_gives_the_same_batches_and_smaller_batches_work():
    x = np.random.default_rng(0).random((50, 784), dtype=np.float32)
    outs = []
    for _ in range(2):
        a = Augmenter([Shift(2), Rotate(10), Noise(0.1)], (28, 28), np.random.default_rng(5))
        first, last = x.copy(), x[:7].copy()
        a(first)
        a(last)
        outs.append((first, last))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])


def test_every_registered_augmentation_builds_with_its_defaults():
    x = blob(4, CX, CY)
    for entry in AUGMENTATIONS.entries():
        _, out = augmented([entry.cls()], x)
        assert out.shape == x.shape and np.isfinite(out).all(), entry.name


# ---------------------------------------------------------------- in training
IMAGES = """
model m {{
    input x[{width}]
    dense(16, activation=elu)
    dense(3)
}}

data d = npz(path="img.npz", validation=20{extra})

train {{
    epochs 3
    batch 16
    seed 3{train}
}}
"""


def write_images(path, n=100, h=6, w=5):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    x = (rng.random((n, h, w)) * 0.2 + y[:, None, None] * 0.3).astype(np.float32)
    np.savez(path, x_train=x, y_train=y, x_test=x[:30], y_test=y[:30])


def spec_text(extra=', image=[6, 5], augment=[shift(1), rotate(10), noise(0.3)]', train="", width=30):
    return IMAGES.format(extra=extra, train=train, width=width)


def test_augmentation_changes_training_batches_only(in_tmp):
    write_images("img.npz")
    plain = dnnspec.compile_text(spec_text(extra=""))
    aug = dnnspec.compile_text(spec_text())
    calls = []
    aug.trainer.augmenter = _Spy(aug.trainer.augmenter, calls)
    splits = aug.load_data()
    hist_plain, hist_aug = plain.fit(), aug.fit()
    assert len(calls) == 3 * math.ceil(80 / 16) and all(n <= 16 for n in calls)  # every training batch, nothing else
    assert [r["loss"] for r in hist_plain] != [r["loss"] for r in hist_aug]
    # evaluation, validation and prediction see the data as it is: same weights, same numbers
    plain.variables.update({k: v.copy() for k, v in aug.variables.items()})
    for x, y in (splits.val, splits.test):
        assert aug.evaluate(x, y) == plain.evaluate(x, y)
        np.testing.assert_array_equal(aug.predict(x), plain.predict(x))
    assert hist_aug[-1]["val_loss"] == pytest.approx(aug.evaluate(*splits.val)["loss"], rel=1e-6)
    assert len(calls) == 15  # evaluating called nothing


class _Spy:
    """Counts the batches an augmenter is given (and augments them)."""

    def __init__(self, inner, calls):
        self.inner, self.calls = inner, calls
        self.rng = inner.rng

    def allocate(self, n):
        self.inner.allocate(n)

    def __call__(self, x):
        self.calls.append(len(x))
        self.inner(x)


def test_a_reconstruction_with_augmentation_targets_the_clean_input(in_tmp):
    """`loss ... target=input` with augment: the network sees the augmented batch and must
    reproduce the rows as loaded (docs/conventions.md: a denoising / un-shifting autoencoder)."""
    write_images("img.npz")
    text = IMAGES.format(extra=", image=[6, 5], augment=[shift(1), noise(0.3)]", width=30, train="")
    text = text.replace("dense(3)", "dense(30)").replace("    epochs 3", "    loss mse target=input\n    epochs 1")
    model = dnnspec.compile_text(text)
    train_x = model.load_data().train[0]
    seen = []

    def step(x, y, *args, real=model.trainer.train_step):
        seen.append((x.copy(), y.copy()))
        return real(x, y, *args)

    model.trainer.train_step = step
    model.fit()
    rows = {r.tobytes() for r in train_x}
    assert seen and all(not np.array_equal(x, y) for x, y in seen)  # the inputs were changed ...
    assert all(r.tobytes() in rows for _, y in seen for r in y)  # ... the targets are the loaded rows


def test_resume_is_bit_identical_with_augmentation_mid_epoch(in_tmp):
    write_images("img.npz")
    spec = spec_text(train="\n    epochs 4")
    spec = spec.replace("    epochs 3\n", "")
    whole = dnnspec.compile_text(spec)
    whole.fit()
    first = dnnspec.compile_text(spec)
    saved = []

    def on_step(trainer):  # save in the middle of epoch 2, then stop
        if trainer.updater.t == 7 and not saved:
            first.save("mid.h5")
            saved.append(True)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        first.fit(on_step=on_step)
    second = dnnspec.load_checkpoint("mid.h5")
    assert second.trainer.state.position is not None  # inside an epoch
    second.fit()
    for n, v in whole.variables.items():
        np.testing.assert_array_equal(v, second.variables[n])
    assert [r["loss"] for r in second.history] == [r["loss"] for r in whole.history]


def test_the_augment_stream_is_its_own(in_tmp):
    """Augmentation draws from rng.stream(seed, "augment"): shuffling and dropout keep their numbers."""
    write_images("img.npz")
    a = dnnspec.compile_text(spec_text())
    b = dnnspec.compile_text(spec_text(extra=", image=[6, 5], augment=[flip_vertical]"))
    assert a.trainer.shuffle_rng.bit_generator.state == b.trainer.shuffle_rng.bit_generator.state
    state = a.trainer.state_dict()[0]
    assert state["rng_augment"] == stream(3, "augment").bit_generator.state


def test_augmenting_turns_the_frozen_layer_cache_off(in_tmp):
    write_images("img.npz")
    freeze = '\nfreeze "dense/"\n'
    cached = dnnspec.compile_text(spec_text(extra="") + freeze)
    assert cached.plan.cacheable_prefix() == 2  # dense and its elu
    model = dnnspec.compile_text(spec_text() + freeze)
    assert model.plan.cacheable_prefix() == 0
    model.fit(epochs=1)
    assert "off" in model.trainer.cache_report and "augmented" in model.trainer.cache_report


# ---------------------------------------------------------------- the checker and the lint
def test_mnist_knows_its_image_shape_and_others_need_one():
    net = "model m {\n    input x[784]\n    dense(10)\n}\n"
    p = check_text(net + 'data d = mnist(augment=[shift(2), rotate(10)])\n')
    assert p.augment.image == (28, 28) and [c.name for c in p.augment.steps] == ["shift", "rotate"]
    with pytest.raises(SpecError) as info:
        check_text(net + 'data d = npz(path="a.npz", augment=[noise(0.1), rotate(10)])\n', "s.dnn")
    d = info.value.diagnostics[0]
    assert (d.code, d.span.line, d.span.col) == ("E025", 5, 36) and "image=[height, width]" in d.hint
    p = check_text(net + 'data d = npz(path="a.npz", image=[28, 28, 1], augment=flip_horizontal)\n')
    assert p.augment.image == (28, 28, 1) and p.augment.steps[0].name == "flip_horizontal"
    assert check_text(net + 'data d = mnist(augment=[])\n').augment is None


def test_an_override_sets_the_augmentation():
    net = "model m {\n    input x[784]\n    dense(10)\n}\ndata d = mnist()\n"
    p = check_text(net, overrides=["data.augment=[flip_vertical(p=0.2), noise(0.1)]"])
    assert [str(c) for c in p.augment.steps] == ["flip_vertical(p=0.2)", "noise(stddev=0.1)"]
    with pytest.raises(SpecError) as info:
        check_text(net, overrides=["data.augment=[rotat(10)]"])
    assert "did you mean 'rotate'" in str(info.value)


def test_augmentation_on_data_without_an_image_shape_is_a_lint():
    net = "model m {\n    input x[4]\n    dense(2)\n}\n"
    p = check_text(net + 'data d = csv(path="t.csv", augment=[noise(0.1)])\n')
    w = [d for d in p.warnings if d.code == "W114"]
    assert len(w) == 1 and (w[0].span.line, w[0].span.col) == (5, 36) and "gaussian_noise" in w[0].hint
    p = check_text(net + 'data d = csv(path="t.csv", augment=[noise(0.1)])\nallow "W114"\n')
    assert not [d for d in p.warnings if d.code == "W114"]
    p = check_text(net + 'data d = csv(path="t.csv", image=[2, 2], augment=[noise(0.1)])\n')
    assert not [d for d in p.warnings if d.code == "W114"]


@pytest.mark.parametrize("args,code,message", [
    ("augment=3", "E020", "expects a list of augmentations like [flip_horizontal, flip_vertical], got number 3"),
    ("augment=[shift(2), 0.5]", "E020", "expected the name of an augmentation, got number 0.5"),
    ('image="28x28"', "E020", "expected a shape like [28, 28] or [32, 32, 3]"),
    ("image=[28, 0]", "E030", "must be >= 1, got 0"),
    ("augment=[shift(2, whole=maybe)]", "E020", "expected true or false"),
])
def test_malformed_augmentation_values_are_located_errors(args, code, message):
    text = f"model m {{\n    input x[784]\n    dense(10)\n}}\ndata d = mnist({args})\n"
    with pytest.raises(SpecError) as info:
        check_text(text, "s.dnn")
    d = info.value.diagnostics[0]
    assert d.code == code and d.span.line == 5 and message in d.message, str(info.value)


def test_generated_data_takes_no_augmentation():
    with pytest.raises(SpecError) as info:
        check_text("model m {\n    input x[2]\n    dense(2)\n}\ndata d = xor(augment=[noise(0.1)])\n")
    assert info.value.diagnostics[0].code == "E021"


# ---------------------------------------------------------------- `dnnspec augment`
def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "dnnspec", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_cli_draws_a_grid_in_a_real_process(tmp_path):
    pytest.importorskip("matplotlib")
    write_images(tmp_path / "img.npz")
    (tmp_path / "a.dnn").write_text(spec_text())
    r = cli("augment", "a.dnn", "-o", "grid.png", "--rows", "3", "--cols", "4", "--seed", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "figure written to grid.png (3 examples x 4 augmented versions)" in r.stdout
    assert (tmp_path / "grid.png").read_bytes().startswith(b"\x89PNG")
    r = cli("augment", "a.dnn", "-o", "grid.png", cwd=tmp_path)  # never replaced without --force
    assert r.returncode == 1 and "without --force" in r.stderr and "Traceback" not in r.stderr


def test_cli_errors(in_tmp):
    from click.testing import CliRunner

    from dnnspec.cli import main

    pytest.importorskip("matplotlib")
    write_images("img.npz")
    (in_tmp / "a.dnn").write_text(spec_text())
    (in_tmp / "plain.dnn").write_text(spec_text(extra=""))
    (in_tmp / "bad.dnn").write_text(spec_text(extra=", image=[6, 5], augment=[rotate(400)]"))
    runner = CliRunner()
    r = runner.invoke(main, ["augment", "plain.dnn", "-o", "p.png"])
    assert r.exit_code == 1 and "declares no augmentation" in r.output and not (in_tmp / "p.png").exists()
    r = runner.invoke(main, ["augment", "a.dnn", "-o", "grid.txt"])
    assert r.exit_code == 1 and ".png, .svg or .pdf" in r.output
    r = runner.invoke(main, ["augment", "bad.dnn", "-o", "b.png"])
    assert r.exit_code == 2 and "bad.dnn:8:" in r.output and "E030" in r.output
    r = runner.invoke(main, ["augment", "a.dnn", "-o", "g.png", "--rows", "0"])
    assert r.exit_code == 2 and "--rows" in r.output
    r = runner.invoke(main, ["augment", "a.dnn", "-o", "g.png", "--seed", "-1"])  # was an internal error
    assert r.exit_code == 2 and "--seed" in r.output and "-1 is not in the range x>=0" in r.output, r.output
    r = runner.invoke(main, ["augment", "a.dnn", "-o", "g.png", "--rows", "2", "--cols", "1"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["augment", "a.dnn", "-o", "g.png", "--force", "--set", "data.path=nothere.npz"])
    assert r.exit_code == 1 and "data file not found" in r.output


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_MNIST.is_file(), reason="needs ../shared/data/mnist.npz")
def test_the_documented_figure_command_runs(tmp_path):
    """docs/language.md's `dnnspec augment` command, with the figure written elsewhere."""
    import re

    text = (ROOT / "docs" / "language.md").read_text()
    command = re.search(r"^\$ (dnnspec augment .*)$", text, re.M).group(1)
    args = command.split()[1:]
    args[args.index("-o") + 1] = str(tmp_path / "grid.png")
    r = cli(*args, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "grid.png").read_bytes().startswith(b"\x89PNG")
