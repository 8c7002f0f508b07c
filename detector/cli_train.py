"""``detector train``: labelled CSV in, checkpoint + metrics JSON + PNG report out."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

from rich.console import Console
from rich.table import Table

from detector.checkpoint import save_checkpoint
from detector.csvio import PRESETS, read_dataset
from detector.device import DEVICE_CHOICES
from detector.errors import listed
from detector.plots import plot_forecast, plot_loss
from detector.progress import TrainingProgress
from detector.scaling import SCALER_KINDS
from detector.training import TrainConfig, TrainResult, train
from detector.trainset import SCALING_MODES

__all__ = ["register", "run", "config_from_args", "report"]

_HELP = {
    "timesteps": "window length T: readings read before each forecast",
    "hidden": "LSTM units per layer",
    "layers": "stacked LSTM layers",
    "dropout": "dropout between layers and before the dense head",
    "scaler": "feature scaling fitted on training rows",
    "scaling": "per_stream: one scaler per stream (fleets of unlike ranges); global: one for all",
    "val_fraction": "last fraction of each stream held out for validation / early stopping",
    "batch_size": "windows per Adam step",
    "epochs": "maximum epochs",
    "patience": "epochs without validation improvement before early stopping",
    "min_delta": "relative validation improvement that counts",
    "lr": "Adam learning rate",
    "grad_clip": "maximum gradient norm",
    "level_jitter": "random level shift of each training window's targets, scaled units (0 = off)",
    "calendar": "time-of-day / day-of-week phases as inputs: auto (each period the training "
    "split spans 3+ times), off, or day,week",
    "seed": "random seed (weights, dropout, shuffling)",
    "device": "torch device",
}
_CHOICES = {"scaler": SCALER_KINDS, "scaling": SCALING_MODES, "device": DEVICE_CHOICES}


def _columns(text: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in text.split(",") if c.strip())


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` to the CLI."""
    p = subparsers.add_parser(
        "train",
        help="train an LSTM forecaster on labelled CSV streams (early stopping, metrics, plots)",
        description="Train one LSTM forecaster on every stream in a file or directory.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data", required=True, help="labelled CSV file, or directory of them")
    p.add_argument("--preset", default="labelled", choices=sorted(PRESETS), help="CSV layout")
    p.add_argument("--out", default="model.pt", help="checkpoint file to write")
    p.add_argument("--report-dir", help="where metrics.json and PNGs go (default: <out>-report/)")
    p.add_argument(
        "--targets",
        type=_columns,
        help="columns to forecast, comma list (default: all but covariates, indicators, constants)",
    )
    p.add_argument(
        "--covariates", type=_columns, default=(), help="comma list of input-only columns"
    )
    p.add_argument(
        "--keep-labelled",
        dest="skip_labelled",
        action="store_false",
        help="train on windows that touch labelled anomalies too",
    )
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        if f.name not in _HELP:
            continue
        default = getattr(defaults, f.name)
        p.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=type(default),
            default=default,
            choices=_CHOICES.get(f.name),
            help=_HELP[f.name],
        )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` the parsed flags describe."""
    names = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in names})


def indicator_note(metrics: dict) -> str | None:
    """What the default rule did with indicator and constant columns, if anything."""
    training = metrics.get("training", {})
    moved = training.get("indicator_inputs") or []
    ignored = training.get("constant_columns_ignored") or []
    parts = []
    if moved:
        parts.append(
            f"{len(moved)} indicator column(s) (two distinct values in training) are read as "
            f"inputs, not forecast: {listed(moved)}."
        )
    if ignored:
        parts.append(
            f"{len(ignored)} constant column(s) (one value in training) are not read: "
            f"{listed(ignored)}."
        )
    if not parts:
        return None
    return " ".join(parts) + " Name columns in --targets or --covariates to use them anyway."


def report(result: TrainResult, console: Console) -> None:
    """Print validation MSE / MAE / MAPE, model vs persistence, overall and per target."""
    val = result.metrics["validation"]
    table = Table(title=f"Validation ({val['samples']} windows, original units)")
    for col in ("target", "metric", "LSTM", "persistence", "LSTM / persistence"):
        table.add_column(col, justify="left" if col in ("target", "metric") else "right")
    rows = [("all", val)] + list(val["per_target"].items())
    for name, m in rows:
        for metric in ("mse", "mae", "mape"):
            ours, base = m["model"][metric], m["persistence"][metric]
            ratio = f"{ours / base:.3f}" if base else "-"
            unit = " %" if metric == "mape" else ""
            table.add_row(name, metric.upper(), f"{ours:.4g}{unit}", f"{base:.4g}{unit}", ratio)
        name = ""
    console.print(table)
    tr = result.metrics["training"]
    why = "early stopping" if tr["stopped_early"] else "epoch limit"
    console.print(f"{tr['epochs_run']} epochs ({why}); best epoch {tr['best_epoch']} restored.")
    if result.calendar:
        console.print(f"calendar phases read as inputs: {', '.join(result.calendar)}.")
    note = indicator_note(result.metrics)
    if note:
        console.print(note)


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=False)
    config = config_from_args(args)
    series = read_dataset(args.data, preset=args.preset)
    console.print(
        f"read {len(series)} stream(s), {sum(len(s) for s in series):,} rows from {args.data}"
    )
    if args.quiet:
        result = train(series, config)
    else:
        with TrainingProgress(config.epochs, Console(stderr=True)) as progress:
            result = train(series, config, on_progress=progress)
    out = Path(args.out)
    report_dir = Path(args.report_dir) if args.report_dir else out.with_name(out.stem + "-report")
    report_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, result.to_checkpoint())
    (report_dir / "metrics.json").write_text(json.dumps(result.metrics, indent=2) + "\n")
    plot_loss(result, report_dir / "loss.png")
    plot_forecast(result, report_dir / "forecast.png")
    report(result, console)
    console.print(
        f"checkpoint: {out}\nreport:     {report_dir}/ (metrics.json, loss.png, forecast.png)"
    )
    return 0
