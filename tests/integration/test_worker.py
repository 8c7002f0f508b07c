"""The worker against a real Tansu broker: end to end, dead letters, restart, rebalance."""

from __future__ import annotations

import threading
import time
import uuid

import numpy as np
import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from detector.broker import EmbeddedBroker
from detector.checkpoint import save_checkpoint
from detector.codec import encode_json
from detector.config import load_config
from detector.kafka_io import ensure_topics
from detector.training import TrainConfig, train
from detector.worker import Worker
from simulators import SensorFleetConfig, simulate_sensors

pytestmark = pytest.mark.integration
PARTITIONS = 4
FLEET = SensorFleetConfig(
    streams=8,
    features=2,
    length=500,
    seed=11,
    anomaly_kinds=("spike", "level_shift"),
    anomalies_per_stream=1,
)


@pytest.fixture(scope="module")
def broker():
    with EmbeddedBroker() as b:
        yield b


@pytest.fixture(scope="module")
def sim():
    return simulate_sensors(FLEET)


@pytest.fixture(scope="module")
def model(tmp_path_factory, sim):
    heads = [s for s in sim.series]
    cfg = TrainConfig(timesteps=16, hidden=16, epochs=3, device="cpu", val_fraction=0.3)
    result = train(heads, cfg)
    return save_checkpoint(tmp_path_factory.mktemp("model") / "m.pt", result.to_checkpoint())


def _topics(broker) -> dict[str, str]:
    run = uuid.uuid4().hex[:8]
    names = {k: f"{k}-{run}" for k in ("readings", "alerts", "dlq", "state")}
    ensure_topics(
        broker.bootstrap,
        {names["readings"]: PARTITIONS, names["alerts"]: 1, names["dlq"]: 1, names["state"]: 1},
        compacted=[names["state"]],
    )
    return names


def _config(broker, model, topics, group: str, interval: float = 0.5):
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


def _produce(broker, topic: str, sim, rows: slice = slice(None)) -> int:
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


def _read_all(broker, topic: str) -> list:
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    out, idle = [], 0
    while idle < 3:
        got = [r for batch in consumer.poll(timeout_ms=300).values() for r in batch]
        out += got
        idle = 0 if got else idle + 1
    consumer.close()
    return out


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


def _wait(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def _handled(*workers) -> int:
    return sum(int(w.metrics.value("detector_readings_consumed_total")) for w in workers)


def _alert_ids(records) -> set[str]:
    return {
        orjson.loads(r.value)["id"] for r in records if orjson.loads(r.value)["status"] == "open"
    }


def _reference_alerts(broker, model, sim) -> set[str]:
    topics = _topics(broker)
    n = _produce(broker, topics["readings"], sim)
    with Running(_config(broker, model, topics, "ref")) as w:
        _wait(lambda: _handled(w) >= n)
    return _alert_ids(_read_all(broker, topics["alerts"]))


def test_end_to_end_alerts_match_labelled_anomalies(broker, model, sim) -> None:
    topics = _topics(broker)
    n = _produce(broker, topics["readings"], sim)
    with Running(_config(broker, model, topics, "e2e")) as w:
        _wait(lambda: _handled(w) >= n)
        assert sorted(tp.partition for tp in w.assigned) == list(range(PARTITIONS))
    assert int(w.metrics.value("detector_readings_scored_total")) == n  # every reading scored once
    alerts = [orjson.loads(r.value) for r in _read_all(broker, topics["alerts"])]
    opened = [a for a in alerts if a["status"] == "open"]
    assert opened, "no alert raised"
    truth = {s.name: s for s in sim.series}
    hits = 0
    for a in opened:
        s = truth[a["stream"]]
        row = int(np.searchsorted(s.timestamps, a["start"]))
        hits += int(s.labels[max(0, row - 2) : row + 3].any())
    assert hits / len(opened) >= 0.5  # most alerts fall on labelled anomalies
    found = {
        a.stream
        for a in sim.anomalies
        if any(o["stream"] == a.stream and a.start - 120 <= o["start"] <= a.end for o in opened)
    }
    assert len(found) >= len(sim.anomalies) // 2
    # the committed offsets cover everything
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id="e2e")
    committed = sum(
        consumer.committed(TopicPartition(topics["readings"], p)) or 0 for p in range(PARTITIONS)
    )
    consumer.close()
    assert committed == n


