"""PNG plots of evaluated streams: values, forecast, scores, alerts and labelled ranges."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from detector.detection_metrics import events
from detector.evaluation import StreamScores
from detector.series import Series

__all__ = ["plot_stream", "plot_some"]


def plot_stream(
    s: Series, runs: dict[str, StreamScores], target: str, path: Path, open_at: float
) -> Path:
    """One stream: its first target with the LSTM forecast, then every detector's score."""
    fig = Figure(figsize=(11, 5.5), layout="constrained")
    ax, ax_s = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    x = np.arange(len(s))
    ax.plot(x, s.select([target])[:, 0], color="black", lw=0.7, label=target)
    lstm = runs.get("lstm")
    if lstm is not None and lstm.forecast is not None:
        ax.plot(x, lstm.forecast[:, 0], color="tab:blue", lw=0.6, alpha=0.8, label="LSTM forecast")
        flagged = np.flatnonzero(lstm.flag)
        ax.scatter(
            flagged,
            s.select([target])[flagged, 0],
            color="tab:red",
            s=6,
            zorder=3,
            label="LSTM alert",
        )
    for name, run in runs.items():
        ax_s.plot(x, run.score, lw=0.7, label=name)
    ax_s.axhline(open_at, color="grey", ls="--", lw=0.8, label="open_at")
    if s.labels is not None:
        for a, b in events(s.labels):
            for axis in (ax, ax_s):
                axis.axvspan(a, b - 1, color="gold", alpha=0.3)
    ax.set_title(f"{s.name} (labelled anomalies shaded)", loc="left")
    ax.legend(loc="upper left", fontsize=8, ncols=3)
    ax_s.set_ylabel("score")
    ax_s.set_ylim(-0.02, 1.02)
    ax_s.set_xlabel("row")
    ax_s.legend(loc="upper left", fontsize=8, ncols=4)
    fig.savefig(path, dpi=100)
    return path


def plot_some(
    test: Sequence[Series],
    runs: dict[str, list],
    target: str | Sequence[str],
    out_dir: Path,
    open_at: float,
    n: int = 4,
) -> list[Path]:
    """Plot the first ``n`` streams that have labelled anomalies; ``target`` is the column
    plotted, or one per stream of ``test`` (where streams differ in their columns)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = [k for k, s in enumerate(test) if s.labels is not None and s.labels.any()][:n]
    paths = []
    for k in chosen:
        name = test[k].name.replace("/", "__")
        paths.append(
            plot_stream(
                test[k],
                {d: r[k] for d, r in runs.items()},
                target if isinstance(target, str) else target[k],
                out_dir / f"{name}.png",
                open_at,
            )
        )
    return paths
