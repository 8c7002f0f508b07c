"""Helpers for tests against the real broker: topics, settings, producing, reading back."""

from __future__ import annotations

import threading
import time
import uuid

from kafka import KafkaProducer

from detector.codec import encode_json
from detector.config import load_config
from detector.kafka_io import ensure_topics, read_to_end
from detector.worker import Worker
from simulators import SensorFleetConfig

PARTITIONS = 4
FLEET = SensorFleetConfig(
    streams=8,
    features=2,
    length=500,
    seed=11,
    anomaly_kinds=("spike", "level_shift"),
    anomalies_per_stream=1,
)


def topics_for(broker) -> dict[str, str]:
    run = uuid.uuid4().hex[:8]
    names = {k: f"{k}-{run}" for k in ("readings", "alerts", "dlq", "state")}
    ensure_topics(
        broker.bootstrap,
        {names["readings"]: PARTITIONS, names["alerts"]: 1, names["dlq"]: 1, names["state"]: 1},
        compacted=[names["state"]],
    )
    return names


def worker_config(broker, model, topics, group: str, interval: float = 0.5):
    return load_config(
        None,
        env={},
        overrides=[
            f"kafka.bootstrap_servers={broker.bootstrap}",
            f"kafka.group_id={group}",
            f"kafka.topics={topics['readings']}",
            f"kafka.alerts_topic={topics['alerts']}",
            f"kafka.dead_letter_topic={topics['dlq']}",
            f"kafka.state_topic={topics['state']}",
            "kafka.session_timeout_ms=6000",
            "kafka.heartbeat_interval_ms=1000",
            "kafka.max_poll_records=500",
            f"model.path={model}",
            "model.device=cpu",
            f"worker.checkpoint_interval_s={interval}",
            "metrics.port=0",
        ],
    )


def produce(broker, topic: str, sim, rows: slice = slice(None)) -> int:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
    n = 0
    length = len(sim.series[0])
    for t in range(length)[rows]:
        for s in sim.series:
            producer.send(
                topic,
                key=s.name.encode(),
                value=encode_json(s.name, float(s.timestamps[t]), s.values[t].tolist()),
            )
            n += 1
    producer.flush()
    producer.close()
    return n


def read_all(broker, topic: str) -> list:
    return read_to_end(broker.bootstrap, topic)


class Running:
    """A worker on a thread, stopped cleanly on exit."""

    def __init__(self, config) -> None:
        self.worker = Worker(config).start()
        self.thread = threading.Thread(target=self.worker.run, daemon=True)

    def __enter__(self) -> Worker:
        self.thread.start()
        return self.worker

    def __exit__(self, *exc) -> None:
        self.worker.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def handled(*workers) -> int:
    return sum(int(w.metrics.value("detector_readings_consumed_total")) for w in workers)
