"""The worker against a real Tansu broker: end to end, dead letters, restart, rebalance."""

from __future__ import annotations

import time

import numpy as np
import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from detector.codec import encode_json
from tests.integration.kafka_helpers import (
    PARTITIONS,
    Running,
    handled,
    produce,
    read_all,
    topics_for,
    wait_for,
    worker_config,
)

pytestmark = pytest.mark.integration


def _alert_ids(records) -> set[str]:
    return {
        orjson.loads(r.value)["id"] for r in records if orjson.loads(r.value)["status"] == "open"
    }


def _reference_alerts(broker, model, sim) -> set[str]:
    topics = topics_for(broker)
    n = produce(broker, topics["readings"], sim)
    with Running(worker_config(broker, model, topics, "ref")) as w:
        wait_for(lambda: handled(w) >= n)
    return _alert_ids(read_all(broker, topics["alerts"]))


def test_end_to_end_alerts_match_labelled_anomalies(broker, model, sim) -> None:
    topics = topics_for(broker)
    n = produce(broker, topics["readings"], sim)
    with Running(worker_config(broker, model, topics, "e2e")) as w:
        wait_for(lambda: handled(w) >= n)
        assert sorted(tp.partition for tp in w.assigned) == list(range(PARTITIONS))
    assert int(w.metrics.value("detector_readings_scored_total")) == n  # every reading scored once
    alerts = [orjson.loads(r.value) for r in read_all(broker, topics["alerts"])]
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
    topics = topics_for(broker)
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
    with Running(worker_config(broker, model, topics, "dlq")) as w:
        wait_for(lambda: handled(w) >= 7)
    dead = read_all(broker, topics["dlq"])
    reasons = sorted(dict(r.headers)["reason"].decode() for r in dead)
    assert reasons == sorted(
        ["unparsable", "wrong_length", "bad_timestamp", "empty", "duplicate_timestamp"]
    )
    assert all(dict(r.headers)["source"].startswith(topics["readings"].encode()) for r in dead)
    assert w.metrics.value("detector_readings_rejected_total", reason="wrong_length") == 1


def test_restart_resumes_from_committed_offsets(broker, model, sim) -> None:
    reference = _reference_alerts(broker, model, sim)
    topics = topics_for(broker)
    half = produce(broker, topics["readings"], sim, slice(0, 250))
    with Running(worker_config(broker, model, topics, "restart")) as first:
        wait_for(lambda: handled(first) >= half)
    rest = produce(broker, topics["readings"], sim, slice(250, None))
    with Running(worker_config(broker, model, topics, "restart")) as second:
        wait_for(lambda: handled(second) >= rest)
    assert handled(second) == rest  # nothing read twice after a clean stop
    assert _alert_ids(read_all(broker, topics["alerts"])) == reference


def _rewind_group(broker, group: str, topic: str) -> None:
    """Commit offset 0 for ``group`` on every partition (the group must be empty)."""
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group)
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    consumer.commit({tp: OffsetAndMetadata(0, "", -1) for tp in tps})
    consumer.close()


def test_state_ahead_of_the_group_offset_wins(broker, model, sim) -> None:
    """A commit can fail after the state was written (the group moved on, the broker went
    away), leaving the group's offset behind the state. The next owner resumes at the state's
    offset: what kafka-python may fetch from the group's offset in the poll that assigned the
    partition is not scored on top of that state."""
    reference = _reference_alerts(broker, model, sim)
    topics = topics_for(broker)
    config = worker_config(broker, model, topics, "behind")
    half = produce(broker, topics["readings"], sim, slice(0, 250))
    with Running(config) as first:
        wait_for(lambda: handled(first) >= half)
    _rewind_group(broker, "behind", topics["readings"])
    rest = produce(broker, topics["readings"], sim, slice(250, None))
    with Running(config) as second:
        wait_for(lambda: handled(second) >= rest)
        time.sleep(1.0)  # anything read twice would be counted by now
    assert handled(second) == rest  # the state's offset won: nothing scored twice
    assert _alert_ids(read_all(broker, topics["alerts"])) == reference
    assert _committed(broker, "behind", topics["readings"]) == half + rest


def test_two_workers_split_partitions_and_hand_over_state(broker, model, sim) -> None:
    reference = _reference_alerts(broker, model, sim)
    topics = topics_for(broker)
    first_part = produce(broker, topics["readings"], sim, slice(0, 200))
    a = Running(worker_config(broker, model, topics, "pair"))
    b = Running(worker_config(broker, model, topics, "pair"))
    with a as wa:
        with b as wb:
            wait_for(lambda: len(wa.assigned) == 2 and len(wb.assigned) == 2)
            wait_for(lambda: handled(wa, wb) >= first_part)
            assert not (wa.assigned & wb.assigned)
        # b left: a takes every partition over, restoring b's state from the state topic
        wait_for(lambda: len(wa.assigned) == PARTITIONS)
        rest = produce(broker, topics["readings"], sim, slice(200, None))
        wait_for(
            lambda: (
                len(read_all(broker, topics["alerts"])) > 0 and handled(wa, wb) >= first_part + rest
            )
        )
        time.sleep(1.0)
    assert _alert_ids(read_all(broker, topics["alerts"])) == reference


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

    topics = topics_for(broker)
    n = produce(broker, topics["readings"], sim, slice(0, 100))
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
        wait_for(lambda: proc.poll() is None and _scraped_or_zero(port) >= n)
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
