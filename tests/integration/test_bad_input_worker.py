"""Against the real broker: one record of every bad-input class reaches the dead-letter topic
with its reason, is counted under that reason, and the worker keeps scoring good readings."""

from __future__ import annotations

import dataclasses
import time

import orjson
import pytest
from kafka import KafkaProducer

from detector.codec import REJECT_REASONS, encode_json
from detector.metrics import REASONS
from tests.integration.kafka_helpers import (
    Running,
    handled,
    read_all,
    topics_for,
    wait_for,
    worker_config,
)

pytestmark = pytest.mark.integration


def _bad_records(stream: str, ts: float, row: list[float]) -> list[tuple[str, bytes | None, bytes]]:
    """(expected reason, key, value): one per decoder reject reason."""
    good = {"stream": stream, "ts": ts, "values": row}
    js = orjson.dumps
    return [
        ("empty", stream.encode(), b""),
        ("too_large", stream.encode(), b" " * 3000 + js(good)),
        ("unparsable", stream.encode(), b'{"stream": "' + stream.encode() + b'", "ts": 1'),
        ("missing_stream", None, js({**good, "stream": None})),
        ("stream_mismatch", b"someone-else", js(good)),
        ("bad_stream", None, js({**good, "stream": ""})),
        ("missing_field", stream.encode(), js({"stream": stream, "values": row})),
        ("bad_timestamp", stream.encode(), js({**good, "ts": "yesterday"})),
        ("wrong_length", stream.encode(), js({**good, "values": row + [1.0]})),
        ("non_numeric", stream.encode(), js({**good, "values": ["1"] + row[1:]})),
        ("non_finite", stream.encode(), js({**good, "values": [1e300] + row[1:]})),
        ("future_timestamp", stream.encode(), js({**good, "ts": time.time() + 10 * 86_400})),
    ]


def test_every_reject_reason_is_dead_lettered_and_counted(broker, model, sim) -> None:
    topics = topics_for(broker)
    series = sim.series[0]
    name, t, v = series.name, series.timestamps, series.values
    bad = _bad_records(name, float(t[5]), v[5].tolist())
    assert {reason for reason, _, _ in bad} == set(REJECT_REASONS)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    good = [encode_json(name, float(t[i]), v[i].tolist()) for i in (0, 1)]
    sends = [(name.encode(), good[0]), (name.encode(), good[1])]
    sends.append((name.encode(), good[1]))  # duplicate_timestamp
    sends.append((name.encode(), good[0]))  # out_of_order
    sends += [(key, value) for _, key, value in bad]
    for key, value in sends:  # one partition: the key decides, so send all under one key
        producer.send(topics["readings"], key=key, value=value, partition=0)
    producer.flush()
    config = worker_config(broker, model, topics, "bad-input")
    config = dataclasses.replace(
        config, kafka=dataclasses.replace(config.kafka, max_record_bytes=2000)
    )
    with Running(config) as w:
        wait_for(lambda: handled(w) >= len(sends))
        scored = w.metrics.value("detector_readings_scored_total")
    dead = read_all(broker, topics["dlq"])
    reasons = sorted(dict(r.headers)["reason"].decode() for r in dead)
    expected = sorted([r for r, _, _ in bad] + ["duplicate_timestamp", "out_of_order"])
    assert reasons == expected
    assert scored == 2
    for reason in REASONS:
        count = w.metrics.value("detector_readings_rejected_total", reason=reason)
        assert count == expected.count(reason), reason
    for record in dead:  # unchanged, with where it came from and an ASCII detail
        headers = dict(record.headers)
        assert headers["source"].startswith(topics["readings"].encode())
        assert headers["detail"].isascii() and len(headers["detail"]) <= 200
        assert (record.key, record.value) in sends
