"""``detector produce``: the simulator as a Kafka producer, running until stopped."""

from __future__ import annotations

import argparse
import itertools
import signal
import threading

from kafka import KafkaProducer

from detector.producer import produce_chunks
from simulators import SensorFleetConfig, VideoConfig, sensor_chunks, video_chunks

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "produce",
        help="publish simulated readings with labelled anomalies to a Kafka topic at a rate",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    p.add_argument("--topic", default="readings", help="topic to write")
    p.add_argument("--kind", choices=("sensors", "video"), default="sensors")
    p.add_argument("--streams", type=int, default=16, help="sensor streams or cameras")
    p.add_argument("--features", type=int, default=4, help="sensor targets per stream")
    p.add_argument("--dim", type=int, default=128, help="video embedding size")
    p.add_argument("--rate", type=float, default=200.0, help="readings per second")
    p.add_argument("--duration", type=float, default=0.0, help="seconds to run; 0 = until stopped")
    p.add_argument("--seed", type=int, default=0, help="same seed as the training data")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.kind == "video":
        chunks = video_chunks(VideoConfig(cameras=args.streams, dim=args.dim, seed=args.seed))
    else:
        chunks = sensor_chunks(
            SensorFleetConfig(streams=args.streams, features=args.features, seed=args.seed)
        )
    chunks = itertools.islice(chunks, 1, None)  # chunk 0 is what `simulate` trains on
    producer = KafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=20)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        sent = produce_chunks(
            producer,
            args.topic,
            chunks,
            args.rate,
            args.duration or None,
            binary=args.kind == "video",
            stop=stop,
        )
    finally:
        producer.flush()
        producer.close()
    print(f"detector produce: sent {sent:,} readings to {args.topic}")
    return 0
