import dataclasses

import numpy as np
import pytest

from detector.engine import Engine, EngineConfig
from detector.feed import interleave
from detector.training import TrainConfig, train
from tests.conftest import sine_fleet

T = 12


@pytest.fixture(scope="module")
def ckpt():
    result = train(sine_fleet(), TrainConfig(timesteps=T, hidden=16, epochs=3, device="cpu"))
    return result.to_checkpoint()


def _engine(ckpt, **kw) -> Engine:
    return Engine(ckpt, EngineConfig(device="cpu", **kw))


def _fleet_feed(spike_at: int = 400):
    fleet = sine_fleet()
    fleet[1].values[spike_at, 0] += 500.0  # stream s1 is scaled by 10: a 50-sigma spike
    fleet[2].values[spike_at + 50 : spike_at + 53, 1] = np.nan
    return interleave(fleet, ("a", "b"))


def test_one_big_batch_equals_reading_by_reading(ckpt) -> None:
    feed = _fleet_feed()
    big = _engine(ckpt).process(feed.stream, feed.timestamp, feed.values)
    one = _engine(ckpt)
    parts = [
        one.process(feed.stream[i : i + 1], feed.timestamp[i : i + 1], feed.values[i : i + 1])
        for i in range(len(feed))
    ]
    np.testing.assert_allclose(np.concatenate([p.score for p in parts]), big.score, atol=1e-5)
    np.testing.assert_array_equal(np.concatenate([p.alert_id for p in parts]), big.alert_id)
    assert [e.id for p in parts for e in p.opened] == [e.id for e in big.opened]
    assert big.alert.any()


def test_interleaved_batches_of_many_readings_per_stream_keep_order(ckpt) -> None:
    feed = _fleet_feed()
    ref = _engine(ckpt).process(feed.stream, feed.timestamp, feed.values)
    # Same readings, grouped stream by stream inside uneven batches: per-stream order unchanged.
    order = np.lexsort((feed.timestamp, feed.stream))
    engine, scores = _engine(ckpt), np.empty(len(feed))
    for start, stop in [(0, 7), (7, 700), (700, 701), (701, len(feed))]:
        idx = order[start:stop]
        scores[idx] = engine.process(feed.stream[idx], feed.timestamp[idx], feed.values[idx]).score
    np.testing.assert_allclose(scores, ref.score, atol=1e-5)


def test_warm_up_is_neutral_for_timesteps_plus_scorer_warmup(ckpt) -> None:
    s = sine_fleet(streams=1)[0]
    engine = _engine(ckpt)
    res = engine.process([s.name] * len(s), s.timestamps, s.values)
    warm = T + engine.config.scorer.warmup
    assert np.all(res.score[:warm] == 0.0) and np.all(np.isnan(res.error[:T]))
    # Live after it. A reading with nothing unusual in any test can still score exactly 0: the
    # Sidak correction of a least p near 1 rounds to 1.
    assert res.score[warm] > 0.0 and np.mean(res.score[warm:] > 0.0) > 0.95


def test_forecast_before_observe(ckpt) -> None:
    """A reading is scored against the forecast made before the model saw it."""
    s = sine_fleet(streams=1)[0]
    engine = _engine(ckpt)
    head = engine.process([s.name] * 100, s.timestamps[:100], s.values[:100])
    pending = engine._unscale(np.array([0]), engine.state.forecast[[0]])[0]
    nxt = engine.process([s.name], s.timestamps[100:101], s.values[100:101])
    np.testing.assert_allclose(nxt.forecast[0], pending)
    assert head.forecast.shape == (100, 2)


def test_spike_raises_one_alert_naming_the_feature(ckpt) -> None:
    feed = _fleet_feed()
    res = _engine(ckpt).process(feed.stream, feed.timestamp, feed.values)
    spikes = [e for e in res.opened if e.stream == "s1"]
    assert len(spikes) == 1 and spikes[0].top_features[0] == "a"
    assert spikes[0].start == feed.timestamp[(feed.stream == "s1")][400]
    again = _engine(ckpt).process(feed.stream, feed.timestamp, feed.values)
    assert [e.id for e in again.opened] == [e.id for e in res.opened]  # deterministic ids


