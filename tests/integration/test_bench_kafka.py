"""The end-to-end section of `detector bench` against the real broker: every timed reading is
read by both readers, alerts are published, and poll-to-alert times are recorded."""

import pytest

from detector.bench.kafka_bench import bench_kafka

pytestmark = pytest.mark.integration


def test_worker_and_ceiling_read_the_same_records_and_alerts_flow() -> None:
    streams, timed, rounds = 200, 4, 2
    r = bench_kafka(streams=streams, timed=timed, rounds=rounds, rate=400, latency_s=3.0)
    assert r["timed_readings"] == streams * timed * rounds
    assert r["of_ceiling"] == pytest.approx(r["worker_per_s"] / r["ceiling_per_s"])
    assert r["alerts_in_timed_part"] > 0  # 0.25% of streams spike at every tick past warm-up
    assert r["alerts_published"] >= r["alerts_in_timed_part"]
    lat = r["latency"]
    assert lat["polls"] > 0 and 0 < lat["p50_ms"] <= lat["p99_ms"] <= lat["max_ms"]