def test_bad_records_reach_the_dead_letter_topic_with_reasons(broker, model, sim) -> None:
    topics = _topics(broker)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    bad = [
        b"{not json",
        orjson.dumps({"stream": "x", "ts": 1.7e9, "values": [1.0]}),
        orjson.dumps({"stream": "x", "ts": "yesterday", "values": [1.0, 2.0]}),
        b"",
    ]
    for value in bad:
        producer.send(topics["readings"], key=b"x", value=value)
    good = sim.series[0]
    for t in (0, 1, 1):  # the repeat is a duplicate timestamp
        producer.send(
            topics["readings"],
            key=good.name.encode(),
            value=encode_json(good.name, float(good.timestamps[t]), good.values[t].tolist()),
        )
    producer.flush()
    with Running(_config(broker, model, topics, "dlq")) as w:
        _wait(lambda: _handled(w) >= 7)
    dead = _read_all(broker, topics["dlq"])
    reasons = sorted(dict(r.headers)["reason"].decode() for r in dead)
    assert reasons == sorted(
        ["unparsable", "wrong_length", "bad_timestamp", "empty", "duplicate_timestamp"]
    )
    assert all(dict(r.headers)["source"].startswith(topics["readings"].encode()) for r in dead)
    assert w.metrics.value("detector_readings_rejected_total", reason="wrong_length") == 1


def test_restart_resumes_from_committed_offsets(broker, model, sim) -> None:
    reference = _reference_alerts(broker, model, sim)
    topics = _topics(broker)
    half = _produce(broker, topics["readings"], sim, slice(0, 250))
    with Running(_config(broker, model, topics, "restart")) as first:
        _wait(lambda: _handled(first) >= half)
    rest = _produce(broker, topics["readings"], sim, slice(250, None))
    with Running(_config(broker, model, topics, "restart")) as second:
        _wait(lambda: _handled(second) >= rest)
    assert _handled(second) == rest  # nothing read twice after a clean stop
    assert _alert_ids(_read_all(broker, topics["alerts"])) == reference


def test_two_workers_split_partitions_and_hand_over_state(broker, model, sim) -> None:
    reference = _reference_alerts(broker, model, sim)
    topics = _topics(broker)
    first_part = _produce(broker, topics["readings"], sim, slice(0, 200))
    a = Running(_config(broker, model, topics, "pair"))
    b = Running(_config(broker, model, topics, "pair"))
    with a as wa:
        with b as wb:
            _wait(lambda: len(wa.assigned) == 2 and len(wb.assigned) == 2)
            _wait(lambda: _handled(wa, wb) >= first_part)
            assert not (wa.assigned & wb.assigned)
        # b left: a takes every partition over, restoring b's state from the state topic
        _wait(lambda: len(wa.assigned) == PARTITIONS)
        rest = _produce(broker, topics["readings"], sim, slice(200, None))
        _wait(
            lambda: (
                len(_read_all(broker, topics["alerts"])) > 0
                and _handled(wa, wb) >= first_part + rest
            )
        )
        time.sleep(1.0)
    assert _alert_ids(_read_all(broker, topics["alerts"])) == reference


def _committed(broker, group: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group)
    total = sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in range(PARTITIONS))
    consumer.close()
    return total


def _scraped(port: int, metric: str) -> float:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(
        float(line.split()[-1]) for line in text.splitlines() if line.startswith(metric + " ")
    )


def test_detector_run_stops_cleanly_on_sigterm_and_commits(broker, model, sim, tmp_path) -> None:
    import signal
    import subprocess
    import sys

    from detector.broker import free_port

    topics = _topics(broker)
    n = _produce(broker, topics["readings"], sim, slice(0, 100))
    port = free_port()
    (tmp_path / "detector.yaml").write_text(
        f"kafka:\n  bootstrap_servers: '{broker.bootstrap}'\n  group_id: sigterm\n"
        f"  topics: [{topics['readings']}]\n  alerts_topic: {topics['alerts']}\n"
        f"  dead_letter_topic: {topics['dlq']}\n  state_topic: {topics['state']}\n"
        "  session_timeout_ms: 6000\n  heartbeat_interval_ms: 1000\n"
        f"model:\n  path: '{model}'\n  device: cpu\n"
        "worker:\n  checkpoint_interval_s: 3600\n"  # only the shutdown checkpoint commits
        f"metrics:\n  port: {port}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "detector.cli", "run", "--config", str(tmp_path / "detector.yaml")],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait(lambda: proc.poll() is None and _scraped_or_zero(port) >= n)
        assert _committed(broker, "sigterm", topics["readings"]) == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _committed(broker, "sigterm", topics["readings"]) == n


def _scraped_or_zero(port: int) -> float:
    try:
        return _scraped(port, "detector_readings_consumed_total")
    except OSError:
        return 0.0