def test_duplicate_and_backwards_timestamps_are_rejected_not_applied(ckpt) -> None:
    s = sine_fleet(streams=1)[0]
    engine = _engine(ckpt)
    engine.process([s.name] * 50, s.timestamps[:50], s.values[:50])
    seen = int(engine.state.seen[0])
    res = engine.process([s.name] * 3, s.timestamps[[49, 10, 50]], s.values[[49, 10, 50]])
    assert res.status.tolist() == [1, 2, 0]
    assert int(engine.state.seen[0]) == seen + 1


def test_missing_values_are_imputed_and_all_missing_scores_high(ckpt) -> None:
    s = sine_fleet(streams=1)[0]
    values = s.values.copy()
    values[200, 0] = np.nan
    values[300] = np.nan
    res = _engine(ckpt).process([s.name] * len(s), s.timestamps, values)
    assert np.isfinite(res.score).all()
    assert res.score[300] == 1.0 and res.score[200] < 0.5


def test_gap_restarts_warm_up(ckpt) -> None:
    s = sine_fleet(streams=1)[0]
    ts = s.timestamps.copy()
    ts[300:] += 86_400.0
    res = _engine(ckpt, gap_s=3600.0).process([s.name] * len(s), ts, s.values)
    assert np.all(np.isnan(res.error[300 : 300 + T])) and np.isfinite(res.error[300 + T])


def test_cap_evicts_least_recently_used(ckpt) -> None:
    engine = _engine(ckpt, capacity=2, max_streams=2)
    for name in ("x", "y", "x", "z"):
        engine.process([name], [1.0e9 + len(engine.state.slot_of)], [[0.0, 0.0]])
    assert set(engine.state.slot_of) == {"x", "z"}


def test_snapshot_restore_continues_identically(ckpt, tmp_path) -> None:
    feed = _fleet_feed()
    half = len(feed) // 2
    ref = _engine(ckpt).process(feed.stream, feed.timestamp, feed.values)
    first = _engine(ckpt)
    first.process(feed.stream[:half], feed.timestamp[:half], feed.values[:half])
    first.snapshot(tmp_path / "state.npz")
    second = _engine(ckpt)
    assert second.restore(tmp_path / "state.npz") == ["s0", "s1", "s2"]
    rest = second.process(feed.stream[half:], feed.timestamp[half:], feed.values[half:])
    np.testing.assert_allclose(rest.score, ref.score[half:], atol=1e-6)
    np.testing.assert_array_equal(rest.alert_id, ref.alert_id[half:])


def test_snapshot_from_before_the_repeats_test_restores_it_fresh(ckpt, tmp_path) -> None:
    """An upgrade, or turning `repeats` on, keeps the state: a snapshot written without the
    repeats test restores, with that test's state fresh; a snapshot missing any other scorer
    state is still refused."""
    from detector.errors import DataError
    from detector.scoring import ScorerConfig

    feed = _fleet_feed()
    repeats = ScorerConfig(repeats=True)
    engine = _engine(ckpt, scorer=repeats)
    engine.process(feed.stream, feed.timestamp, feed.values)
    engine.snapshot(tmp_path / "new.npz")
    with np.load(tmp_path / "new.npz") as z:
        arrays = dict(z)
    old = {k: v for k, v in arrays.items() if not k.startswith("extra_scorer_rep_")}
    assert len(old) == len(arrays) - 3
    np.savez(tmp_path / "old.npz", **old)
    restored = _engine(ckpt, scorer=repeats)
    assert restored.restore(tmp_path / "old.npz") == ["s0", "s1", "s2"]
    slabs = restored.scorer.slabs
    assert (slabs["rep_run"][:3] == -1).all()
    start = np.float32(restored.scorer.repeat_rate)  # the training data's rate, as a new stream's
    assert (slabs["rep_rate"][:3] == start).all()
    np.testing.assert_array_equal(slabs["mean"][:3], arrays["extra_scorer_mean"])
    del old["extra_scorer_mean"]
    np.savez(tmp_path / "older.npz", **old)
    with pytest.raises(DataError, match="lacks scorer_mean"):
        _engine(ckpt, scorer=repeats).restore(tmp_path / "older.npz")


def _fleet_snapshot(ckpt, tmp_path) -> dict:
    """The arrays of a snapshot of the fleet feed's state."""
    feed = _fleet_feed()
    engine = _engine(ckpt)
    engine.process(feed.stream, feed.timestamp, feed.values)
    engine.snapshot(tmp_path / "new.npz")
    with np.load(tmp_path / "new.npz") as z:
        return dict(z)


