"""Data augmentation, declared with the data (``augment=[shift(2), rotate(10), noise(0.05)]``):
random changes to every training batch, never to validation, test or prediction inputs.

Each augmentation is one small registered class. Geometric ones (shift, rotate, scale, stretch,
shear, the flips) draw one transformation per example and write its *inverse* as a 3x3 matrix;
`Augmenter` multiplies them, in the order written, into ONE affine map per example (output
pixel -> source point, about the image centre), so a batch is warped by a single gather over
the whole batch: bilinear, or nearest-pixel when every map sends whole pixels to whole pixels
(shifts by whole pixels, flips: exact copies, no blur). Points outside the image read 0 (the
background of MNIST-like data). Pixel augmentations (noise) follow the warp.

Images are the rows of a batch, [N, height*width*channels], channels last (Keras' layout).
All buffers are allocated once for the largest batch; the draws come from one random stream,
the trainer's ``augment`` stream, saved with the run so ``--resume`` stays exact.
"""

from __future__ import annotations

import math

import numpy as np

from .registry import Float, Registry

AUGMENTATIONS = Registry("augmentation")


class Augmentation:
    """Base of every augmentation."""

    geometric = True  # composes into the per-example affine map
    whole = False  # its maps send whole pixels to whole pixels (nearest-pixel sampling is exact)

    def inverse(self, rng: np.random.Generator, u: np.ndarray, t: np.ndarray) -> None:
        """Draw one transformation per example and write its inverse into `t` ([n, 3, 3], the
        identity on entry); `u` is scratch ([n] float64) for the draws."""
        raise NotImplementedError

    def apply(self, rng: np.random.Generator, x: np.ndarray, scratch: np.ndarray) -> None:
        """Pixel augmentations: change the batch `x` ([n, features] float32) in place."""
        raise NotImplementedError


def uniform(rng: np.random.Generator, u: np.ndarray, low: float, high: float) -> np.ndarray:
    """u <- U(low, high), in place (no allocation)."""
    rng.random(out=u)
    u *= high - low
    u += low
    return u


@AUGMENTATIONS.register("shift", "translate")
class Shift(Augmentation):
    """Random translation by up to `pixels` in x and in y (crop-style: whole pixels by default)."""

    def __init__(self, pixels: Float(gt=0, le=1024) = 2, whole: bool = True):
        problem = Shift.validate(pixels=pixels, whole=whole)
        if problem:
            raise ValueError(problem)
        self.pixels, self.whole = float(pixels), whole

    @staticmethod
    def validate(pixels=2, whole=True, **_) -> str | None:
        if whole and pixels < 1:
            return f"whole=true shifts by whole pixels, so pixels={pixels:g} never moves anything (use whole=false)"
        return None

    def inverse(self, rng, u, t):
        # whole: each of -k..k equally likely (floor of U(-k, k+1)); else U(-p, p)
        k = math.floor(self.pixels)
        for row in (0, 1):  # dx, then dy; the inverse moves back
            if self.whole:
                np.floor(uniform(rng, u, -k, k + 1), out=u)
                np.minimum(u, k, out=u)  # U(.)'s upper end is open, but rounding can reach it
            else:
                uniform(rng, u, -self.pixels, self.pixels)
            np.negative(u, out=t[:, row, 2])


@AUGMENTATIONS.register("rotate", "rotation")
class Rotate(Augmentation):
    """Random rotation about the centre by an angle in [-degrees, degrees] (counter-clockwise > 0)."""

    def __init__(self, degrees: Float(gt=0, le=180) = 10):
        self.degrees = float(degrees)

    def inverse(self, rng, u, t):
        r = self.degrees * math.pi / 180
        uniform(rng, u, -r, r)
        # forward on screen (y points down): x' = x cos + y sin, y' = -x sin + y cos; its inverse:
        np.cos(u, out=t[:, 0, 0])
        np.sin(u, out=t[:, 1, 0])
        t[:, 1, 1] = t[:, 0, 0]
        np.negative(t[:, 1, 0], out=t[:, 0, 1])


