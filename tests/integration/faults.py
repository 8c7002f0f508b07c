"""Fault-injection harness: a steady load, workers as real processes, and the evidence checks.

The evidence is what the worker itself publishes: with a scores topic, one record per scored
reading naming its source ``topic/partition/offset``; the alerts; and the group's committed
offsets. A run is checked against an uninterrupted reference run over the same readings:

- *lost*: produced offsets with no score record (and no dead letter) — must be 0;
- *duplicate alerts*: after de-duplication by (id, status), alert records the reference does not
  have or that differ from it — must be 0; *missing alerts*: reference alerts absent — must be 0;
- *score mismatches*: readings whose score differs from the reference's — must be 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
import torch
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from detector.codec import encode_json
from detector.kafka_io import ensure_topics, read_to_end
from simulators import SensorFleetConfig, simulate_sensors
from tests.integration.kafka_helpers import PARTITIONS, Running, wait_for, worker_config

SCORE_TOL = 1e-4  # batches of other sizes may round float32 math differently in the last bits
# A longer fleet than FLEET (same features, so the session's model reads it): a steady load
# for a minute or more at a few hundred readings a second.
LOAD_FLEET = SensorFleetConfig(
    streams=16,
    features=2,
    length=4000,
    seed=23,
    anomaly_kinds=("spike", "level_shift"),
    anomalies_per_stream=2,
)


long_run = pytest.mark.skipif(
    not os.environ.get("FAULT_LONG"), reason="long fault run: opt-in with FAULT_LONG=1"
)


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def fault_topics(bootstrap: str) -> dict[str, str]:
    run = uuid.uuid4().hex[:8]
    names = {k: f"{k}-{run}" for k in ("readings", "alerts", "dlq", "state", "scores")}
    ensure_topics(
        bootstrap,
        {
            names["readings"]: PARTITIONS,
            names["alerts"]: 1,
            names["dlq"]: 1,
            names["state"]: 1,
            names["scores"]: PARTITIONS,
        },
        compacted=[names["state"]],
    )
    return names


def overrides(bootstrap: str, model, topics, group: str, port: int = 0, interval=0.5) -> list:
    return [
        f"kafka.bootstrap_servers={bootstrap}",
        f"kafka.group_id={group}",
        f"kafka.topics={topics['readings']}",
        f"kafka.alerts_topic={topics['alerts']}",
        f"kafka.dead_letter_topic={topics['dlq']}",
        f"kafka.state_topic={topics['state']}",
        f"kafka.scores_topic={topics['scores']}",
        "kafka.session_timeout_ms=4000",
        "kafka.heartbeat_interval_ms=800",
        "kafka.max_poll_records=500",
        f"model.path={model}",
        "model.device=cpu",
        "model.reload_check_s=0",
        f"worker.checkpoint_interval_s={interval}",
        f"metrics.port={port}",
    ]


def child_env() -> dict[str, str]:
    """The test's environment less DETECTOR_* (the worker rejects variables it does not know)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTOR_")}
    env["PYTHONUNBUFFERED"] = "1"
    # One intra-op thread: the engine's small batches gain nothing from two, and on a shared
    # 2-core machine OpenMP's spinning made one step 1000x slower (15 ms instead of 8 us).
    env["OMP_NUM_THREADS"] = "1"
    return env


class WorkerProcess:
    """``detector run`` as a child process, its stderr kept in ``log``; ``port`` serves metrics."""

    def __init__(self, args: list[str], log: Path, port: int = 0) -> None:
        self.log, self.port = log, port
        if port:
            args = [*args, f"metrics.port={port}"]
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "detector.cli", "run"]
                + [x for a in args for x in ("--set", a)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=child_env(),
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self, timeout: float = 60) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def scrape(self, metric: str) -> float | None:
        """The sum of ``metric``'s samples, None while the endpoint does not answer."""
        try:
            url = f"http://127.0.0.1:{self.port}/metrics"
            text = urllib.request.urlopen(url, timeout=5).read().decode()
        except OSError:
            return None
        return sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith(metric + " ") or line.startswith(metric + "{")
        )

    def readyz(self) -> int | None:
        """The HTTP status of /readyz, None while the endpoint does not answer."""
        try:
            url = f"http://127.0.0.1:{self.port}/readyz"
            return urllib.request.urlopen(url, timeout=5).status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return None

    def cpu_s(self) -> float:
        """User + system CPU seconds the process has used (Linux /proc)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Load(threading.Thread):
    """Produces the simulation row by row (every stream's t-th reading) at ``rate`` readings/s
    until ``stop`` or the end; records every acknowledged (partition, offset)."""

    def __init__(self, bootstrap: str, topic: str, sim, rate: float) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.sim, self.rate = bootstrap, topic, sim, rate
        self.stopping = threading.Event()
        self.rows = 0  # rows fully produced and acknowledged
        self.offsets: set[tuple[int, int]] = set()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by join_checked
            self.error = exc

    def _run(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5)
        series = self.sim.series
        per_row = len(series) / self.rate
        start = time.monotonic()
        for t in range(len(series[0])):
            if self.stopping.is_set():
                break
            futures = [
                producer.send(
                    self.topic,
                    key=s.name.encode(),
                    value=encode_json(s.name, float(s.timestamps[t]), s.values[t].tolist()),
                )
                for s in series
            ]
            producer.flush()
            for f in futures:
                meta = f.get(timeout=60)
                self.offsets.add((meta.partition, meta.offset))
            self.rows = t + 1
            delay = start + (t + 1) * per_row - time.monotonic()
            if delay > 0:
                self.stopping.wait(delay)
        producer.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(120)
        assert not self.is_alive(), "load did not stop"
        if self.error is not None:
            raise self.error


def produce_rows(
    bootstrap: str, topic: str, sim, rows: int, first: int = 0
) -> set[tuple[int, int]]:
    """Rows ``first..rows-1`` of ``sim``, acknowledged; returns their (partition, offset)s."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    futures = [
        producer.send(
            topic,
            key=s.name.encode(),
            value=encode_json(s.name, float(s.timestamps[t]), s.values[t].tolist()),
        )
        for t in range(first, rows)
        for s in sim.series
    ]
    producer.flush()
    out = set()
    for f in futures:
        meta = f.get(timeout=60)
        out.add((meta.partition, meta.offset))
    producer.close()
    return out


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    try:
        return {p: consumer.committed(TopicPartition(topic, p)) or 0 for p in range(PARTITIONS)}
    finally:
        consumer.close()


