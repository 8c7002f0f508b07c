"""The worker end to end through the real (embedded Tansu) broker.

1. **Throughput.** ``streams`` sensor streams write ``warm`` readings each to a 4-partition
   topic, and the real :class:`Worker` reads them (every stream primed: priming is not what is
   measured). Then, in ``rounds`` rounds, ``timed`` more readings per stream are written while
   the worker is paused; a consume+decode-only reader (kafka-python at the worker's poll size,
   then :func:`decode_batch`) reads them: the **ceiling**, as no worker built on this client can
   go faster; then the worker reads, scores and publishes them.
2. **Latency.** A producer in another process sends at a steady ``rate`` while the worker keeps
   polling; each poll's **poll-to-alert** time (records returned → scored → alerts handed to the
   producer) is recorded and its p50/p99 reported.

Readings are smooth per-stream waves with noise; past the warm-up 0.25% of the streams spike
at every tick, so alerts are published as they would be in service.
"""

from __future__ import annotations

import multiprocessing
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry

from detector.bench.synthetic import synthetic_checkpoint
from detector.broker import EmbeddedBroker
from detector.checkpoint import save_checkpoint
from detector.codec import decode_batch, encode_json
from detector.config import load_config
from detector.kafka_io import ensure_topics
from detector.worker import Worker

__all__ = ["bench_kafka", "FEATURES"]

FEATURES = 8
PARTITIONS = 4
_BASE_TS = 1.7e9  # event time of tick 0; ticks are one second apart


def _readings(streams: int, tick: int) -> np.ndarray:
    """Every stream's reading at ``tick``: ``(streams, FEATURES)``. Past the warm-up a
    different 0.25% of the streams spikes at every tick, so alerts keep being published."""
    s = np.arange(streams)[:, None]
    f = np.arange(FEATURES)[None, :]
    rng = np.random.default_rng(tick)
    x = np.sin(0.3 * tick + s + f) + 0.05 * rng.standard_normal((streams, FEATURES))
    if tick >= 45:  # after priming (32) and the scorer's warm-up (10)
        x[(7 * s[:, 0] + tick) % 400 == 0] += 25.0
    return x


def _send_ticks(producer: KafkaProducer, topic: str, streams: int, ticks: range) -> int:
    names = [f"sensor-{i}" for i in range(streams)]
    keys = [n.encode() for n in names]
    for tick in ticks:
        values = _readings(streams, tick).tolist()
        for i in range(streams):
            producer.send(
                topic, key=keys[i], value=encode_json(names[i], _BASE_TS + tick, values[i])
            )
    producer.flush()
    return streams * len(ticks)


def _paced_producer(
    bootstrap: str, topic: str, streams: int, first_tick: int, rate: float, seconds: float
) -> None:
    """Another process: send ticks from ``first_tick`` on at ``rate`` readings/s."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=2)
    names = [f"sensor-{i}" for i in range(streams)]
    start, sent, tick = time.monotonic(), 0, first_tick
    while time.monotonic() - start < seconds:
        values = _readings(streams, tick).tolist()
        for i in range(streams):
            value = encode_json(names[i], _BASE_TS + tick, values[i])
            producer.send(topic, key=names[i].encode(), value=value)
            sent += 1
            pause = start + sent / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        tick += 1
    producer.flush()
    producer.close()


def _ends(bootstrap: str, topic: str) -> dict[int, int]:
    """Each partition's end offset (highwater: ``end_offsets`` is wrong on Tansu)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    consumer.seek_to_end(*tps)
    ends = {tp.partition: consumer.position(tp) for tp in tps}
    consumer.close()
    return ends


