"""A rich progress display for training: per-epoch bar with loss and ETA, one line per epoch.

On a terminal the bar updates live; in a log (CI, a pipe) only the per-epoch lines appear.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["TrainingProgress"]


class TrainingProgress:
    """Callable for :func:`detector.training.train`'s ``on_progress``; use as a context manager."""

    def __init__(self, epochs: int, console: Console | None = None) -> None:
        self.epochs = epochs
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.5f}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            disable=not self.console.is_terminal,
        )
        self.task = self.progress.add_task("train", total=1, epoch=0, epochs=epochs, loss=0.0)

    def __enter__(self) -> TrainingProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, event: str, info: dict[str, float]) -> None:
        if event == "epoch_start":
            self.progress.reset(self.task, total=info["batches"], epoch=info["epoch"], loss=0.0)
        elif event == "batch":
            self.progress.update(self.task, completed=info["batch"], loss=info["loss"])
        elif event == "epoch_end":
            mark = " *" if info["val_loss"] <= info["best"] else ""
            self.console.print(
                f"epoch {info['epoch']:>3}/{self.epochs}  train {info['train_loss']:.5f}  "
                f"val {info['val_loss']:.5f}{mark}  ({info['seconds']:.1f} s)",
                highlight=False,
            )