@AUGMENTATIONS.register("scale", "zoom")
class Scale(Augmentation):
    """Random zoom about the centre by a factor in [low, high] (> 1 enlarges), the same on both axes."""

    def __init__(self, low: Float(gt=0, le=10) = 0.9, high: Float(gt=0, le=10) = 1.1):
        problem = Scale.validate(low=low, high=high)
        if problem:
            raise ValueError(problem)
        self.low, self.high = float(low), float(high)

    @staticmethod
    def validate(low=0.9, high=1.1, **_) -> str | None:
        return f"low must be <= high, got {low:g} > {high:g}" if low > high else None

    def inverse(self, rng, u, t):
        np.reciprocal(uniform(rng, u, self.low, self.high), out=t[:, 0, 0])
        t[:, 1, 1] = t[:, 0, 0]


@AUGMENTATIONS.register("stretch")
class Stretch(Scale):
    """Random stretch: width and height scaled by independent factors in [low, high]."""

    def inverse(self, rng, u, t):
        for axis in (0, 1):
            np.reciprocal(uniform(rng, u, self.low, self.high), out=t[:, axis, axis])


@AUGMENTATIONS.register("shear")
class Shear(Augmentation):
    """Random horizontal shear by an angle in [-degrees, degrees]: x' = x + tan(angle)·y."""

    def __init__(self, degrees: Float(gt=0, lt=90) = 10):
        self.degrees = float(degrees)

    def inverse(self, rng, u, t):
        r = self.degrees * math.pi / 180
        np.tan(uniform(rng, u, -r, r), out=t[:, 0, 1])
        np.negative(t[:, 0, 1], out=t[:, 0, 1])


class Flip(Augmentation):
    """A mirror image with probability `p` (its own inverse)."""

    whole = True
    axis = 0  # 0: x (left-right), 1: y (up-down)

    def __init__(self, p: Float(gt=0, le=1) = 0.5):
        self.p = float(p)

    def inverse(self, rng, u, t):
        rng.random(out=u)
        np.less(u, self.p, out=u, casting="unsafe")  # 1.0 where flipped
        np.multiply(u, -2.0, out=t[:, self.axis, self.axis])
        t[:, self.axis, self.axis] += 1.0


@AUGMENTATIONS.register("flip_horizontal", "fliplr")
class FlipHorizontal(Flip):
    """Mirror left-right with probability p (np.flip along the width)."""

    axis = 0


@AUGMENTATIONS.register("flip_vertical", "flipud")
class FlipVertical(Flip):
    """Mirror up-down with probability p (np.flip along the height)."""

    axis = 1


@AUGMENTATIONS.register("noise", "gaussian_noise")
class Noise(Augmentation):
    """Additive Gaussian noise N(0, stddev²) on every value, in input units (after `scale`)."""

    geometric = False

    def __init__(self, stddev: Float(gt=0, le=1e6) = 0.05):
        self.stddev = float(stddev)

    def apply(self, rng, x, scratch):
        rng.standard_normal(out=scratch, dtype=np.float32)
        scratch *= np.float32(self.stddev)
        x += scratch


