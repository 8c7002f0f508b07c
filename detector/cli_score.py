"""``detector score``: labelled CSV in, one scored row per reading out, through the engine."""

from __future__ import annotations

import argparse
import csv
import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from detector.alerts import AlertConfig
from detector.checkpoint import load_checkpoint
from detector.csvio import PRESETS, read_dataset
from detector.engine import STATUS, BatchResult, Engine, EngineConfig
from detector.errors import ConfigError
from detector.feed import Feed, interleave
from detector.scoring import SCORERS, ScorerConfig

__all__ = ["register", "run", "engine_args", "engine_config", "score_feed"]


def engine_args(p: argparse.ArgumentParser) -> None:
    """Flags shared by every command that runs the engine."""
    p.add_argument("--scorer", default="gaussian", choices=sorted(SCORERS), help="error scorer")
    p.add_argument(
        "--open-at", type=float, default=AlertConfig.open_at, help="score that opens an alert"
    )
    p.add_argument(
        "--close-at", type=float, default=AlertConfig.close_at, help="score below which it closes"
    )
    p.add_argument(
        "--min-duration",
        type=int,
        default=AlertConfig.min_duration,
        help="anomalous readings in a row needed to open an alert",
    )
    p.add_argument(
        "--lone-cap",
        action=argparse.BooleanOptionalAction,
        default=AlertConfig.lone_cap,
        help="a lone anomalous reading opens an alert only if it beats its stream's record",
    )
    p.add_argument(
        "--sustained-beyond",
        type=float,
        default=ScorerConfig.sustained_beyond,
        help="how much the readings' sustained test's value beyond its clip teaches its "
        "spread, 0..1 (lower: a lasting fault keeps its evidence longer, a slow drift alerts "
        "longer too)",
    )
    p.add_argument(
        "--level-tail",
        action=argparse.BooleanOptionalAction,
        default=ScorerConfig.level_tail,
        help="read the level test through the tail the model's training rows showed (a "
        "stream's routine excursions are not anomalies); off: the Gaussian's",
    )
    p.add_argument(
        "--level-beside-relations",
        action=argparse.BooleanOptionalAction,
        default=ScorerConfig.level_beside_relations,
        help="run the level test also on streams the relations test reads (2 to 64 targets); "
        "off: only on the others, and on readings with a target missing, which it skips",
    )
    p.add_argument(
        "--residual-beyond",
        type=float,
        default=ScorerConfig.residual_beyond,
        help="the same for the sustained tests on the error's size and the whitened innovation",
    )
    p.add_argument("--batch-size", type=int, default=4096, help="readings per engine batch")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument(
        "--score-threads",
        type=int,
        default=EngineConfig.score_threads,
        help="threads that score a large wave in blocks of streams (0 = auto: up to 8 of the "
        "other cores when the model runs on a GPU, 1 on CPU)",
    )


def engine_config(args: argparse.Namespace) -> EngineConfig:
    """The engine settings the flags name; a combination the settings refuse is a
    :class:`ConfigError` (one line from the CLI, not a traceback)."""
    try:
        alerts = AlertConfig(
            open_at=args.open_at,
            close_at=args.close_at,
            min_duration=args.min_duration,
            lone_cap=args.lone_cap,
        )
        scorer = ScorerConfig(
            kind=args.scorer,
            sustained_beyond=args.sustained_beyond,
            residual_beyond=args.residual_beyond,
            level_tail=args.level_tail,
            level_beside_relations=args.level_beside_relations,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if args.score_threads < 0:
        raise ConfigError(f"--score-threads must be >= 0 (0 = auto), got {args.score_threads}")
    return EngineConfig(
        scorer=scorer, alerts=alerts, device=args.device, score_threads=args.score_threads
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "score",
        help="score labelled CSV streams with a trained model: per-reading scores and alerts",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", required=True, help="checkpoint from `detector train`")
    p.add_argument("--input", required=True, help="labelled CSV file or directory")
    p.add_argument("--preset", default="labelled", choices=sorted(PRESETS), help="CSV layout")
    p.add_argument("--output", required=True, help="CSV to write, one row per reading")
    engine_args(p)
    p.set_defaults(func=run)


def score_feed(engine: Engine, feed: Feed, batch_size: int, progress: bool = True) -> BatchResult:
    """Run a whole feed through ``engine`` in batches; one result for all readings."""
    parts = []
    with Progress(
        TextColumn("scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not progress,
    ) as bar:
        task = bar.add_task("score", total=len(feed))
        for sl in feed.batches(batch_size):
            parts.append(engine.process(feed.stream[sl], feed.timestamp[sl], feed.values[sl]))
            bar.advance(task, sl.stop - sl.start)
    return BatchResult(
        *(
            np.concatenate([getattr(p, k) for p in parts])
            for k in (
                "stream",
                "timestamp",
                "status",
                "error",
                "forecast",
                "score",
                "onset",
                "alert_id",
                "top_features",
            )
        ),
        opened=[e for p in parts for e in p.opened],
        closed=[e for p in parts for e in p.closed],
    )


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).isoformat().replace("+00:00", "Z")


def write_scores(path: Path, result: BatchResult, feed: Feed, targets: tuple[str, ...]) -> None:
    """One CSV row per reading: stream, timestamp, status, error, score, alert, id, features."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(
            [
                "stream",
                "timestamp",
                "status",
                "error",
                "score",
                "alert",
                "alert_id",
                "top_features",
                *(f"forecast_{t}" for t in targets),
                "label",
            ]
        )
        for i in range(len(result.timestamp)):
            out.writerow(
                [
                    result.stream[i],
                    _iso(result.timestamp[i]),
                    STATUS[result.status[i]],
                    f"{result.error[i]:.6g}",
                    f"{result.score[i]:.6f}",
                    int(result.alert_id[i] != ""),
                    result.alert_id[i],
                    result.top_features[i],
                    *(f"{v:.7g}" for v in result.forecast[i]),
                    "" if feed.label[i] < 0 else int(feed.label[i]),
                ]
            )


def run(args: argparse.Namespace) -> int:
    console = Console()
    ckpt = load_checkpoint(args.model)
    series = read_dataset(args.input, preset=args.preset)
    feed = interleave(series, ckpt.inputs)
    engine = Engine(ckpt, engine_config(args))
    result = score_feed(engine, feed, args.batch_size, progress=console.is_terminal)
    out = Path(args.output)
    write_scores(out, result, feed, ckpt.targets)
    alerts_path = out.with_name(out.stem + "-alerts.json")
    events = [asdict(e) for e in result.opened]
    alerts_path.write_text(json.dumps(events, indent=2) + "\n")
    rejected = int((result.status != 0).sum())
    console.print(
        f"scored {len(feed) - rejected:,} readings of {len(series)} stream(s) "
        f"({rejected} rejected); {len(events)} alert(s)"
    )
    console.print(f"scores: {out}\nalerts: {alerts_path}")
    return 0
