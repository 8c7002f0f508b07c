"""Workers join and leave mid-stream under a steady load: state moves with the partitions.

A first worker runs alone; a second and a third join; then they leave, one cleanly (SIGTERM)
and one by ``kill -9`` (which of the two, and the pauses, are drawn from ``FAULT_SEED``). Every
reading must be scored, no alert doubled or missing, and the scores must equal an
uninterrupted run's: a stream's state travels through the state topic with its partition.
"""

from __future__ import annotations

import random
import time

import pytest

from detector.broker import free_port
from tests.integration.faults import (
    Load,
    WorkerProcess,
    collect,
    compare,
    env_int,
    fault_topics,
    load_sim,
    overrides,
    reference,
    wait_committed,
)
from tests.integration.kafka_helpers import wait_for

pytestmark = pytest.mark.integration
SCORED = "detector_readings_scored_total"


def _scoring(w: WorkerProcess) -> None:
    """Until ``w`` holds partitions and has scored readings from them."""
    wait_for(lambda: (w.scrape(SCORED) or 0) > 0 or not w.alive(), 120)
    assert w.alive(), w.output()[-3000:]


def test_workers_join_and_leave_mid_stream(broker, model, tmp_path):
    seed = env_int("FAULT_SEED", 1)
    rng = random.Random(seed)
    sim = load_sim()
    topics = fault_topics(broker.bootstrap)
    group = f"rebalance-{seed}"
    args = overrides(broker.bootstrap, model, topics, group)
    load = Load(broker.bootstrap, topics["readings"], sim, rate=400)
    load.start()
    workers = []
    try:
        for name in "abc":  # a alone, then b joins, then c joins
            workers.append(WorkerProcess(args, tmp_path / f"worker-{name}.log", free_port()))
            _scoring(workers[-1])
            time.sleep(rng.uniform(0.5, 3.0))
        a, b, c = workers
        leave_first, leave_second = (b, c) if rng.random() < 0.5 else (c, b)
        assert leave_first.terminate() == 0, leave_first.output()[-3000:]  # clean: hands over
        time.sleep(rng.uniform(1.0, 4.0))
        leave_second.kill9()  # crash: its partitions wait for the session timeout
        time.sleep(rng.uniform(0.5, 2.0))
        load.stop()
        wait_committed(broker.bootstrap, group, topics["readings"], load.offsets, 180, a.alive)
        assert a.terminate() == 0, a.output()[-3000:]
    finally:
        load.stopping.set()
        for w in workers:
            if w.alive():
                w.kill9()
    ev = collect(broker.bootstrap, topics)
    report = compare(ev, load.offsets, reference(broker, model, sim, load.rows))
    print(f"\nrebalance seed={seed} rows={load.rows}: {report}")
    assert report.lost == report.duplicate_alerts == report.missing_alerts == 0, report
    assert report.score_mismatches == 0, report
    assert report.alerts > 0
