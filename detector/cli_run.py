"""``detector run``: the Kafka worker as a daemon, stopped cleanly by SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import signal
import threading

from prometheus_client import CollectorRegistry

from detector.config import load_config
from detector.metrics import serve
from detector.worker import Worker

__all__ = ["register", "run", "install_stop_handlers"]

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="run the Kafka worker: consume readings, score, publish alerts (a daemon)",
        description="Settings come from --config (YAML), then DETECTOR_<SECTION>_<KEY> "
        "environment variables, then --set overrides.",
    )
    p.add_argument("--config", help="YAML settings file (see deploy/detector.yaml)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. kafka.group_id=fleet-a (repeatable)",
    )
    p.set_defaults(func=run)


def install_stop_handlers(worker: Worker, timeout_s: float) -> None:
    """SIGTERM/SIGINT ask the worker to stop; if it has not within ``timeout_s``, exit hard.

    A hard exit loses nothing: offsets were committed only at checkpoints, so the next owner
    replays from there.
    """

    def handler(signum, _frame):
        log.warning("signal %d: stopping (at most %.0f s)", signum, timeout_s)
        worker.stop()
        timer = threading.Timer(timeout_s, lambda: os._exit(3))
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    # SIGUSR1 prints every thread's stack to stderr: where a stuck worker is stuck.
    faulthandler.register(signal.SIGUSR1, all_threads=True)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, overrides=args.overrides)
    log.info("settings: %s", config.redacted())
    registry = CollectorRegistry()
    worker = Worker(config, registry)
    if config.metrics.port:
        serve(registry, config.metrics.address, config.metrics.port, ready=worker.readiness)
    worker.start()
    install_stop_handlers(worker, config.worker.shutdown_timeout_s)
    print(
        f"detector run: consuming {', '.join(config.kafka.topics)} as group "
        f"{config.kafka.group_id!r} from {config.kafka.bootstrap_servers}",
        flush=True,
    )
    worker.run()
    return 0
