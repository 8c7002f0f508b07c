"""``kill -9`` the worker at random points under a steady load: nothing lost, nothing doubled.

Seeded: ``FAULT_SEED`` (default 1) picks the kill times, ``FAULT_KILLS`` (default 10) how many.
The longer variant is opt-in (``FAULT_LONG=1``; 40 kills by default), e.g.
``FAULT_LONG=1 FAULT_SEED=7 pytest -s tests/integration/test_crash.py -k many``.
Each run prints its report line (``-s`` shows it).
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
    long_run,
    overrides,
    reference,
    wait_committed,
)
from tests.integration.kafka_helpers import wait_for

pytestmark = pytest.mark.integration
SCORED = "detector_readings_scored_total"


@pytest.fixture(scope="module")
def load_fleet():
    return load_sim()


def crash_run(broker, model, sim, tmp_path, kills: int, seed: int, rate: float) -> None:
    rng = random.Random(seed)
    topics = fault_topics(broker.bootstrap)
    group = f"crash-{seed}"
    args = overrides(broker.bootstrap, model, topics, group)
    load = Load(broker.bootstrap, topics["readings"], sim, rate)
    load.start()
    log = tmp_path / "worker.log"
    started = time.monotonic()
    timeline = []  # per kill: seconds to the first score (None: killed in start-up), to the kill
    try:
        for _ in range(kills):
            t0 = time.monotonic()
            worker = WorkerProcess(args, log, free_port())
            if rng.random() < 0.2:  # during start-up: import, group join, state restore
                time.sleep(rng.uniform(0.0, 4.0))
                first = None
            else:  # while scoring, publishing and checkpointing (every 0.5 s)
                wait_for(lambda w=worker: (w.scrape(SCORED) or 0) > 0 or not w.alive(), 120)
                first = time.monotonic() - t0
                time.sleep(rng.uniform(0.0, 2.0))
            assert worker.alive(), worker.output()[-3000:]
            scored = worker.scrape(SCORED)
            worker.kill9()
            timeline.append((first, round(time.monotonic() - t0, 1), scored))
        load.stop()
        worker = WorkerProcess(args, log)
        wait_committed(broker.bootstrap, group, topics["readings"], load.offsets, 240, worker.alive)
        assert worker.terminate() == 0, worker.output()[-3000:]
    finally:
        load.stopping.set()
        if worker.alive():
            worker.kill9()
    elapsed = time.monotonic() - started
    ev = collect(broker.bootstrap, topics)
    ref = reference(broker, model, sim, load.rows)
    report = compare(ev, load.offsets, ref)
    print(f"\ncrash seed={seed} kills={kills} rows={load.rows} {elapsed:.0f}s: {report}")
    print(f"kills (first score s, kill s, scored): {timeline}")
    assert report.lost == 0, report
    assert report.duplicate_alerts == 0, report
    assert report.missing_alerts == 0, report
    assert report.score_mismatches == 0, report
    assert report.alerts > 0, "the load raised no alert: the check proves nothing"
    assert report.replayed_scores > 0, "no kill landed after a checkpoint: nothing was replayed"


def test_kill_9_at_random_points_loses_and_doubles_nothing(broker, model, load_fleet, tmp_path):
    kills = env_int("FAULT_KILLS", 10)
    crash_run(broker, model, load_fleet, tmp_path, kills, env_int("FAULT_SEED", 1), rate=400)


@long_run
def test_kill_9_many_times(broker, model, load_fleet, tmp_path):
    """Opt-in (``FAULT_LONG=1``): forty kills by default, at a lower rate so the load lasts."""
    kills = env_int("FAULT_KILLS", 40)
    crash_run(broker, model, load_fleet, tmp_path, kills, env_int("FAULT_SEED", 2), rate=150)