# ---------------------------------------------------------------- the batch warp
class Augmenter:
    """Applies a list of augmentations to batches of images (in place, no allocation per batch)."""

    def __init__(self, augmentations, image: tuple[int, ...], rng: np.random.Generator):
        self.augmentations = list(augmentations)
        self.geometric = [a for a in self.augmentations if a.geometric]
        self.pixel = [a for a in self.augmentations if not a.geometric]
        self.nearest = all(a.whole for a in self.geometric)
        self.h, self.w, self.c = (*image, 1)[:3] if len(image) == 2 else image
        self.rng = rng
        self.capacity = 0
        self.matrices: np.ndarray | None = None  # the last batch's maps (output -> source), for tests

    @classmethod
    def of(cls, augmentation, input_width: int, rng: np.random.Generator) -> Augmenter:
        """The augmenter of a checked `program.Augmentation` (no image shape: one row of pixels)."""
        return cls([s.build() for s in augmentation.steps], augmentation.image or (1, input_width), rng)

    @property
    def width(self) -> int:
        return self.h * self.w * self.c

    def allocate(self, n: int) -> None:
        """Buffers for batches of up to `n` images (once per size)."""
        if n <= self.capacity:
            return
        h, w, c = self.h, self.w, self.c
        hw = h * w
        self.capacity = n
        self.u = np.empty(n)
        self.t = np.empty((n, 3, 3))
        self.m = np.empty((n, 3, 3))
        self.m2 = np.empty((n, 3, 3))
        self.eye = np.broadcast_to(np.eye(3), (n, 3, 3))
        self.noise = np.empty((n, self.width), np.float32)
        if not self.geometric:
            return
        # output pixel centres relative to the image centre, as homogeneous columns [x; y; 1]
        ys, xs = np.mgrid[0:h, 0:w]
        self.grid = np.stack([xs.ravel() - (w - 1) / 2, ys.ravel() - (h - 1) / 2, np.ones(hw)]).astype(np.float32)
        self.m32 = np.empty((n, 2, 3), np.float32)
        self.coords = np.empty((n, 2, hw), np.float32)  # source x, y in padded pixel units
        self.floor = np.empty((n, 2, hw), np.float32)
        self.ints = np.empty((n, 2, hw), np.intp)
        self.index = np.empty(4 * n * hw, np.intp)  # flat: a smaller batch takes a contiguous front part
        # the images with a border of zeros: 1 pixel before, 2 after, so that every clipped
        # corner (and its right/lower neighbour) lands on the border when outside the image
        self.hp, self.wp = h + 3, w + 3
        self.padded = np.zeros((n, self.hp, self.wp, c), np.float32)
        self.base = (np.arange(n) * self.hp * self.wp)[:, None]
        self.corners = np.empty(4 * n * hw * c, np.float32)

    def __call__(self, x: np.ndarray) -> None:
        """Augment the batch `x` ([n, height*width*channels] float32) in place."""
        n = len(x)
        self.allocate(n)
        if self.geometric:
            self._warp(x, n)
        for a in self.pixel:
            a.apply(self.rng, x, self.noise[:n])

    def draw(self, n: int) -> np.ndarray:
        """The maps of `n` examples: each geometric augmentation's inverse, multiplied in order."""
        m, m2, t, u = self.m[:n], self.m2[:n], self.t[:n], self.u[:n]
        m[...] = self.eye[:n]
        for a in self.geometric:
            t[...] = self.eye[:n]
            a.inverse(self.rng, u, t)
            np.matmul(m, t, out=m2)  # source = T1⁻¹ T2⁻¹ ... (output): the last written acts last
            m, m2 = m2, m
        self.matrices = m
        return m

    def _warp(self, x: np.ndarray, n: int) -> None:
        h, w, c, wp = self.h, self.w, self.c, self.wp
        m = self.draw(n)
        m32 = self.m32[:n]
        np.copyto(m32, m[:, :2, :], casting="same_kind")
        m32[:, 0, 2] += (w - 1) / 2 + 1  # back to pixel indices, plus the 1-pixel border
        m32[:, 1, 2] += (h - 1) / 2 + 1
        coords, floor, ints = self.coords[:n], self.floor[:n], self.ints[:n]
        np.matmul(m32, self.grid, out=coords)
        np.clip(coords[:, 0], 0, w + 1, out=coords[:, 0])
        np.clip(coords[:, 1], 0, h + 1, out=coords[:, 1])
        padded = self.padded[:n]
        padded[:, 1:h + 1, 1:w + 1, :] = x.reshape(n, h, w, c)
        source = self.padded.reshape(-1, c)
        hw = h * w
        index = self.index[:4 * n * hw].reshape(4, n, hw)
        corners = self.corners[:4 * n * hw * c].reshape(4, n, hw, c)
        if self.nearest:  # whole-pixel maps: one exact gather
            np.rint(coords, out=floor)
        else:
            np.floor(coords, out=floor)
        np.copyto(ints, floor, casting="unsafe")
        np.multiply(ints[:, 1], wp, out=index[0])
        index[0] += ints[:, 0]
        index[0] += self.base[:n]
        out = x.reshape(n, -1, c)
        if self.nearest:
            np.take(source, index[0], axis=0, out=out, mode="clip")
            return
        np.add(index[0], 1, out=index[1])  # the right, lower and lower-right neighbours
        np.add(index[0], wp, out=index[2])
        np.add(index[0], wp + 1, out=index[3])
        np.take(source, index, axis=0, out=corners, mode="clip")
        coords -= floor  # the fractions: weights of the right / lower neighbours
        fx, fy = coords[:, 0, :, None], coords[:, 1, :, None]
        top, right, low, low_right = corners
        right -= top  # top + fx·(right - top), then the same below, then between the two by fy
        right *= fx
        top += right
        low_right -= low
        low_right *= fx
        low += low_right
        low -= top
        low *= fy
        np.add(top, low, out=out)
