"""``detector demo``: the whole workflow offline in about a minute.

simulate a sensor fleet with labelled anomalies → train the LSTM on the first part of every
stream → forecast the rest → score each reading by its forecast error → report and plot.

The scoring here is deliberately plain: a reading's score is its largest per-feature forecast
error in units of the validation error's standard deviation, and an alert is a score above a
fixed, label-free threshold (or a missing reading). The streaming engine, with stateful
per-stream scoring and an alert state machine, takes over this step as it lands.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table

from detector.checkpoint import save_checkpoint
from detector.cli_train import report
from detector.plots import plot_forecast, plot_loss
from detector.progress import TrainingProgress
from detector.series import Series
from detector.training import TrainConfig, TrainResult, predict_windows, train
from detector.windows import make_windows
from simulators import SensorFleetConfig, Simulation, simulate_sensors

__all__ = ["register", "run"]

# Label-free alert rule: forecast error beyond this many validation-error standard deviations.
ALERT_SIGMAS = 6.0
TRAIN_FRACTION = 0.5  # first half of each stream trains (with its own validation split)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the whole workflow offline: simulate, train, score, report and plot",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", default="demo-out", help="directory for data, model and report")
    p.add_argument("--streams", type=int, default=8, help="sensor streams to simulate")
    p.add_argument("--length", type=int, default=2400, help="readings per stream")
    p.add_argument("--interval", type=float, default=300.0, help="seconds between readings")
    p.add_argument("--epochs", type=int, default=15, help="maximum training epochs")
    p.add_argument("--seed", type=int, default=7, help="seed for simulation and training")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(func=run)


@dataclass(frozen=True)
class StreamScores:
    name: str
    rows: np.ndarray  # (m,) row indices scored
    actual: np.ndarray  # (m, n_targets) original units
    forecast: np.ndarray  # (m, n_targets) original units
    score: np.ndarray  # (m,) error in validation sigmas (inf for a missing reading)


def _head(s: Series, rows: int) -> Series:
    labels = None if s.labels is None else s.labels[:rows]
    return replace(s, timestamps=s.timestamps[:rows], values=s.values[:rows], labels=labels)


def _residual_sigma(result: TrainResult) -> np.ndarray:
    """``(n_targets,)`` std of validation forecast errors in scaled units (pooled over streams)."""
    val = result.trainset.val
    pred = predict_windows(result.model, val.X, torch.device("cpu"))
    return np.maximum((pred - val.y).std(axis=0), 1e-6)


def _score_stream(
    result: TrainResult, k: int, s: Series, start: int, sigma: np.ndarray
) -> StreamScores:
    ts = result.trainset
    scaler, n_t, T = ts.scalers[k], len(ts.features.targets), result.config.timesteps
    x = scaler.transform(s.select(ts.features.inputs))
    X, y, rows = make_windows(x, T, n_t)
    keep = rows >= start
    X, y, rows = X[keep], y[keep], rows[keep]
    pred = predict_windows(result.model.cpu(), X, torch.device("cpu"))
    score_all = np.full(len(s), np.nan)
    score_all[rows] = (np.abs(pred - y) / sigma).max(axis=1)
    missing = np.isnan(s.values).any(axis=1)
    score_all[missing] = np.inf  # a missing reading is always worth an alert
    scored = np.arange(start, len(s))
    scored = scored[~np.isnan(score_all[scored])]
    forecast = np.full((len(s), n_t), np.nan)
    forecast[rows] = scaler.inverse(pred.astype(np.float64), slice(0, n_t))
    return StreamScores(s.name, scored, s.values[scored, :n_t], forecast[scored], score_all[scored])


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous ``[start, end)`` runs of True."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def _event_metrics(sim: Simulation, scores: list[StreamScores], start: int) -> dict[str, object]:
    by_stream = {sc.name: sc for sc in scores}
    found: dict[str, list[int]] = {}
    for a in sim.anomalies:
        if a.start_index < start:
            continue  # inside the training half: not scored
        sc = by_stream[a.stream]
        inside = (sc.rows >= a.start_index) & (sc.rows < a.end_index)
        found.setdefault(a.kind, []).append(int(np.any(sc.score[inside] > ALERT_SIGMAS)))
    alerts, true_alerts = 0, 0
    truth = {s.name: s.labels for s in sim.series}
    for sc in scores:
        flags = np.zeros(len(truth[sc.name]), bool)
        flags[sc.rows] = sc.score > ALERT_SIGMAS
        for a, b in _runs(flags):
            alerts += 1
            true_alerts += int(truth[sc.name][a:b].any())
    hits = [h for v in found.values() for h in v]
    return {
        "alert_threshold_sigmas": ALERT_SIGMAS,
        "anomalies_scored": len(hits),
        "anomalies_detected": int(sum(hits)),
        "event_recall": sum(hits) / len(hits) if hits else None,
        "alerts": alerts,
        "alerts_on_labelled_anomalies": true_alerts,
        "event_precision": true_alerts / alerts if alerts else None,
        "recall_by_kind": {k: sum(v) / len(v) for k, v in sorted(found.items())},
    }


def _plot_scores(sim: Simulation, scores: list[StreamScores], path: Path, n: int = 3) -> None:
    fig = Figure(figsize=(10, 3.2 * n), layout="constrained")
    axes = fig.subplots(n * 2, 1, height_ratios=[3, 1] * n)
    for i, sc in enumerate(scores[:n]):
        ax, ax_s = axes[2 * i], axes[2 * i + 1]
        ax.plot(sc.rows, sc.actual[:, 0], color="black", lw=0.8, label="actual")
        ax.plot(sc.rows, sc.forecast[:, 0], color="tab:blue", lw=0.8, label="forecast")
        ax_s.plot(sc.rows, np.minimum(sc.score, 3 * ALERT_SIGMAS), color="tab:red", lw=0.8)
        ax_s.axhline(ALERT_SIGMAS, color="grey", ls="--", lw=0.8)
        for a in (a for a in sim.anomalies if a.stream == sc.name):
            for axis in (ax, ax_s):
                axis.axvspan(a.start_index, a.end_index, color="gold", alpha=0.3)
            ax.text(a.start_index, ax.get_ylim()[1], a.kind, fontsize=7, va="top")
        ax.set_title(f"{sc.name} · {sim.target_columns[0]} (labelled anomalies shaded)", loc="left")
        ax_s.set_ylabel("score (σ)")
    axes[0].legend(loc="upper right", fontsize=8)
    fig.savefig(path, dpi=100)


def run(args: argparse.Namespace) -> int:
    console = Console()
    out = Path(args.out)
    cfg = SensorFleetConfig(
        streams=args.streams,
        features=3,
        covariates=1,
        length=args.length,
        interval_s=args.interval,
        seed=args.seed,
        anomalies_per_stream=3,
    )
    sim = simulate_sensors(cfg)
    sim.write(out / "data")
    console.print(
        f"[bold]1/4 simulated[/] {cfg.streams} streams × {cfg.length} readings, "
        f"{len(sim.anomalies)} labelled anomalies → {out / 'data'}"
    )

    start = int(args.length * TRAIN_FRACTION)
    config = TrainConfig(
        covariates=sim.covariate_columns,
        epochs=args.epochs,
        patience=3,
        hidden=32,
        timesteps=24,
        seed=args.seed,
        device=args.device,
    )
    console.print(f"[bold]2/4 training[/] on the first {start} readings of each stream")
    with TrainingProgress(config.epochs) as progress:
        result = train([_head(s, start) for s in sim.series], config, on_progress=progress)
    report(result, console)
    save_checkpoint(out / "model.pt", result.to_checkpoint())

    console.print(f"[bold]3/4 scoring[/] readings {start}..{args.length} of every stream")
    sigma = _residual_sigma(result)
    scores = [_score_stream(result, k, s, start, sigma) for k, s in enumerate(sim.series)]
    metrics = _event_metrics(sim, scores, start)

    plot_loss(result, out / "loss.png")
    plot_forecast(result, out / "forecast.png")
    _plot_scores(sim, scores, out / "scores.png")
    (out / "summary.json").write_text(
        json.dumps({"training": result.metrics, "detection": metrics}, indent=2) + "\n"
    )
    table = Table(title="4/4 detection vs the simulator's labels")
    table.add_column("anomaly kind")
    table.add_column("recall", justify="right")
    for kind, recall in metrics["recall_by_kind"].items():
        table.add_row(kind, f"{recall:.2f}")
    console.print(table)
    console.print(
        f"detected {metrics['anomalies_detected']}/{metrics['anomalies_scored']} anomalies; "
        f"{metrics['alerts_on_labelled_anomalies']}/{metrics['alerts']} alerts on labelled "
        f"anomalies (threshold {ALERT_SIGMAS:g} σ, label-free)"
    )
    console.print(f"report: {out}/ (model.pt, summary.json, loss.png, forecast.png, scores.png)")
    return 0
