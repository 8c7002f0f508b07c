"""``detector demo --offline``: the whole workflow without Kafka, in about a minute.

simulate a sensor fleet with labelled anomalies → train the LSTM on the first half of every
stream → score every reading through the streaming engine (the same one ``detector score`` and
the worker use) → compare its label-free alerts with the simulator's labels → report and plot.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from detector.checkpoint import save_checkpoint
from detector.cli_train import report
from detector.detection_metrics import evaluate_streams
from detector.engine import EngineConfig
from detector.eval_plots import plot_some
from detector.evaluation import StreamScores, head, score_streams
from detector.plots import plot_forecast, plot_loss
from detector.progress import TrainingProgress
from detector.training import TrainConfig, train
from simulators import SensorFleetConfig, Simulation, simulate_sensors

__all__ = ["run"]

TRAIN_FRACTION = 0.5  # first half of each stream trains (with its own validation split)


def _detection(sim: Simulation, scores: list[StreamScores], start: int) -> dict[str, object]:
    """Alerts vs labels over the held-out half: pooled metrics and recall per anomaly kind."""
    pooled = evaluate_streams(
        [
            (s.labels[start:], sc.flag[start:], s.timestamps[start:])
            for s, sc in zip(sim.series, scores, strict=True)
        ]
    )
    found: dict[str, list[bool]] = {}
    names = [s.name for s in sim.series]
    for a in sim.anomalies:
        if a.start_index >= start:
            flags = scores[names.index(a.stream)].flag[a.start_index : a.end_index]
            found.setdefault(a.kind, []).append(bool(flags.any()))
    pooled["recall_by_kind"] = {k: float(np.mean(v)) for k, v in sorted(found.items())}
    return pooled


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
        result = train([head(s, start) for s in sim.series], config, on_progress=progress)
    report(result, console)
    save_checkpoint(out / "model.pt", result.to_checkpoint())

    console.print(
        f"[bold]3/4 scoring[/] every reading through the engine; "
        f"measuring readings {start}..{args.length}"
    )
    engine = EngineConfig(device=args.device)
    scores = score_streams(result.to_checkpoint(), sim.series, engine)
    metrics = _detection(sim, scores, start)

    plot_loss(result, out / "loss.png")
    plot_forecast(result, out / "forecast.png")
    plots = plot_some(
        sim.series,
        {"lstm": scores},
        sim.target_columns[0],
        out / "plots",
        engine.alerts.open_at,
        n=3,
    )
    (out / "summary.json").write_text(
        json.dumps({"training": result.metrics, "detection": metrics}, indent=2) + "\n"
    )
    table = Table(title="4/4 detection vs the simulator's labels")
    table.add_column("anomaly kind")
    table.add_column("recall", justify="right")
    for kind, recall in metrics["recall_by_kind"].items():
        table.add_row(kind, f"{recall:.2f}")
    console.print(table)
    event = metrics["event"]
    console.print(
        f"anomalies detected: recall {event['recall']:.2f}; alerts on a labelled anomaly: "
        f"precision {event['precision'] or 0:.2f} (alert rule: score >= {engine.alerts.open_at}, "
        "label-free)"
    )
    console.print(
        f"report: {out}/ (model.pt, summary.json, loss.png, forecast.png, "
        f"{len(plots)} plots in plots/)"
    )
    return 0
