"""Progress reporting: a progress bar on a terminal, one line of metrics per epoch."""

from __future__ import annotations

import sys
from typing import TextIO


def format_logs(logs: dict) -> str:
    parts = [f"epoch {logs['epoch']:>3}"]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        if key in logs:
            parts.append(f"{key} {logs[key]:.4f}")
    parts.append(f"lr {logs['lr']:.3g}")
    parts.append(f"{logs['seconds']:.2f}s")
    if logs.get("best"):
        parts.append("*best")
    return "  ".join(parts)


class Printer:
    """Per-epoch metric lines, and a rich progress bar while an epoch runs (TTY only)."""

    def __init__(self, out: TextIO = sys.stdout, bar: bool | None = None):
        self.out = out
        self.bar = sys.stderr.isatty() if bar is None else bar
        self._progress = None

    def epoch_start(self, epoch: int, epochs: int, batches: int) -> None:
        if not self.bar:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(TextColumn(f"epoch {epoch + 1}/{epochs}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(),
                                  transient=True)
        self._progress.start()
        self._task = self._progress.add_task("train", total=batches, loss=float("nan"))

    def batch_end(self, batch: int, loss: float) -> None:
        if self._progress is not None and (batch % 10 == 0):
            self._progress.update(self._task, completed=batch + 1, loss=loss)

    def epoch_end(self, logs: dict) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        print(format_logs(logs), file=self.out, flush=True)
