"""``detector demo``: the live Kafka demo (default) or the offline workflow (``--offline``)."""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the worker on an embedded broker fed by the simulator (--offline: no Kafka)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--kind", choices=("sensors", "video"), default="sensors", help="what to simulate"
    )
    p.add_argument("--streams", type=int, default=16, help="sensor streams or cameras")
    p.add_argument("--rate", type=float, default=400.0, help="readings per second produced")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of producing")
    p.add_argument("--dim", type=int, default=128, help="video embedding size")
    p.add_argument(
        "--chunk", type=int, default=1500, help="simulated readings per stream per chunk"
    )
    p.add_argument("--epochs", type=int, default=10, help="maximum training epochs")
    p.add_argument("--seed", type=int, default=7, help="seed for simulation and training")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--out", default="demo-out", help="directory for the model and the report")
    p.add_argument("--offline", action="store_true", help="no broker: simulate, train, score files")
    p.add_argument("--length", type=int, default=2400, help="--offline: readings per stream")
    p.add_argument(
        "--interval", type=float, default=300.0, help="--offline: seconds between readings"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.offline:
        from detector import demo_offline

        return demo_offline.run(args)
    from detector import demo_live

    return demo_live.run(args)
