"""Floods: a cardinality attack (a million new stream ids) and a burst of 10x the normal rate.

Memory stays within the cap (slots, RSS), Prometheus label sets stay bounded, and the
established streams keep their state and keep being scored through it all.
``FAULT_LONG=1`` runs the attack with a million ids; CI sends 200,000 through a 4,000 cap,
in polls of 2,000.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from detector.engine import Engine, EngineConfig
from detector.metrics import Metrics
from detector.training import TrainConfig, train
from tests.conftest import sine_fleet

T = 8
CAP = 4_000
ESTABLISHED = 64
BATCH = 2_000


@pytest.fixture(scope="module")
def ckpt():
    result = train(sine_fleet(), TrainConfig(timesteps=T, hidden=16, epochs=2, device="cpu"))
    return result.to_checkpoint()


def _rss_mb() -> float:
    """Resident memory now (Linux /proc), MB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _samples(registry: CollectorRegistry) -> int:
    return sum(len(m.samples) for m in registry.collect())


def test_cardinality_attack_and_burst_keep_memory_bounded_and_streams_scored(ckpt) -> None:
    ids = 1_000_000 if os.environ.get("FAULT_LONG") else 200_000
    engine = Engine(ckpt, EngineConfig(device="cpu", max_streams=CAP, capacity=256))
    metrics = Metrics(CollectorRegistry(), top_streams=10)
    rng = np.random.default_rng(0)
    known = np.array([f"dev-{i:03d}" for i in range(ESTABLISHED)], dtype=object)
    clock = [1.7e9]

    def established(k: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``k`` readings of every established stream (k > 1: a burst)."""
        streams = np.tile(known, k)
        ts = clock[0] + 60.0 * np.repeat(np.arange(k), ESTABLISHED)
        clock[0] += 60.0 * k
        phase = ts / 3600.0
        values = np.stack([np.sin(phase), 0.5 * np.cos(phase)], axis=1)
        return streams, ts, values + rng.normal(0, 0.05, (len(ts), 2))

    for _ in range(3 * T):  # warm the fleet up: primed, scoring
        engine.process(*established())
    metrics.set_top(list(engine.state.slot_of), np.zeros(len(engine.state)))
    labels_before = _samples(metrics.registry)

    scored = batches = 0
    rss = []
    started = time.monotonic()
    for first in range(0, ids, BATCH):
        n = min(BATCH, ids - first)
        attack = np.array([f"x-{i}" for i in range(first, first + n)], dtype=object)
        at = np.full(n, clock[0])
        junk = rng.normal(0, 1, (n, 2))
        streams, ts, values = established() if batches % 4 == 0 else (attack[:0], at[:0], junk[:0])
        res = engine.process(
            np.concatenate([attack, streams]),
            np.concatenate([at, ts]),
            np.concatenate([junk, values]),
        )
        ours = np.isin(res.stream, known)
        assert (res.status[ours] == 0).all()
        scored += int((~np.isnan(res.error[ours])).sum())  # primed: scored from its state
        batches += 1
        names = list(engine.state.slot_of)
        slots = np.array([engine.state.slot_of[s] for s in names])
        metrics.set_top(names, engine.alerts.slabs["last_score"][slots])
        metrics.streams.set(len(engine.state))
        if first >= 5 * CAP:  # once the cap has been reached and slabs are at full size
            rss.append(_rss_mb())
    elapsed = time.monotonic() - started

    # a burst: ten readings of every established stream in one poll
    res = engine.process(*established(10))
    assert (res.status == 0).all() and not np.isnan(res.error).any()

    st = engine.state
    assert len(st) <= CAP and st.capacity <= CAP  # the cap holds
    assert all(name in st.slot_of for name in known), "established streams were evicted"
    assert (st.seen[[st.slot_of[n] for n in known]] > T).all()  # never restarted warm-up
    assert scored == ESTABLISHED * ((batches + 3) // 4)  # every established reading scored
    assert engine.evicted >= ids - CAP
    growth = max(rss) - rss[0]
    assert growth < 40, f"RSS grew {growth:.0f} MB under the flood: {rss[0]:.0f} -> {max(rss):.0f}"
    assert _samples(metrics.registry) <= labels_before + 10  # top-K only: bounded label sets
    print(
        f"\nflood: {ids:,} ids in {elapsed:.1f} s ({ids / elapsed:,.0f}/s), cap {CAP}, "
        f"RSS {rss[0]:.0f} -> {max(rss):.0f} MB (peak RSS {_peak_mb():.0f} MB), "
        f"evicted {engine.evicted:,}"
    )


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_new_ids_evict_each_other_before_primed_streams(ckpt) -> None:
    engine = Engine(ckpt, EngineConfig(device="cpu", max_streams=4, capacity=4))
    for t in range(T + 2):  # "old" is primed
        engine.process(["old"], [1.0e9 + 60 * t], [[0.0, 0.0]])
    for i in range(10):  # a stream of one-off ids, "old" silent meanwhile
        engine.process([f"x{i}"], [1.0e9], [[0.0, 0.0]])
    assert "old" in engine.state.slot_of
    # a batch that needs every slot still evicts the primed stream rather than failing
    engine.process(["a", "b", "c", "d"], [1.0e9] * 4, [[0.0, 0.0]] * 4)
    assert set(engine.state.slot_of) == {"a", "b", "c", "d"}


def test_a_poll_must_fit_under_the_stream_cap() -> None:
    from detector.config import load_config
    from detector.errors import ConfigError

    with pytest.raises(ConfigError, match="max_streams .* must be at least kafka.max_poll_records"):
        load_config(None, env={}, overrides=["model.path=m.pt", "engine.max_streams=100"])
