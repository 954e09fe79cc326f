"""Finite-difference gradient checks (float64, central differences)."""

import numpy as np


def numeric_grad(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """d f() / d x by central differences; x is perturbed in place, one element at a time,
    and restored. f takes no arguments and returns a float."""
    assert x.dtype == np.float64, "finite differences need float64"
    grad = np.empty_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)  # views: writes reach x
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = f()
        flat[i] = old - h
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * h)
    return grad


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| relative to the larger of max |a|, max |b| (absolute below 1e-8)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(np.abs(a).max(initial=0.0), np.abs(b).max(initial=0.0), 1e-8)
    return float(np.abs(a - b).max(initial=0.0) / scale)


def assert_grad_close(analytic, numeric, tol: float = 1e-6, what: str = "") -> None:
    assert np.shape(analytic) == np.shape(numeric), f"{what}: shape {np.shape(analytic)} != {np.shape(numeric)}"
    err = rel_error(analytic, numeric)
    assert err < tol, f"{what}: relative error {err:.2e} >= {tol:.0e}\nanalytic\n{analytic}\nnumeric\n{numeric}"


def away_from_kinks(x: np.ndarray, margin: float = 1e-2) -> np.ndarray:
    """Push entries with |x| < margin out to ±margin, so no difference step crosses 0."""
    small = np.abs(x) < margin
    x[small] = np.where(x[small] < 0, -margin, margin)
    return x
