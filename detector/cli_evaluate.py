"""``detector evaluate``: ours vs baselines vs published results on labelled benchmarks."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from detector.cli_nab_score import losses_table
from detector.cli_score import engine_args, engine_config
from detector.cli_train import _columns, indicator_note
from detector.csvio import PRESETS, load_nab_windows, read_dataset
from detector.errors import ConfigError, DataError, listed
from detector.eval_plots import plot_some
from detector.evaluation import EvalSpec, metrics_for, run_nab, run_skab, run_split_by_columns
from detector.nab_scoring import PUBLISHED_NAB
from detector.progress import TrainingProgress

__all__ = ["register", "run", "DATASETS_DIR", "PUBLISHED_SKAB_F1"]

DATASETS_DIR = Path(__file__).resolve().parents[2] / "shared" / "datasets"
PUBLISHED_SKAB_F1 = {"Conv-AE": 0.78, "vanilla LSTM": 0.54}  # SKAB leaderboard, outlier F1
PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="measure detection on labelled data (NAB, SKAB or --train/--test) vs baselines",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--dataset", choices=("nab", "skab"), help="built-in benchmark protocol")
    p.add_argument("--datasets-dir", default=str(DATASETS_DIR), help="where nab/ and skab/ live")
    p.add_argument("--train", help="training directory (labelled CSV), with --test")
    p.add_argument("--test", help="test directory (labelled CSV), with --train")
    p.add_argument("--preset", default="labelled", choices=sorted(PRESETS), help="CSV layout")
    p.add_argument(
        "--targets",
        type=_columns,
        help="comma list of columns to forecast (default: all but indicators and constants)",
    )
    p.add_argument("--covariates", type=_columns, default=(), help="input-only columns")
    p.add_argument("--max-files", type=int, help="evaluate only the first N files (a quick look)")
    p.add_argument("--epochs", type=int, default=EvalSpec.train.epochs, help="max training epochs")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument(
        "--calendar",
        default=EvalSpec.train.calendar,
        help="time-of-day / day-of-week phases as model inputs: auto, off, or day,week",
    )
    p.add_argument(
        "--warm",
        action=argparse.BooleanOptionalAction,
        default=EvalSpec.warm,
        help="with --train/--test: a test stream that continues a training stream (same name, "
        "later readings) goes on from the state its training readings left, as a running worker "
        "would (default); --no-warm starts every test stream fresh",
    )
    p.add_argument("--report", help="directory for report.json and plots (default eval-<name>/)")
    engine_args(p)
    p.set_defaults(func=run)


def _spec(args: argparse.Namespace) -> EvalSpec:
    base = EvalSpec()
    train = dataclasses.replace(
        base.train,
        epochs=args.epochs,
        seed=args.seed,
        device=args.device,
        targets=args.targets,
        covariates=args.covariates,
        calendar=args.calendar,
    )
    return EvalSpec(train=train, engine=engine_config(args), warm=args.warm)


def _load(args: argparse.Namespace):
    root = Path(args.datasets_dir)
    if args.dataset == "nab":
        series = read_dataset(root / "nab" / "data", preset="nab")
        windows = load_nab_windows(root / "nab" / "labels" / "combined_windows.json")
        series = series[: args.max_files]
        return series, [windows[f"{s.name}.csv"] for s in series]
    if args.dataset == "skab":
        return read_dataset(root / "skab" / "data", preset="skab"), None
    if not (args.train and args.test):
        raise ConfigError("give --dataset nab|skab, or both --train DIR and --test DIR")
    test = read_dataset(args.test, preset=args.preset)[: args.max_files]
    # Found before training, not after it: the metrics need every test stream's labels.
    unlabelled = [s.name for s in test if s.labels is None]
    if unlabelled:
        column = PRESETS[args.preset].label_column
        raise DataError(
            f"test stream(s) {listed([repr(n) for n in unlabelled], 5)} have no {column!r} "
            "column: evaluate measures the test streams against their labels"
        )
    return (read_dataset(args.train, preset=args.preset), test), None


def _run(args, spec, data, console):
    if args.dataset == "nab":
        with Progress(
            TextColumn("NAB files"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task("nab", total=len(data))
            runs = run_nab(data, spec, on_file=lambda name: bar.advance(task))
        return runs, data, "value"
    with TrainingProgress(spec.train.epochs, console) as progress:
        if args.dataset == "skab":
            runs, test = run_skab(data, spec, on_train=progress)
        else:

            def say(k: int, n: int, streams: list) -> None:
                console.print(
                    f"model {k + 1} of {n} (streams differ in their columns): "
                    f"{len(streams[0].columns)} columns, trained on "
                    + listed([s.name for s in streams], 3)
                )

            runs, ckpts = run_split_by_columns(*data, spec, on_train=progress, on_model=say)
            test = data[1]
            for ckpt in {id(c): c for c in ckpts}.values():  # each model once, in order
                note = indicator_note(ckpt.metrics)
                if note:
                    console.print(note)
            return runs, test, [ckpt.targets[0] for ckpt in ckpts]
    target = spec.train.targets[0] if spec.train.targets else test[0].columns[0]
    return runs, test, target


def _fmt(x: float | None, pct: bool = False) -> str:
    return "-" if x is None else (f"{x:.1f}" if pct else f"{x:.3f}")


def _decisions_table(name: str, metrics: dict[str, dict], published: dict) -> Table:
    table = Table(title=f"{name}: label-free alert decisions (ours vs baselines, same run)")
    cols = [
        "detector",
        "event P",
        "event R",
        "event F1",
        "point F1",
        "composite F1",
        "PA-F1 (random)",
        "delay rows",
        "NAB std",
    ]
    for c in cols:
        table.add_column(c, justify="left" if c == "detector" else "right")
    for det, m in metrics.items():
        pa = m["point_adjusted"]
        table.add_row(
            det,
            _fmt(m["event"]["precision"]),
            _fmt(m["event"]["recall"]),
            _fmt(m["event"]["f1"]),
            _fmt(m["point"]["f1"]),
            _fmt(m["composite"]["f1"]),
            f"{_fmt(pa['f1'])} ({_fmt(pa['random_baseline_f1'])})",
            _fmt(m["delay"]["mean_rows"], pct=True),
            _fmt(m["nab_at_alert_decisions"]["profiles"]["standard"]["normalised"], pct=True),
        )
    for det, nums in published.items():
        if "f1" in nums:
            table.add_row(f"[dim]{det} (published)", "", "", "", _fmt(nums["f1"]), *[""] * 4)
    return table


def _nab_table(name: str, metrics: dict[str, dict], published: dict) -> Table:
    table = Table(title=f"{name}: NAB score at the corpus-optimal threshold")
    for c in ("detector", *PROFILES):
        table.add_column(c, justify="left" if c == "detector" else "right")
    for det, m in metrics.items():
        nab = m["nab_at_optimal_threshold"]["profiles"]
        table.add_row(det, *(_fmt(nab[p]["normalised"], pct=True) for p in PROFILES))
    for det, nums in published.items():
        if "f1" not in nums:
            table.add_row(
                f"[dim]{det} (published)", *(_fmt(nums.get(p), pct=True) for p in PROFILES)
            )
    return table


def run(args: argparse.Namespace) -> int:
    console = Console()
    if not console.is_terminal:  # a log or a pipe: wide enough for the tables
        console = Console(width=120)
    spec = _spec(args)
    data, windows = _load(args)
    name = args.dataset or Path(args.test).name
    runs, test, target = _run(args, spec, data, console)
    metrics = {det: metrics_for(test, out, windows, seed=args.seed) for det, out in runs.items()}
    published = (
        PUBLISHED_NAB
        if args.dataset == "nab"
        else {k: {"f1": v} for k, v in PUBLISHED_SKAB_F1.items()}
        if args.dataset == "skab"
        else {}
    )
    console.print(_decisions_table(name, metrics, published))
    console.print(_nab_table(name, metrics, published))
    ours = next(iter(metrics))  # the LSTM: the baselines follow it
    losses = losses_table(f"{name}: {ours}", metrics[ours]["nab_at_optimal_threshold"])
    if losses is not None:
        console.print(losses)
    report_dir = Path(args.report or f"eval-{name}")
    report_dir.mkdir(parents=True, exist_ok=True)
    report = {
        "dataset": name,
        "streams": len(test),
        "settings": {
            "train": spec.train.to_dict(),
            "engine": dataclasses.asdict(spec.engine),
            "warm": spec.warm,
        },
        "detectors": metrics,
        "published": published,
    }
    (report_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    plots = plot_some(test, runs, target, report_dir / "plots", spec.engine.alerts.open_at)
    console.print(
        f"report: {report_dir / 'report.json'}; {len(plots)} plot(s) in {report_dir / 'plots'}"
    )
    return 0