def test_snapshot_with_wider_integer_slabs_restores_them_saturated(ckpt, tmp_path) -> None:
    """Slabs narrowed to int32 after snapshots were written with int64 ones: an old value past
    int32 saturates instead of wrapping (an old never-onset stream held 2**62 readings since
    its last onset, which a plain cast turns into -1: inside an episode for good)."""
    arrays = _fleet_snapshot(ckpt, tmp_path)
    arrays["extra_alerts_onset_age"] = np.full(3, np.iinfo(np.int64).max // 2)
    arrays["extra_scorer_tail_n"] = np.array([-(2**40), 7, 2**40])
    np.savez(tmp_path / "old.npz", **arrays)
    restored = _engine(ckpt)
    assert restored.restore(tmp_path / "old.npz") == ["s0", "s1", "s2"]
    top = np.iinfo(np.int32)
    assert (restored.alerts.slabs["onset_age"][:3] == top.max).all()
    assert restored.scorer.slabs["tail_n"][:3].tolist() == [top.min, 7, top.max]


def _restored_without(ckpt, tmp_path, prefix: str, slabs: int) -> tuple[dict, Engine]:
    """A snapshot of the fleet feed's state, the ``slabs`` scorer slabs named ``prefix...``
    removed (as a version before their test wrote it), restored into a fresh engine; returns
    the full snapshot's arrays and that engine."""
    arrays = _fleet_snapshot(ckpt, tmp_path)
    old = {k: v for k, v in arrays.items() if not k.startswith("extra_scorer_" + prefix)}
    assert len(old) == len(arrays) - slabs
    np.savez(tmp_path / "old.npz", **old)
    restored = _engine(ckpt)
    assert restored.restore(tmp_path / "old.npz") == ["s0", "s1", "s2"]
    return arrays, restored


def test_snapshot_from_before_the_whitened_sustained_test_starts_it_wide(ckpt, tmp_path) -> None:
    """Its average starts at 0, where the innovation's mean is, and its variance at the
    innovation's own (1): wider than an average's, so it learns before it can alert."""
    _, restored = _restored_without(ckpt, tmp_path, "wsus_", 7)
    slabs = restored.scorer.slabs
    assert (slabs["wsus_level"][:3] == 0).all() and (slabs["wsus_mean"][:3] == 0).all()
    assert (slabs["wsus_var"][:3] == 1).all()
    feed = _fleet_feed()
    out = restored.process(feed.stream, feed.timestamp + 1e6, feed.values)
    assert np.isfinite(out.score).all()


def test_snapshot_from_before_the_onset_cap_restores_its_record_empty(ckpt, tmp_path) -> None:
    """A worker upgraded to the onset cap keeps its streams' alert state; their records start
    empty, as a new stream's (the cap then binds later, never wrongly)."""
    arrays = _fleet_snapshot(ckpt, tmp_path)
    assert (arrays["extra_alerts_onset_n"] > 0).all()
    old = {
        k: v
        for k, v in arrays.items()
        if k not in ("extra_alerts_onset_top", "extra_alerts_onset_n")
    }
    np.savez(tmp_path / "old.npz", **old)
    restored = _engine(ckpt)
    assert restored.restore(tmp_path / "old.npz") == ["s0", "s1", "s2"]
    assert (restored.alerts.slabs["onset_top"][:3] == 0).all()
    assert (restored.alerts.slabs["onset_n"][:3] == 0).all()
    np.testing.assert_array_equal(
        restored.alerts.slabs["onset_age"][:3], arrays["extra_alerts_onset_age"]
    )


def test_snapshot_from_before_the_relations_test_restores_it_fresh(ckpt, tmp_path) -> None:
    """A worker upgraded to the relations test keeps its streams' other state."""
    # mean, covariance, count and the test's own tail
    arrays, restored = _restored_without(ckpt, tmp_path, "rel_", 7)
    assert arrays["extra_scorer_rel_tri"].dtype == np.float32
    slabs = restored.scorer.slabs
    targets = len(ckpt.targets)
    i, j = np.tril_indices(targets)
    assert (slabs["rel_n"][:3] == 0).all() and (slabs["rel_tri"][:3] == (i == j)).all()
    np.testing.assert_array_equal(slabs["level_mean"][:3], arrays["extra_scorer_level_mean"])


def test_snapshot_with_the_whole_covariance_restores_it_packed(ckpt, tmp_path) -> None:
    """Snapshots before the covariance was packed hold the whole matrix: kept, not reset."""
    arrays, _ = _restored_without(ckpt, tmp_path, "rel_tri", 1)
    packed = arrays["extra_scorer_rel_tri"]
    targets = len(ckpt.targets)
    i, j = np.tril_indices(targets)
    whole = np.zeros((len(packed), targets, targets), np.float32)
    whole[:, i, j] = whole[:, j, i] = packed
    assert (packed != (i == j)).any()  # learnt, so a fresh restore would differ
    old = {k: v for k, v in arrays.items() if k != "extra_scorer_rel_tri"}
    np.savez(tmp_path / "whole.npz", **old, extra_scorer_rel_cov=whole)
    restored = _engine(ckpt)
    assert restored.restore(tmp_path / "whole.npz") == ["s0", "s1", "s2"]
    np.testing.assert_array_equal(restored.scorer.slabs["rel_tri"][:3], packed)


def test_unseen_stream_fits_its_own_scaler(ckpt) -> None:
    s = sine_fleet(streams=1, scale=1e4, offset=3e5)[0]
    engine = _engine(ckpt)
    res = engine.process(["brand-new"] * len(s), s.timestamps, s.values)
    # fitted on its own window, not taken from the pooled scaler
    assert engine.state.scale[0, 0] > 5 * ckpt.default_scaler.scale[0]
    np.testing.assert_array_equal(engine.state.unit_scale[0], engine.state.scale[0])  # scored so
    assert np.nanmedian(res.score) < 0.3


def test_state_bytes_per_stream_at_reference_shape() -> None:
    import torch

    from detector.state import StreamState

    st = StreamState(
        layers=2,
        hidden=64,
        n_inputs=8,
        n_targets=8,
        window=64,
        device=torch.device("cpu"),
        capacity=1024,
    )
    payload = (2 * 2 * 64 + 64 * 8) * 4  # h, c and the window, float32: 3 KiB
    assert payload == 3072
    assert st.bytes_per_stream() <= 1.5 * payload, st.bytes_per_stream()


def test_bad_snapshot_is_refused(ckpt, tmp_path) -> None:
    from detector.errors import DataError

    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(DataError, match="not a readable state snapshot"):
        _engine(ckpt).restore(bad)
    other = dataclasses.replace(EngineConfig(device="cpu"), window=T + 5)
    Engine(ckpt, other).snapshot(tmp_path / "w.npz")
    with pytest.raises(DataError, match="snapshot shape"):
        _engine(ckpt).restore(tmp_path / "w.npz")


def test_idle_streams_are_forgotten(ckpt) -> None:
    engine = _engine(ckpt, idle_s=3600.0)
    engine.process(["old", "new"], [1.0e9, 1.0e9], [[0.0, 0.0], [0.0, 0.0]])
    engine.process(["new"], [1.0e9 + 7200], [[0.0, 0.0]])
    assert set(engine.state.slot_of) == {"new"}
    engine.process(["old"], [1.0e9 + 7300], [[0.0, 0.0]])  # comes back as a new stream
    assert engine.state.seen[engine.state.slot_of["old"]] == 1


def test_swap_model_reprimes_from_windows(ckpt) -> None:
    feed = _fleet_feed()
    engine = _engine(ckpt)
    half = len(feed) // 2
    engine.process(feed.stream[:half], feed.timestamp[:half], feed.values[:half])
    bigger = train(sine_fleet(), TrainConfig(timesteps=T, hidden=24, epochs=2, device="cpu"))
    assert engine.swap_model(bigger.to_checkpoint()) == 3
    assert engine.state.h.shape == (2, engine.state.capacity, 24)
    rest = engine.process(feed.stream[half:], feed.timestamp[half:], feed.values[half:])
    assert np.isfinite(rest.error).all() and np.median(rest.score) < 0.3


def test_swap_model_refuses_other_features(ckpt) -> None:
    from detector.errors import DetectorError

    other = train(
        sine_fleet(),
        TrainConfig(
            timesteps=T, hidden=8, epochs=1, device="cpu", targets=("a",), covariates=("b",)
        ),
    )
    with pytest.raises(DetectorError, match="restart instead"):
        _engine(ckpt).swap_model(other.to_checkpoint())


def _rescaled(ckpt, factor: float):
    """``ckpt`` with every stream's scaler ``factor`` times wider, as a model retrained on data
    of another spread would have."""
    from detector.scaling import Scaler

    wider = {
        n: Scaler(s.kind, s.offset + s.scale, s.scale * factor)
        for n, s in ckpt.stream_scalers.items()
    }
    return dataclasses.replace(ckpt, stream_scalers=wider)


def test_a_swap_feeds_the_model_the_new_scalers_and_scores_in_the_learnt_units(ckpt) -> None:
    """A hot reload must not shift the errors the scorer has learnt: they stay in the units the
    stream's statistics were learnt in, while the new model reads its own scaled inputs."""
    feed = _fleet_feed()
    half = len(feed) // 2
    engine = _engine(ckpt)
    engine.process(feed.stream[:half], feed.timestamp[:half], feed.values[:half])
    before = ckpt.stream_scalers["s1"]
    engine.swap_model(_rescaled(ckpt, 4.0))
    slot = engine.state.slot_of["s1"]
    np.testing.assert_allclose(engine.state.scale[slot], 4.0 * before.scale)
    np.testing.assert_allclose(engine.state.unit_scale[slot], before.scale)
    np.testing.assert_allclose(engine.state.unit_offset[slot], before.offset)
    rest = engine.process(feed.stream[half:], feed.timestamp[half:], feed.values[half:])
    mine = rest.stream == "s1"
    err = (feed.values[half:][mine] - rest.forecast[mine]) / before.scale
    np.testing.assert_allclose(rest.error[mine], np.sqrt(np.mean(err**2, axis=1)), rtol=1e-9)


def test_a_restore_under_another_model_keeps_the_snapshots_units(ckpt, tmp_path) -> None:
    """A restart under a retrained model: the model reads the new checkpoint's scalers, the
    scorer the units of the statistics it restores. A snapshot written before the units were
    kept takes its scaler as its units."""
    feed = _fleet_feed()
    half = len(feed) // 2
    first = _engine(ckpt)
    first.process(feed.stream[:half], feed.timestamp[:half], feed.values[:half])
    first.snapshot(tmp_path / "state.npz")
    other = _rescaled(ckpt, 4.0)
    second = Engine(other, EngineConfig(device="cpu"))
    second.restore(tmp_path / "state.npz")
    slot, before = second.state.slot_of["s1"], ckpt.stream_scalers["s1"]
    np.testing.assert_allclose(second.state.scale[slot], 4.0 * before.scale)
    np.testing.assert_allclose(second.state.unit_scale[slot], before.scale)
    with np.load(tmp_path / "state.npz") as z:
        old = {k: v for k, v in z.items() if not k.startswith("unit")}
    np.savez(tmp_path / "old.npz", **old)
    third = Engine(other, EngineConfig(device="cpu"))
    third.restore(tmp_path / "old.npz")
    np.testing.assert_allclose(third.state.unit_scale[slot], before.scale)
    assert third.state.units_fixed[slot]
    rest = [
        e.process(feed.stream[half:], feed.timestamp[half:], feed.values[half:])
        for e in (second, third)
    ]
    np.testing.assert_array_equal(rest[0].score, rest[1].score)


def test_a_snapshot_with_bad_units_is_refused(ckpt, tmp_path) -> None:
    from detector.errors import DataError

    with np.load(_fleet_engine_snapshot(ckpt, tmp_path)) as z:
        arrays = dict(z)
    for name, change in (
        ("zero", {"unit_scale": np.zeros_like(arrays["unit_scale"])}),
        ("short", {"unit_scale": arrays["unit_scale"][:, :1]}),
    ):
        np.savez(tmp_path / f"{name}.npz", **(arrays | change))
        with pytest.raises(DataError, match="unit_scale"):
            _engine(ckpt).restore(tmp_path / f"{name}.npz")
    del arrays["unit_offset"]  # some unit slabs but not all
    np.savez(tmp_path / "part.npz", **arrays)
    with pytest.raises(DataError, match="missing.*unit_offset"):
        _engine(ckpt).restore(tmp_path / "part.npz")


def _fleet_engine_snapshot(ckpt, tmp_path):
    engine = _engine(ckpt)
    feed = _fleet_feed()
    engine.process(feed.stream, feed.timestamp, feed.values)
    return engine.snapshot(tmp_path / "fleet.npz")


def test_snapshot_from_before_the_sustained_test_starts_it_at_the_learnt_level(
    ckpt, tmp_path
) -> None:
    """The stream is past its warm-up, so the test is evidence at once: its average must start
    where the stream's level is, not at the scaler's 0."""
    # the average, its mean and variance, and its own tail
    arrays, restored = _restored_without(ckpt, tmp_path, "sus_", 7)
    slabs, level = restored.scorer.slabs, arrays["extra_scorer_level_mean"]
    np.testing.assert_allclose(slabs["sus_level"][:3], level, rtol=1e-6)
    np.testing.assert_allclose(slabs["sus_mean"][:3], level, rtol=1e-6)
    assert (slabs["sus_var"][:3] == 1.0).all()


def _wide_fleet(streams: int = 300, n: int = 120) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``streams`` seasonal streams reporting in lockstep, with a spike and missing values."""
    rng = np.random.default_rng(4)
    t = np.arange(n)
    phase = rng.uniform(0, 2 * np.pi, streams)
    a = np.sin(2 * np.pi * t[:, None] / 48 + phase) + rng.normal(0, 0.05, (n, streams))
    b = 0.5 * np.cos(2 * np.pi * t[:, None] / 48 + phase) + rng.normal(0, 0.05, (n, streams))
    values = np.stack([a, b], axis=2)  # (n, streams, 2)
    values[90, 7, 0] += 40.0
    values[95:98, 150, 1] = np.nan
    names = np.array([f"w{k}" for k in range(streams)], dtype=object)
    return names, 1.7e9 + 60.0 * t, values


def test_blocks_of_streams_on_score_threads_score_as_one_call(ckpt, monkeypatch) -> None:
    """A large wave scored in blocks on the score threads gives the scores, alerts and state
    of one call: the scorer's statistics are rows per stream, and blocks touch disjoint rows."""
    import detector.engine as engine_module

    monkeypatch.setattr(engine_module, "_BLOCK_MIN_READINGS", 64)
    names, ts, values = _wide_fleet()
    one, four = _engine(ckpt, score_threads=1), _engine(ckpt, score_threads=4)
    assert four.score_threads == 4 and four._score_pool is not None
    results = {1: [], 4: []}
    for i in range(len(ts)):
        stamps = np.full(len(names), ts[i])
        for threads, engine in ((1, one), (4, four)):
            results[threads].append(engine.process(names, stamps, values[i]))
    for a, b in zip(results[1], results[4], strict=True):
        np.testing.assert_allclose(b.score, a.score, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(b.onset, a.onset, rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(b.alert_id, a.alert_id)
        np.testing.assert_array_equal(b.top_features, a.top_features)
    opened = [e.stream for r in results[4] for e in r.opened]
    assert "w7" in opened  # the spike
    for key, slab in one.scorer.slabs.items():
        np.testing.assert_allclose(four.scorer.slabs[key], slab, rtol=1e-12, err_msg=key)


def test_score_threads_default_to_one_on_cpu_and_refuse_negatives(ckpt, monkeypatch) -> None:
    import torch

    import detector.engine as engine_module
    from detector.engine import _score_threads
    from detector.errors import ConfigError

    assert _engine(ckpt).score_threads == 1 and _engine(ckpt)._score_pool is None
    assert _score_threads(3, torch.device("cpu")) == 3
    # On a GPU the default is one fewer than the host's cores, from 1 to 8 (it reads the
    # device's type only, so no GPU is needed here).
    for cores, threads in ((16, 8), (4, 3), (2, 1), (1, 1)):
        monkeypatch.setattr(engine_module.os, "sched_getaffinity", lambda _, n=cores: set(range(n)))
        assert _score_threads(0, torch.device("cuda")) == threads, cores
        assert _score_threads(0, torch.device("cpu")) == 1
    with pytest.raises(ConfigError, match="score_threads must be >= 0"):
        _engine(ckpt, score_threads=-1)