def ends(offsets: set[tuple[int, int]]) -> dict[int, int]:
    out = dict.fromkeys(range(PARTITIONS), 0)
    for p, o in offsets:
        out[p] = max(out[p], o + 1)
    return out


def wait_committed(bootstrap, group, topic, offsets, timeout: float = 180, alive=None) -> None:
    """Until the group's committed offsets reach the end of what was produced."""
    want = ends(offsets)

    def done() -> bool:
        if alive is not None:
            assert alive(), "worker died"
        return committed(bootstrap, group, topic) == want

    wait_for(done, timeout)


@dataclass
class Evidence:
    scores: dict[tuple[int, int], list[dict]] = field(default_factory=dict)  # source -> records
    by_reading: dict[tuple[str, float], list[float]] = field(default_factory=dict)
    alerts: list[dict] = field(default_factory=list)
    dead: set[tuple[int, int]] = field(default_factory=set)


def collect(bootstrap: str, topics: dict[str, str]) -> Evidence:
    ev = Evidence()
    for r in read_to_end(bootstrap, topics["scores"], timeout_s=60):
        rec = orjson.loads(r.value)
        _, p, o = rec["source"].rsplit("/", 2)
        ev.scores.setdefault((int(p), int(o)), []).append(rec)
        ev.by_reading.setdefault((rec["stream"], rec["ts"]), []).append(rec["score"])
    ev.alerts = [orjson.loads(r.value) for r in read_to_end(bootstrap, topics["alerts"])]
    for r in read_to_end(bootstrap, topics["dlq"]):
        _, p, o = dict(r.headers)["source"].decode().rsplit("/", 2)
        ev.dead.add((int(p), int(o)))
    return ev


def dedup_alerts(alerts: list[dict]) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = {}
    for a in alerts:
        out.setdefault((a["id"], a["status"]), []).append(a)
    return out


def _same_alert(a: dict, b: dict) -> bool:
    keys = ("stream", "start", "end", "top_features")
    return all(a[k] == b[k] for k in keys) and abs(a["peak_score"] - b["peak_score"]) <= SCORE_TOL


@dataclass
class Report:
    produced: int
    scored_records: int
    lost: int
    duplicate_alerts: int
    missing_alerts: int
    score_mismatches: int
    alerts: int
    replayed_alert_records: int
    replayed_scores: int
    examples: list = field(default_factory=list)  # a few of the alerts that do not match

    def ok(self) -> bool:
        return not (self.lost or self.duplicate_alerts or self.missing_alerts)


def compare(ev: Evidence, produced: set[tuple[int, int]], ref: Evidence) -> Report:
    lost = produced - set(ev.scores) - ev.dead
    got, want = dedup_alerts(ev.alerts), dedup_alerts(ref.alerts)
    duplicates, examples = 0, []
    for key, copies in got.items():
        if key not in want:
            duplicates += 1  # an alert the uninterrupted run never raised
            examples.append(("extra", copies[0]))
        elif not all(_same_alert(c, want[key][0]) for c in copies):
            duplicates += 1  # same id, different content: downstream would see two alerts
            examples.append(("differs", copies, want[key][0]))
    missing = sum(1 for key in want if key not in got)
    examples += [("missing", want[key][0]) for key in want if key not in got]
    mismatches = 0
    for reading, scores in ev.by_reading.items():
        expected = ref.by_reading.get(reading)
        if expected is None or any(abs(s - expected[0]) > SCORE_TOL for s in scores):
            mismatches += 1
    return Report(
        produced=len(produced),
        scored_records=sum(len(v) for v in ev.scores.values()),
        lost=len(lost),
        duplicate_alerts=duplicates,
        missing_alerts=missing,
        score_mismatches=mismatches,
        alerts=len(want),
        replayed_alert_records=len(ev.alerts) - len(got),
        replayed_scores=sum(len(v) - 1 for v in ev.scores.values()),
        examples=examples[:5],
    )


def reference(broker, model, sim, rows: int) -> Evidence:
    """An uninterrupted in-process run over the first ``rows`` rows of ``sim``."""
    topics = fault_topics(broker.bootstrap)
    produced = produce_rows(broker.bootstrap, topics["readings"], sim, rows)
    group = "ref-" + uuid.uuid4().hex[:6]
    cfg = worker_config(broker, model, topics, group)
    import dataclasses

    cfg = dataclasses.replace(
        cfg, kafka=dataclasses.replace(cfg.kafka, scores_topic=topics["scores"])
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the worker processes run (see child_env)
    try:
        with Running(cfg):
            wait_committed(broker.bootstrap, group, topics["readings"], produced)
    finally:
        torch.set_num_threads(threads)
    ev = collect(broker.bootstrap, topics)
    assert len(ev.scores) == len(produced)
    return ev


def load_sim():
    return simulate_sensors(LOAD_FLEET)
