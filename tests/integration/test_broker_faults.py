"""The broker goes away and comes back.

With durable storage (Tansu on ``s3://`` against a local moto S3 server) the worker neither
crashes nor spins: it backs off, reports not ready, and resumes by itself, losing and doubling
nothing. With memory storage the broker comes back empty; the worker must stop with a clear
error instead of silently skipping or re-reading.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from detector.broker import EmbeddedBroker, free_port
from tests.integration.faults import (
    WorkerProcess,
    collect,
    compare,
    fault_topics,
    load_sim,
    overrides,
    produce_rows,
    reference,
    wait_committed,
)
from tests.integration.kafka_helpers import wait_for

pytestmark = pytest.mark.integration
SCORED = "detector_readings_scored_total"
DOWN_S = 8.0  # how long the broker stays away
MAX_CPU_SHARE = 0.25  # of one core while the broker is away: backing off, not spinning


@pytest.fixture(scope="module")
def s3():
    """A local S3 server (moto) with a ``tansu`` bucket; yields the broker's AWS environment."""
    import boto3

    port = free_port()
    moto = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="x",
            aws_secret_access_key="x",
            region_name="us-east-1",
        )

        def bucket() -> bool:
            try:
                client.create_bucket(Bucket="tansu")
                return True
            except Exception:  # not listening yet
                return False

        wait_for(bucket, 60)
        yield {
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "x",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT": endpoint,  # without it Tansu silently tries real AWS
            "AWS_ALLOW_HTTP": "true",
        }
    finally:
        moto.kill()
        moto.wait()


@pytest.fixture(scope="module")
def load_fleet():
    return load_sim()


def _kill(b: EmbeddedBroker) -> None:
    b.proc.kill()
    b.proc.wait()


def test_worker_rides_out_a_durable_broker_outage(broker, model, load_fleet, s3, tmp_path):
    durable = EmbeddedBroker(storage="s3://tansu/", env=s3).start()
    worker = None
    try:
        topics = fault_topics(durable.bootstrap)
        produced = produce_rows(durable.bootstrap, topics["readings"], load_fleet, 100)
        args = overrides(durable.bootstrap, model, topics, "outage")
        worker = WorkerProcess(args, tmp_path / "worker.log", free_port())
        wait_committed(durable.bootstrap, "outage", topics["readings"], produced, 120, worker.alive)
        assert worker.readyz() == 200

        _kill(durable)
        cpu0, t0 = worker.cpu_s(), time.monotonic()
        wait_for(lambda: worker.readyz() == 503, 20)  # not ready while the broker is away
        time.sleep(max(0.0, DOWN_S - (time.monotonic() - t0)))
        cpu, wall = worker.cpu_s() - cpu0, time.monotonic() - t0
        assert worker.alive(), worker.output()[-3000:]
        assert cpu / wall < MAX_CPU_SHARE, f"{cpu:.2f} CPU s in {wall:.1f} s: spinning"

        durable = EmbeddedBroker(port=durable.port, storage="s3://tansu/", env=s3).start()
        produced |= produce_rows(durable.bootstrap, topics["readings"], load_fleet, 200, 100)
        wait_committed(durable.bootstrap, "outage", topics["readings"], produced, 180, worker.alive)
        wait_for(lambda: worker.readyz() == 200, 60)
        assert worker.terminate() == 0, worker.output()[-3000:]
        ev = collect(durable.bootstrap, topics)
    finally:
        if worker is not None and worker.alive():
            worker.kill9()
        durable.stop()
    report = compare(ev, produced, reference(broker, model, load_fleet, 200))
    print(f"\noutage {DOWN_S:g}s, worker CPU {cpu:.2f} s in {wall:.1f} s: {report}")
    assert report.lost == report.duplicate_alerts == report.missing_alerts == 0, report
    assert report.score_mismatches == 0, report
    assert "broker trouble" in worker.output()  # it said why it paused


def test_memory_broker_restart_stops_the_worker_loudly(model, load_fleet, tmp_path):
    volatile = EmbeddedBroker().start()
    worker = None
    try:
        topics = fault_topics(volatile.bootstrap)
        produced = produce_rows(volatile.bootstrap, topics["readings"], load_fleet, 50)
        args = overrides(volatile.bootstrap, model, topics, "amnesia")
        worker = WorkerProcess(args, tmp_path / "worker.log", free_port())
        bootstrap = volatile.bootstrap
        wait_committed(bootstrap, "amnesia", topics["readings"], produced, 120, worker.alive)
        _kill(volatile)
        volatile = EmbeddedBroker(port=volatile.port).start()  # empty: topics and offsets gone
        wait_for(lambda: not worker.alive(), 120)
        out = worker.output()
        assert worker.proc.returncode == 2, out[-3000:]
        assert "detector run: error:" in out and "the broker lost" in out, out[-3000:]
    finally:
        if worker is not None and worker.alive():
            worker.kill9()
        volatile.stop()
