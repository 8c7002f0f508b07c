"""``detector bench``: engine, decode, end-to-end and memory benchmarks, as same-run ratios."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from rich.console import Console

from detector.device import resolve_device
from detector.errors import ConfigError

__all__ = ["register", "run"]

SECTIONS = ("engine", "decode", "kafka", "memory")


def _ints(text: str) -> list[int]:
    try:
        return [int(x.replace("_", "").replace("k", "000")) for x in text.split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1000,10k: {text!r}") from None


def _names(choices: tuple[str, ...]):
    def parse(text: str) -> list[str]:
        names = [x for x in text.split(",") if x]
        bad = [x for x in names if x not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {', '.join(choices)}")
        return names

    return parse


def register(subparsers: argparse._SubParsersAction) -> None:
    from detector.bench.synthetic import SHAPES

    p = subparsers.add_parser(
        "bench",
        help="measure throughput, latency and memory against same-run baselines",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--sections", type=_names(SECTIONS), default=list(SECTIONS))
    p.add_argument("--shapes", type=_names(tuple(SHAPES)), default=list(SHAPES))
    p.add_argument(
        "--streams",
        type=_ints,
        help="streams per engine case [default: 1000,4096,10000,100000; on CUDA also 65536,262144]",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads on CPU")
    p.add_argument(
        "--score-threads",
        type=int,
        default=0,
        help="engine threads scoring a wave (0 = the engine's default: up to 8 on CUDA, 1 on CPU)",
    )
    p.add_argument("--seconds", type=float, default=3.0, help="timing per engine case")
    p.add_argument(
        "--max-state-gb", type=float, default=8.0, help="skip engine cases needing more state"
    )
    p.add_argument("--kafka-streams", type=int, default=10_000)
    p.add_argument("--rate", type=float, default=5000.0, help="readings/s in the latency run")
    p.add_argument("--latency-seconds", type=float, default=10.0)
    p.add_argument("--memory-streams", type=_ints, default=[100_000, 1_000_000])
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run in a minute")
    p.add_argument("--json", action="store_true", help="print the JSON to stdout (tables: stderr)")
    p.add_argument("--out", default="bench.json", help="also write the JSON here ('' = don't)")
    p.set_defaults(func=run)


def _quick(args: argparse.Namespace) -> None:
    args.shapes = [s for s in args.shapes if s != "video512"]
    args.streams = [min(n, 2048) for n in (args.streams or [1000, 2048])[:2]]
    args.seconds = min(args.seconds, 0.5)
    args.kafka_streams = min(args.kafka_streams, 500)
    args.rate = min(args.rate, 1000.0)
    args.latency_seconds = min(args.latency_seconds, 3.0)
    args.memory_streams = [min(n, 20_000) for n in args.memory_streams[:1]]


def run(args: argparse.Namespace) -> int:
    from detector.bench.decode_bench import bench_decode
    from detector.bench.engine_bench import EngineCase, bench_engine, state_bytes
    from detector.bench.kafka_bench import bench_kafka
    from detector.bench.memory_bench import bench_memory
    from detector.bench.report import check_targets, device_info, print_tables

    if args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {args.threads}")
    if args.score_threads < 0:
        raise ConfigError(f"--score-threads must be >= 0 (0 = auto), got {args.score_threads}")
    if args.quick:
        _quick(args)
    device = resolve_device(args.device)
    if args.streams is None:
        args.streams = [1000, 4096, 10_000, 100_000]
        if device.type == "cuda":  # the GPU target is at 64 k streams and more
            args.streams += [65_536, 262_144]
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    console = Console(stderr=True) if args.json else Console()
    results: dict[str, object] = {"device": device_info(device), "args": _plain(args)}
    with console.status("bench") as status:

        def say(msg: str) -> None:
            status.update(msg)

        if "engine" in args.sections:
            rows = []
            for shape in args.shapes:
                for n in args.streams:
                    case = EngineCase(shape, n)
                    need = state_bytes(case) / 1024**3
                    if need > args.max_state_gb:
                        rows.append(
                            {"shape": shape, "streams": n, "skipped": f"needs ~{need:.1f} GB"}
                        )
                        continue
                    rows.append(
                        bench_engine(
                            case,
                            device,
                            args.seconds,
                            progress=say,
                            score_threads=args.score_threads,
                        )
                    )
            results["engine"] = rows
        if "decode" in args.sections:
            say("decode")
            results["decode"] = [
                bench_decode(fmt, f) for fmt in ("json", "binary") for f in (8, 128)
            ]
        if "kafka" in args.sections:
            results["kafka"] = bench_kafka(
                args.kafka_streams,
                rate=args.rate,
                latency_s=args.latency_seconds,
                threads=args.threads,
                progress=say,
            )
        if "memory" in args.sections:
            say(f"memory at {args.memory_streams} streams")
            results["memory"] = bench_memory(args.memory_streams)
    results["targets"] = check_targets(results)
    print_tables(results, console)
    text = json.dumps(results, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
        console.print(f"wrote {args.out}")
    if args.json:
        sys.stdout.write(text + "\n")
    return 0


def _plain(args: argparse.Namespace) -> dict[str, object]:
    return {k: v for k, v in vars(args).items() if k != "func"}
