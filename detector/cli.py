"""The ``detector`` command. Each subcommand lives in its own module and registers itself here."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from detector import __version__
from detector.errors import DetectorError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    # Imported here so `detector --version` stays fast and a broken optional part names itself.
    from detector import (
        cli_bench,
        cli_evaluate,
        cli_inspect,
        cli_nab_score,
        cli_produce,
        cli_run,
        cli_score,
        cli_train,
        demo,
    )
    from simulators import cli as simulate_cli

    parser = argparse.ArgumentParser(
        prog="detector",
        description="Streaming LSTM anomaly detection for sensor fleets and camera networks.",
    )
    parser.add_argument("--version", action="version", version=f"detector {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo.register(sub)
    cli_run.register(sub)
    cli_produce.register(sub)
    simulate_cli.register(sub)
    cli_train.register(sub)
    cli_score.register(sub)
    cli_evaluate.register(sub)
    cli_nab_score.register(sub)
    cli_inspect.register(sub)
    cli_bench.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; a :class:`DetectorError` becomes one line on stderr and exit status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except DetectorError as exc:
        print(f"detector {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"detector {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
