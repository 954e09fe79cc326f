"""Losses over the network's last output (logits), mean over the batch.

``forward(z, y)`` returns the mean loss (a Python float) and keeps what ``backward`` needs;
``backward()`` returns dL/dz in a preallocated buffer. ``predict(z)`` maps logits to outputs
(probabilities, or the values themselves for regression); ``correct(z, y)`` counts right
answers for accuracy, or is None when accuracy means nothing (regression).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .registry import Registry

LOSSES = Registry("loss")


class Loss:
    """Base of every loss."""

    labels: ClassVar[str] = "class"  # "class" (int index or one-hot), "binary", "real"

    def out_width(self, n_classes: int | None, label_width: int | None) -> int | None:
        """The output width this loss needs for the data, or None if any width works."""
        return None

    def forward(self, z: np.ndarray, y: np.ndarray) -> float:
        raise NotImplementedError

    def backward(self) -> np.ndarray:
        raise NotImplementedError

    def predict(self, z: np.ndarray) -> np.ndarray:
        return z

    def correct(self, z: np.ndarray, y: np.ndarray) -> int | None:
        return None