def _ceiling(
    bootstrap: str, topic: str, start: dict[int, int], end: dict[int, int], max_records: int
) -> tuple[float, int]:
    """Consume and decode the records from ``start`` to ``end``; returns (seconds, records)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=max_records
    )
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, start[tp.partition])
    consumer.partitions_for_topic(topic)  # connected before the clock starts
    columns = tuple(f"f{i}" for i in range(FEATURES))
    pos, n = dict(start), 0
    t0 = time.perf_counter()
    while any(pos[p] < end[p] for p in pos):
        polled = consumer.poll(timeout_ms=500, max_records=max_records)
        records = [r for batch in polled.values() for r in batch]
        n += len(records)
        keys, values = [r.key for r in records], [r.value for r in records]
        decode_batch(keys, values, "json", columns, now=time.time())
        for tp, batch in polled.items():
            pos[tp.partition] = batch[-1].offset + 1
    elapsed = time.perf_counter() - t0
    consumer.close()
    return elapsed, n


def _poll_until(worker: Worker, end: dict[int, int], timeout: float = 600.0) -> int:
    """Poll until the worker has read every partition to ``end``; returns the records read."""
    n, deadline = 0, time.monotonic() + timeout
    while time.monotonic() < deadline:
        pos = {tp.partition: o for tp, o in worker.next_offset.items()}
        if all(pos.get(p, 0) >= end[p] for p in range(PARTITIONS)):
            return n
        n += worker.poll_once()
    raise TimeoutError(f"the worker did not reach the end of the topic in {timeout:.0f} s")


def _worker_overrides(bootstrap: str, topics: dict[str, str], model: Path, threads: int):
    return [
        f"kafka.bootstrap_servers={bootstrap}",
        f"kafka.group_id={topics['readings']}-workers",
        f"kafka.topics={topics['readings']}",
        f"kafka.alerts_topic={topics['alerts']}",
        f"kafka.dead_letter_topic={topics['dlq']}",
        f"kafka.state_topic={topics['state']}",
        "kafka.session_timeout_ms=6000",
        "kafka.heartbeat_interval_ms=1000",
        f"model.path={model}",
        "model.device=cpu",
        f"worker.torch_threads={threads}",
        # Checkpoints are timed on their own (below): one landing in a short timed window
        # would count many times its share of a 30 s interval.
        "worker.checkpoint_interval_s=3600",
        "metrics.port=0",
    ]


def _alerts(registry: CollectorRegistry) -> int:
    return int(registry.get_sample_value("detector_alerts_opened_total") or 0)


def _stage_seconds(registry: CollectorRegistry) -> dict[str, float]:
    get = registry.get_sample_value
    stages = ("decode", "score", "publish")
    return {s: get("detector_stage_seconds_sum", {"stage": s}) or 0.0 for s in stages}


def bench_kafka(
    streams: int = 10_000,
    warm: int = 40,
    timed: int = 8,
    rounds: int = 3,
    rate: float = 5000.0,
    latency_s: float = 10.0,
    threads: int = 1,
    progress: Callable[[str], None] | None = None,
) -> dict[str, object]:
    say = progress or (lambda _msg: None)
    run = uuid.uuid4().hex[:8]
    topics = {k: f"bench-{k}-{run}" for k in ("readings", "alerts", "dlq", "state")}
    partitions = {topics["readings"]: PARTITIONS, topics["alerts"]: 1, topics["dlq"]: 1}
    partitions[topics["state"]] = 1
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap
        model = save_checkpoint(Path(tmp) / "bench.pt", synthetic_checkpoint(FEATURES))
        ensure_topics(bootstrap, partitions, compacted=[topics["state"]])
        producer = KafkaProducer(
            bootstrap_servers=bootstrap, acks=1, linger_ms=20, batch_size=256 * 1024
        )
        say(f"producing {streams * warm:,} warm-up readings")
        _send_ticks(producer, topics["readings"], streams, range(warm))
        warm_end = _ends(bootstrap, topics["readings"])
        overrides = _worker_overrides(bootstrap, topics, model, threads)
        config = load_config(None, env={}, overrides=overrides)
        registry = CollectorRegistry()
        worker = Worker(config, registry).start()
        try:
            say("worker: warm-up (every stream primed)")
            _poll_until(worker, warm_end)
            # Rounds: the worker pauses while a round's readings are written; then the
            # consume+decode reader and the worker each read them, back to back, so a noisy
            # neighbour slows both alike. The ratio is taken over all rounds together.
            start, tick = warm_end, warm
            ceiling_s = ceiling_n = worker_s = timed_n = 0.0
            alerts_before = _alerts(registry)
            stages_before = _stage_seconds(registry)
            max_records = config.kafka.max_poll_records
            for r in range(rounds):
                worker.consumer.pause(*worker.assigned)
                say(f"round {r + 1}/{rounds}: producing {streams * timed:,} readings")
                _send_ticks(producer, topics["readings"], streams, range(tick, tick + timed))
                tick += timed
                end = _ends(bootstrap, topics["readings"])
                say(f"round {r + 1}/{rounds}: consume+decode ceiling")
                s_, n_ = _ceiling(bootstrap, topics["readings"], start, end, max_records)
                ceiling_s, ceiling_n = ceiling_s + s_, ceiling_n + n_
                say(f"round {r + 1}/{rounds}: worker")
                worker.consumer.resume(*worker.assigned)
                t0 = time.perf_counter()
                timed_n += _poll_until(worker, end)
                worker_s += time.perf_counter() - t0
                start = end
            alerts_timed = _alerts(registry) - alerts_before
            stages = {k: v - stages_before[k] for k, v in _stage_seconds(registry).items()}
            t0 = time.perf_counter()
            worker.checkpoint()  # every stream's state to the state topic, then offsets
            checkpoint_s = time.perf_counter() - t0
            say(f"latency at {rate:,.0f} readings/s for {latency_s:.0f} s")
            first_tick = tick
            latencies = _latencies(
                worker, bootstrap, topics["readings"], streams, first_tick, rate, latency_s
            )
            alerts_total = _alerts(registry)
        finally:
            worker.close()
            producer.close()
    worker_rate, ceiling_rate = timed_n / worker_s, ceiling_n / ceiling_s
    ms = np.asarray(latencies) * 1e3
    return {
        "streams": streams,
        "timed_readings": int(timed_n),
        "rounds": rounds,
        "worker_per_s": worker_rate,
        "ceiling_per_s": ceiling_rate,
        "of_ceiling": worker_rate / ceiling_rate,
        "worker_stage_seconds": stages,  # of worker_s: the rest is polling (fetch + parse)
        "worker_seconds": worker_s,
        "ceiling_seconds": ceiling_s,
        "checkpoint_s": checkpoint_s,
        "checkpoint_share_at_30s": checkpoint_s / 30.0,
        "alerts_published": alerts_total,
        "alerts_in_timed_part": alerts_timed,
        "latency": {
            "rate_per_s": rate,
            "seconds": latency_s,
            "polls": len(ms),
            "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
            "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
            "max_ms": float(ms.max()) if len(ms) else None,
        },
    }


def _latencies(
    worker: Worker,
    bootstrap: str,
    topic: str,
    streams: int,
    first_tick: int,
    rate: float,
    seconds: float,
) -> list[float]:
    """Poll-to-alert seconds of every poll while another process produces at ``rate``."""
    ctx = multiprocessing.get_context("spawn")
    args = (bootstrap, topic, streams, first_tick, rate, seconds)
    proc = ctx.Process(target=_paced_producer, args=args, daemon=True)
    proc.start()
    out: list[float] = []
    try:
        while proc.is_alive():
            if worker.poll_once():
                out.append(worker.poll_to_alert_s)
    finally:
        proc.join(30)
    return out
