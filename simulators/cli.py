"""The ``simulate`` subcommand: ``detector simulate sensors|video ... --out DIR``."""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from simulators.anomalies import SENSOR_KINDS, VIDEO_KINDS
from simulators.sensors import SensorFleetConfig, simulate_sensors
from simulators.simulation import Simulation
from simulators.video import MAX_DIM, VideoConfig, simulate_video

__all__ = ["register", "run"]


def _kinds_type(valid: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    """An argparse ``type=`` that parses a comma list and rejects unknown kinds by name."""

    def parse(text: str) -> tuple[str, ...]:
        kinds = tuple(k.strip() for k in text.split(",") if k.strip())
        unknown = [k for k in kinds if k not in valid]
        if unknown or not kinds:
            what = f"unknown kind(s) {', '.join(unknown)}" if unknown else "no kinds given"
            raise argparse.ArgumentTypeError(f"{what}; valid kinds: {', '.join(valid)}")
        return kinds

    return parse


def _common_flags(p: argparse.ArgumentParser, kinds: Sequence[str]) -> None:
    p.add_argument("--length", type=int, help="rows per stream")
    p.add_argument("--interval", type=float, help="seconds between rows (whole seconds)")
    p.add_argument("--seed", type=int, help="random seed; the same seed gives the same files")
    p.add_argument(
        "--anomalies-per-stream", type=int, help="anomalies injected per stream (default 2)"
    )
    p.add_argument(
        "--kinds",
        type=_kinds_type(kinds),
        metavar="K1,K2",
        help=f"comma list of anomaly kinds: {','.join(kinds)}",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="directory to write CSVs into")
    p.set_defaults(func=run)


def register(subparsers: Any) -> None:
    """Add ``simulate sensors`` and ``simulate video`` to an argparse subparsers object."""
    simulate = subparsers.add_parser(
        "simulate", help="write simulated labelled streams (sensor fleet or camera embeddings)"
    )
    kinds = simulate.add_subparsers(dest="simulator", required=True, metavar="{sensors,video}")

    sensors = kinds.add_parser("sensors", help="a fleet of multivariate sensor streams")
    sensors.add_argument("--streams", type=int, help="number of sensor streams (default 20)")
    sensors.add_argument("--features", type=int, help="target channels per stream (default 4)")
    sensors.add_argument(
        "--covariates", type=int, help="setpoint columns that drive the targets (default 0)"
    )
    _common_flags(sensors, SENSOR_KINDS)

    video = kinds.add_parser("video", help="camera feeds as per-frame feature embeddings")
    video.add_argument(
        "--cameras",
        "--streams",
        dest="streams",
        type=int,
        metavar="N",
        help="number of cameras (default 8)",
    )
    video.add_argument("--dim", type=int, help=f"embedding size, 1..{MAX_DIM} (default 128)")
    _common_flags(video, VIDEO_KINDS)


def _config(args: argparse.Namespace) -> SensorFleetConfig | VideoConfig:
    # Only flags the user gave override the config's defaults.
    fields = {
        "length": args.length,
        "interval_s": args.interval,
        "seed": args.seed,
        "anomalies_per_stream": args.anomalies_per_stream,
        "anomaly_kinds": args.kinds,
    }
    if args.simulator == "sensors":
        fields |= {"streams": args.streams, "features": args.features}
        fields["covariates"] = args.covariates
        return SensorFleetConfig(**{k: v for k, v in fields.items() if v is not None})
    fields |= {"cameras": args.streams, "dim": args.dim}
    return VideoConfig(**{k: v for k, v in fields.items() if v is not None})


def _summary_rows(sim: Simulation, out: str) -> list[tuple[str, str]]:
    by_kind = Counter(a.kind for a in sim.anomalies)
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items())) or "none"
    columns = sim.series[0].columns
    shown = ", ".join(columns[:6]) + (f" ... ({len(columns)} in all)" if len(columns) > 6 else "")
    return [
        ("streams", str(len(sim.series))),
        ("rows per stream", str(len(sim.series[0]))),
        ("columns", shown),
        ("anomalies", f"{len(sim.anomalies)} ({kinds})"),
        ("output", out),
    ]


def _print_summary(title: str, rows: list[tuple[str, str]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # rich is a dependency, but a summary is not worth failing over
        print(title)
        for key, value in rows:
            print(f"  {key}: {value}")
        return
    table = Table(title=title, show_header=False)
    for key, value in rows:
        table.add_row(key, value)
    Console().print(table)


def run(args: argparse.Namespace) -> int:
    """Simulate, write the CSVs and manifest to ``args.out``, print a summary; return 0."""
    config = _config(args)
    sim = simulate_sensors(config) if args.simulator == "sensors" else simulate_video(config)
    out = sim.write(args.out)
    _print_summary(f"simulated {sim.kind}", _summary_rows(sim, str(out)))
    return 0
