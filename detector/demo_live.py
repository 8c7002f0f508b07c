"""``detector demo``: the worker on the embedded broker, fed live by the simulator.

Starts Tansu on a free loopback port, creates the topics, trains a small model on clean
simulated data, then runs the simulator (producing at ``--rate`` readings/s, with labelled
anomalies) and the worker side by side, with a live terminal view and ``/metrics``. At the end it
reads the alerts topic back, compares the alerts with the simulator's labels, and writes a PNG
report. Ctrl-C stops everything cleanly; the broker process never outlives the demo.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
from kafka import KafkaProducer
from matplotlib.figure import Figure
from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.live import Live
from rich.table import Table

from detector.broker import EmbeddedBroker
from detector.checkpoint import save_checkpoint
from detector.config import load_config
from detector.detection_metrics import events
from detector.kafka_io import ensure_topics, read_to_end
from detector.metrics import serve
from detector.monitoring import LocalMonitoring
from detector.producer import produce_chunks
from detector.progress import TrainingProgress
from detector.training import TrainConfig, train
from detector.worker import Worker
from simulators import SensorFleetConfig, VideoConfig, sensor_chunks, video_chunks

__all__ = ["run"]

TOPICS = {"readings": 4, "alerts": 1, "dead-letters": 1, "state": 1}


@dataclass
class Produced:
    """What the simulator sent, kept for the summary: per stream, times, first value, labels."""

    ts: dict[str, list[float]] = field(default_factory=dict)
    value: dict[str, list[float]] = field(default_factory=dict)
    label: dict[str, list[int]] = field(default_factory=dict)
    count: int = 0

    def add(self, stream: str, ts: float, value: float, label: int) -> None:
        self.ts.setdefault(stream, []).append(ts)
        self.value.setdefault(stream, []).append(value)
        self.label.setdefault(stream, []).append(label)
        self.count += 1


def _chunks(args: argparse.Namespace, anomalies: bool):
    n = 0 if not anomalies else 2
    if args.kind == "video":
        cfg = VideoConfig(
            cameras=args.streams,
            dim=args.dim,
            length=args.chunk,
            seed=args.seed,
            anomalies_per_stream=n,
        )
        return video_chunks(cfg)
    cfg = SensorFleetConfig(
        streams=args.streams, features=3, length=args.chunk, seed=args.seed, anomalies_per_stream=n
    )
    return sensor_chunks(cfg)


def _train(args: argparse.Namespace, out: Path, console: Console) -> Path:
    clean = next(_chunks(args, anomalies=False))  # chunk 0, no anomalies: what normal looks like
    cfg = TrainConfig(
        epochs=args.epochs, patience=3, hidden=32, timesteps=24, seed=args.seed, device="cpu"
    )
    console.print(f"[bold]training[/] on {len(clean.series)} clean {args.kind} streams")
    with TrainingProgress(cfg.epochs, console) as progress:
        result = train(clean.series, cfg, on_progress=progress)
    return save_checkpoint(out / "model.pt", result.to_checkpoint())


def _produce(args, bootstrap: str, topic: str, produced: Produced, stop: threading.Event) -> None:
    """Send simulated readings (from chunk 1 on: chunk 0 trained the model) at ``args.rate``."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    chunks = _chunks(args, anomalies=True)
    next(chunks)
    try:
        produce_chunks(
            producer,
            topic,
            chunks,
            args.rate,
            args.duration,
            binary=args.kind == "video",
            stop=stop,
            on_send=produced.add,
        )
    finally:
        producer.flush()
        producer.close()


