"""``detector nab-score``: score a detector's NAB results directory as NAB v1.1 does."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from rich.console import Console
from rich.table import Table

from detector.nab_breakdown import with_breakdown, worst_files
from detector.nab_scoring import PROFILES, PUBLISHED_NAB, load_nab_results, nab_report

__all__ = ["losses_table", "register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "nab-score",
        help="score NAB results (results/<detector>/<category>/<detector>_<file>.csv)",
        description=(
            "Score one detector's NAB results with NAB's three profiles, at the corpus-optimal "
            "threshold (or --threshold), beside the published scoreboard."
        ),
    )
    p.add_argument("results_dir", help="NAB results directory of one detector")
    p.add_argument(
        "--labels", required=True, help="NAB labels/combined_windows.json", metavar="WINDOWS_JSON"
    )
    p.add_argument(
        "--data", default=None, help="NAB data directory: check every file has results on its rows"
    )
    p.add_argument(
        "--threshold", type=float, default=None, help="score at this threshold, not the optimal"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output only")
    p.set_defaults(func=run)


def _details(detector: str, report: dict) -> Table:
    table = Table(title=f"NAB scores: {detector} ({report['files']} files)")
    for col in ("profile", "threshold", "score", "raw", "windows", "FP rows"):
        table.add_column(col, justify="left" if col == "profile" else "right")
    for name, r in report["profiles"].items():
        table.add_row(
            name,
            f"{r['threshold']:.6g}",
            f"[bold]{r['normalised']:.1f}[/bold]",
            f"{r['raw']:.2f}",
            f"{r['windows_detected']}/{r['windows']}",
            str(r["fp"]),
        )
    return table


def _scoreboard(detector: str, report: dict) -> Table:
    """Our scores among the published ones, best standard score first."""
    profiles = list(report["profiles"])
    ours = {name: r["normalised"] for name, r in report["profiles"].items()}
    rows = list(PUBLISHED_NAB.items()) + [(f"[bold]{detector}[/bold]", ours)]
    rows.sort(key=lambda row: -row[1].get("standard", -math.inf))
    table = Table(title="beside the published NAB scoreboard")
    table.add_column("detector")
    for name in profiles:
        table.add_column(name, justify="right")
    for d, scores in rows:
        table.add_row(d, *("-" if p not in scores else f"{scores[p]:.1f}" for p in profiles))
    return table


def losses_table(title: str, report: dict, k: int = 10) -> Table | None:
    """The ``k`` files whose part of the standard score (``report["by_file"]``, see
    :func:`detector.nab_breakdown.with_breakdown`) falls furthest short of perfect."""
    worst = worst_files(report["by_file"], PROFILES["standard"], k)
    if not worst:
        return None
    threshold = report["profiles"]["standard"]["threshold"]
    title += f": where the NAB standard score is lost (threshold {threshold:.3g})"
    caption = (
        "early: missed windows with a detection within one window's width before them (NAB "
        "counts it as a false positive); short: below a perfect detector's part"
    )
    table = Table(title=title, caption=caption)
    table.add_column("file", overflow="fold")
    for c in ("found", "missed", "early", "FP", "FP cost", "raw", "short"):
        table.add_column(c, justify="right")
    for b in worst:
        table.add_row(
            b["file"],
            f"{b['found']}/{b['windows']}",
            str(len(b["missed"])),
            str(sum(m["detected_just_before"] for m in b["missed"])),
            str(b["fp"]),
            f"{b['fp_cost']:.2f}",
            f"{b['raw']:.2f}",
            f"{b['shortfall']:.2f}",
        )
    return table


def run(args: argparse.Namespace) -> int:
    files = load_nab_results(args.results_dir, args.labels, args.data)
    report = with_breakdown(files, nab_report(files, threshold=args.threshold))
    detector = Path(args.results_dir).resolve().name
    if args.json:
        print(json.dumps({"detector": detector, **report}, indent=2))
        return 0
    console = Console()
    console.print(_details(detector, report))
    mode = "a fixed threshold" if args.threshold is not None else "the corpus-optimal threshold"
    console.print(f"score: NAB normalised score (null = 0, perfect = 100) at {mode}")
    console.print(_scoreboard(detector, report))
    losses = losses_table(detector, report)
    if losses is not None:
        console.print(losses)
    return 0
