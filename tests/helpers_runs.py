"""Helpers shared by tests that train models."""

from __future__ import annotations

import numpy as np

import dnnspec


def assert_resumes_exactly(spec: str, x, y, first_epochs: int, path: str = "half.h5"):
    """Training SPEC whole and training it FIRST_EPOCHS epochs, saving, loading and finishing
    give the same weights bit for bit (run inside a temporary folder)."""
    whole = dnnspec.compile_text(spec)
    whole.fit(x, y)
    first = dnnspec.compile_text(spec)
    first.fit(x, y, epochs=first_epochs)
    first.save(path)
    second = dnnspec.load_checkpoint(path)
    second.fit(x, y)
    for n, v in whole.variables.items():
        np.testing.assert_array_equal(v, second.variables[n], err_msg=n)
    return whole, second
