"""Metrics over predicted probabilities (for `dnnspec eval`, ensembles and reports).

Labels are integer classes [N] or one-hot rows [N, K]; probabilities are rows [N, K] (or one
column of P(class 1) for a binary sigmoid output).
"""

from __future__ import annotations

import numpy as np


def class_labels(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        return y.argmax(axis=1)
    return y.reshape(-1).astype(np.int64)


def as_rows(probs: np.ndarray) -> np.ndarray:
    """[N, 1] sigmoid probabilities become [N, 2] rows (P(0), P(1))."""
    p = np.asarray(probs, np.float64)
    return np.hstack([1.0 - p, p]) if p.ndim == 2 and p.shape[1] == 1 else p


def accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(as_rows(probs).argmax(axis=1) == class_labels(y)))


def top_k_accuracy(probs: np.ndarray, y: np.ndarray, k: int) -> float:
    """Fraction of examples whose class is among the k most probable (ties: lowest index first)."""
    p = as_rows(probs)
    k = min(k, p.shape[1])
    top = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return float(np.mean((top == class_labels(y)[:, None]).any(axis=1)))


def log_loss(probs: np.ndarray, y: np.ndarray, eps: float = 1e-12) -> float:
    p = as_rows(probs)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(p)), class_labels(y)], eps, 1.0))))


def per_class(probs: np.ndarray, y: np.ndarray) -> list[dict]:
    """Precision, recall, F1 and support of every class (0 where undefined, as scikit-learn's zero_division=0)."""
    p = as_rows(probs)
    pred, true = p.argmax(axis=1), class_labels(y)
    rows = []
    for c in range(p.shape[1]):
        tp = int(np.sum((pred == c) & (true == c)))
        predicted, actual = int(np.sum(pred == c)), int(np.sum(true == c))
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"class": c, "precision": precision, "recall": recall, "f1": f1, "support": actual})
    return rows


def confusion(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """counts[true, predicted]."""
    p = as_rows(probs)
    k = p.shape[1]
    return np.bincount(class_labels(y) * k + p.argmax(axis=1), minlength=k * k).reshape(k, k)
