"""PNG reports of a training run: loss curves and forecast vs actual on validation data.

Figures are built with ``matplotlib.figure.Figure`` directly, so no GUI backend and no global
pyplot state is involved: this works headless and in threads.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from detector.training import TrainResult

__all__ = ["plot_loss", "plot_forecast"]


def plot_loss(result: TrainResult, path: str | os.PathLike[str]) -> Path:
    """Training and validation MSE (scaled units) per epoch, with the restored best epoch."""
    epochs = [e.epoch for e in result.history]
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(epochs, [e.train_loss for e in result.history], marker="o", label="training")
    ax.plot(epochs, [e.val_loss for e in result.history], marker="o", label="validation")
    ax.axvline(result.best_epoch, color="grey", ls="--", label=f"best (epoch {result.best_epoch})")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE (scaled units)")
    stop = "early stop" if result.stopped_early else "epoch limit"
    ax.set_title(f"Loss curves ({stop} after {len(epochs)} epochs)")
    ax.legend()
    fig.savefig(path, dpi=110)
    return Path(path)


def plot_forecast(
    result: TrainResult, path: str | os.PathLike[str], max_streams: int = 4, max_points: int = 400
) -> Path:
    """Forecast vs actual (and the persistence baseline) for the first target of a few streams,
    over the validation split, in original units."""
    ts = result.trainset
    val = ts.val
    streams = [k for k in range(len(ts.names)) if np.any(val.stream == k)][:max_streams]
    target = ts.features.targets[0]
    fig = Figure(figsize=(9, 2.4 * len(streams) + 0.6), layout="constrained")
    axes = fig.subplots(len(streams), 1, squeeze=False)[:, 0]
    for ax, k in zip(axes, streams, strict=True):
        mine = np.flatnonzero(val.stream == k)[:max_points]
        rows = val.row[mine]
        ax.plot(rows, result.val_actual[mine, 0], color="black", lw=1.2, label="actual")
        ax.plot(rows, result.val_forecast[mine, 0], color="tab:blue", lw=1, label="LSTM forecast")
        ax.plot(
            rows,
            result.val_persistence[mine, 0],
            color="tab:orange",
            lw=0.8,
            alpha=0.7,
            label="persistence (last value)",
        )
        ax.set_title(f"{ts.names[k]} · {target}", fontsize=9, loc="left")
        ax.set_ylabel(target)
    axes[0].legend(fontsize=8, ncols=3, loc="upper right")
    axes[-1].set_xlabel("row (validation split)")
    fig.suptitle("One-step forecast on validation data (original units)")
    fig.savefig(path, dpi=110)
    return Path(path)