def _view(worker: Worker, produced: Produced, started: float, links: dict[str, str]) -> Table:
    m = worker.metrics
    scored = int(m.value("detector_readings_scored_total"))
    elapsed = time.monotonic() - started
    table = Table(title="detector demo (Ctrl-C to stop)", show_header=False)
    rows = [
        ("elapsed", f"{elapsed:.0f} s"),
        ("produced", f"{produced.count:,}"),
        ("scored", f"{scored:,} ({scored / max(elapsed, 1e-9):,.0f}/s)"),
        ("lag", f"{max(produced.count - int(m.value('detector_readings_consumed_total')), 0):,}"),
        ("streams", f"{len(worker.engine.state)}"),
        (
            "alerts open / opened",
            f"{len(worker.engine.alerts.open)} / {int(m.value('detector_alerts_opened_total'))}",
        ),
        ("partitions", ", ".join(str(tp.partition) for tp in sorted(worker.assigned))),
        *links.items(),
    ]
    for k, v in rows:
        table.add_row(k, v)
    return table


def _alerts(bootstrap: str, topic: str) -> list[dict]:
    latest = {}
    for record in read_to_end(bootstrap, topic):  # by id: the latest status wins (resolved)
        alert = orjson.loads(record.value)
        latest[alert["id"]] = alert
    return list(latest.values())


def _summary(produced: Produced, alerts: list[dict], interval: float) -> dict:
    """Alerts vs labels: an alert is right if it starts in or just after a labelled range."""
    ranges = {
        s: [(produced.ts[s][a], produced.ts[s][b - 1]) for a, b in events(lab)]
        for s, lab in produced.label.items()
    }
    slack = 3 * interval
    right = sum(
        any(a <= al["start"] <= b + slack for a, b in ranges.get(al["stream"], [])) for al in alerts
    )
    found = sum(
        any(a - slack <= al["start"] <= b + slack for al in alerts if al["stream"] == s)
        for s, spans in ranges.items()
        for a, b in spans
    )
    total = sum(len(v) for v in ranges.values())
    return {
        "readings_produced": produced.count,
        "alerts": len(alerts),
        "labelled_anomalies": total,
        "precision": right / len(alerts) if alerts else None,
        "recall": found / total if total else None,
    }


def _plot(produced: Produced, alerts: list[dict], path: Path, n: int = 4) -> None:
    streams = sorted(produced.ts, key=lambda s: -sum(produced.label[s]))[:n]
    if not streams:  # stopped before the simulator sent anything: say so, in the same place
        fig = Figure(figsize=(6, 1.2))
        fig.text(
            0.5,
            0.5,
            "no readings: the demo stopped before the simulator sent any",
            ha="center",
            va="center",
        )
        fig.savefig(path, dpi=100)
        return
    fig = Figure(figsize=(11, 2.4 * len(streams) + 0.5), layout="constrained")
    axes = fig.subplots(len(streams), 1, squeeze=False)[:, 0]
    for ax, s in zip(axes, streams, strict=True):
        ts = np.array(produced.ts[s])
        ax.plot(ts - ts[0], produced.value[s], color="black", lw=0.7)
        for a, b in events(np.array(produced.label[s])):
            ax.axvspan(ts[a] - ts[0], ts[b - 1] - ts[0], color="gold", alpha=0.4)
        for al in (al for al in alerts if al["stream"] == s):
            ax.axvline(al["start"] - ts[0], color="tab:red", lw=1)
        ax.set_title(f"{s}: labelled anomalies shaded, alerts in red", loc="left", fontsize=9)
    axes[-1].set_xlabel("seconds of simulated time")
    fig.savefig(path, dpi=100)


def _config(args, bootstrap: str, model: Path, topics: dict[str, str]):
    return load_config(
        None,
        env={},
        overrides=[
            f"kafka.bootstrap_servers={bootstrap}",
            "kafka.group_id=demo",
            f"kafka.topics={topics['readings']}",
            f"kafka.alerts_topic={topics['alerts']}",
            f"kafka.dead_letter_topic={topics['dead-letters']}",
            f"kafka.state_topic={topics['state']}",
            f"kafka.format={'binary' if args.kind == 'video' else 'json'}",
            "kafka.session_timeout_ms=6000",
            "kafka.heartbeat_interval_ms=1000",
            f"model.path={model}",
            f"model.device={args.device}",
            "worker.checkpoint_interval_s=5",
            "metrics.port=0",
        ],
    )


def _watch(worker: Worker, producer: threading.Thread, produced: Produced, links, console):
    """The live view until the simulator is done and the worker has caught up (or 15 s)."""
    started = time.monotonic()
    with Live(
        _view(worker, produced, started, links),
        console=console,
        refresh_per_second=2,
        transient=False,
    ) as live:
        while producer.is_alive():
            live.update(_view(worker, produced, started, links))
            time.sleep(0.5)
        drain = time.monotonic() + 15  # let the worker catch up with the last readings
        while (
            int(worker.metrics.value("detector_readings_consumed_total")) < produced.count
            and time.monotonic() < drain
        ):
            live.update(_view(worker, produced, started, links))
            time.sleep(0.5)


def _stop_worker(worker: Worker, consumer: threading.Thread) -> None:
    """Stop the worker: its loop checkpoints and leaves the group; one that never ran just
    leaves."""
    if consumer.ident is None:
        worker.close(checkpoint=False)
        return
    worker.stop()
    consumer.join(30)


def _live(args, bootstrap: str, model: Path, topics, produced, workers: list, cleanup, console):
    """Start the worker (appended to ``workers``), its endpoints, local monitoring and the
    simulator, each registered on the ``cleanup`` stack as soon as it runs; then watch them."""
    ensure_topics(bootstrap, {topics[k]: p for k, p in TOPICS.items()}, compacted=[topics["state"]])
    registry = CollectorRegistry()
    worker = Worker(_config(args, bootstrap, model, topics), registry)
    workers.append(worker)
    server = serve(registry, "127.0.0.1", 0, ready=worker.readiness)
    cleanup.callback(server.shutdown)
    monitoring = cleanup.enter_context(LocalMonitoring(server.server_port))
    links = {"metrics": f"http://127.0.0.1:{server.server_port}/metrics", **monitoring.urls}
    consumer = threading.Thread(target=worker.run, daemon=True)
    cleanup.callback(_stop_worker, worker, consumer)
    worker.start()
    consumer.start()
    stop = threading.Event()
    producer = threading.Thread(
        target=_produce, daemon=True, args=(args, bootstrap, topics["readings"], produced, stop)
    )
    cleanup.callback(producer.join, 10)
    cleanup.callback(stop.set)
    producer.start()
    _watch(worker, producer, produced, links, console)


def run(args: argparse.Namespace) -> int:
    console = Console()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = _train(args, out, console)
    topics = {k: f"demo.{k}" for k in TOPICS}
    produced, workers = Produced(), []
    # Ctrl-C at any point after the broker starts (setting up included) stops what has started,
    # in reverse order, and still reports; the broker stops last, whatever happens.
    with EmbeddedBroker() as broker:
        with ExitStack() as cleanup:
            try:
                _live(args, broker.bootstrap, model, topics, produced, workers, cleanup, console)
            except KeyboardInterrupt:
                console.print("interrupted: stopping the simulator, the worker and the broker")
        console.print()
        alerts = _alerts(broker.bootstrap, topics["alerts"])
    summary = _summary(produced, alerts, 60.0 if args.kind == "sensors" else 1.0)
    scored = sum(w.metrics.value("detector_readings_scored_total") for w in workers)
    summary["readings_scored"] = int(scored)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _plot(produced, alerts, out / "report.png")
    p, r = summary["precision"], summary["recall"]
    console.print(
        f"scored {summary['readings_scored']:,} of {produced.count:,} readings; "
        f"{len(alerts)} alerts; precision {p if p is None else f'{p:.2f}'}, "
        f"recall {r if r is None else f'{r:.2f}'} against the simulator's labels"
    )
    console.print(f"report: {out / 'report.png'}, {out / 'summary.json'}")
    return 0
