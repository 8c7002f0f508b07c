"""The level test's tail, fitted on the training rows (detector.level_tail) and read by the
scorer and the engine."""

import copy
import dataclasses

import numpy as np
import pytest

from detector.checkpoint import load_checkpoint, save_checkpoint
from detector.engine import Engine, EngineConfig
from detector.errors import CheckpointError
from detector.level_tail import (
    check_level_tails,
    fit_tail,
    level_surprise,
    level_tails,
    tail_mismatch,
)
from detector.scaling import Scaler
from detector.scoring import _LOG10_E, GaussianScorer, ScorerConfig
from detector.series import Series
from detector.training import TrainConfig, train
from tests.conftest import sine_fleet

CFG = ScorerConfig()


def _stream(name: str, values: np.ndarray, labels: np.ndarray | None = None) -> Series:
    values = np.asarray(values, np.float64).reshape(len(values), -1)
    cols = tuple(f"c{i}" for i in range(values.shape[1]))
    return Series(name, np.arange(len(values), dtype=np.float64) * 60.0, values, cols, labels)


def _bursty(n: int, seed: int, every: int = 150) -> np.ndarray:
    """Gaussian noise plus a burst of 8 to 15 sigmas every ``every`` readings on average."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    at = np.flatnonzero(rng.random(n) < 1.0 / every)
    x[at] += rng.uniform(8.0, 15.0, len(at))
    return x


def test_gaussian_training_rows_give_about_the_gaussian_tail() -> None:
    y = level_surprise([np.random.default_rng(0).normal(size=(20_000, 1))], CFG)[0]
    rate, excess = fit_tail(y, CFG)
    assert 1e-2 <= rate < 1.3e-2
    assert _LOG10_E <= excess < 1.3 * _LOG10_E


def test_bursts_in_training_give_a_heavier_tail() -> None:
    y = level_surprise([_bursty(5000, 1, every=40)[:, None]], CFG)[0]
    rate, excess = fit_tail(y, CFG)
    assert rate > 2e-2
    # Most exceedances are bursts of 8-15 sigmas: tens of decades at the Gaussian's.
    assert excess > 5 * _LOG10_E


def test_a_calm_or_short_training_set_never_makes_the_tail_lighter() -> None:
    assert fit_tail(np.zeros(500), CFG) == (1e-2, _LOG10_E)  # no exceedance at all
    assert fit_tail(np.zeros(0), CFG) == (1e-2, _LOG10_E)  # no rows at all


def test_one_training_glitch_does_not_set_the_excess() -> None:
    y = level_surprise([np.random.default_rng(2).normal(size=(5000, 1))], CFG)[0]
    glitched = y.copy()
    glitched[2500] = 1e6  # one absurd reading: a mean excess would be thousands of decades
    assert fit_tail(glitched, CFG)[1] < 1.5 * fit_tail(y, CFG)[1]


def test_replaying_streams_side_by_side_equals_one_at_a_time() -> None:
    rng = np.random.default_rng(3)
    streams = [rng.normal(size=(n, 2)) for n in (50, 400, 7)]
    streams[1][100:120, 0] = np.nan  # missing values neither update nor count
    together = level_surprise(streams, CFG)
    for x, y in zip(streams, together, strict=True):
        np.testing.assert_allclose(level_surprise([x], CFG)[0], y, rtol=1e-12)
    assert np.isnan(together[1][100:120]).sum() == 0  # the other target is still read
    assert np.isnan(level_surprise([np.full((5, 1), np.nan)], CFG)[0]).all()


def test_level_tails_per_stream_pooled_and_labelled_rows_left_out() -> None:
    calm = _stream("calm", np.random.default_rng(4).normal(size=2000))
    bursty = _stream("bursty", _bursty(2000, 5))
    scalers = [Scaler(kind="standard", offset=np.zeros(1), scale=np.ones(1))] * 2
    tails = level_tails([calm, bursty], scalers, ("c0",))
    check_level_tails(tails)
    assert set(tails["streams"]) == {"calm", "bursty"}
    assert tails["streams"]["bursty"][1] > tails["streams"]["calm"][1]
    assert tails["streams"]["calm"][1] < tails["pooled"][1] < tails["streams"]["bursty"][1]
    # The same bursts, labelled: training leaves them out, so does the tail.
    x = _bursty(2000, 5)
    labels = (np.abs(x) > 6).astype(np.int8)
    labelled = level_tails([_stream("b", x, labels)], scalers[:1], ("c0",))
    assert labelled["streams"]["b"][1] < 2 * _LOG10_E
    kept = level_tails([_stream("b", x, labels)], scalers[:1], ("c0",), skip_labelled=False)
    assert kept["streams"]["b"] == tails["streams"]["bursty"]


@pytest.mark.parametrize(
    "bad",
    [
        None,
        {"pooled": [0.01]},
        {"pooled": [0.0, 0.4], "streams": {}},
        {"pooled": [0.01, 0.4], "streams": {"a": [0.01, -1.0]}},
        {"pooled": [0.01, 0.4], "streams": []},
        {"pooled": [0.01, "x"], "streams": {}},
    ],
)
def test_malformed_tails_are_refused(bad) -> None:
    with pytest.raises(ValueError, match="level_tail"):
        check_level_tails(bad)


def _level_lp(scorer: GaussianScorer, x: np.ndarray) -> np.ndarray:
    """The level test's log10 p for readings ``x (B, T)`` of slots 0..B-1, as evidence() takes
    it (its own scorer copy, so the statistics are the same every call)."""
    s = copy.deepcopy(scorer)
    lp, _, _ = s._gaussian(np.arange(len(x)), x, "level_", np.full(len(x), 1 / CFG.horizon))
    return s._level_tail(np.arange(len(x)), lp) if "level_tail_rate" in s.slabs else lp


def test_the_scorer_reads_the_fitted_tail_and_learns_nothing() -> None:
    scorer = GaussianScorer(CFG, np.ones(1), 3)
    plain = GaussianScorer(dataclasses.replace(CFG, level_tail=False), np.ones(1), 3)
    assert "level_tail_rate" not in plain.slabs
    x = np.array([[1.0], [6.0], [12.0]])
    # No tail set (rate 0): the Gaussian's, to the bit.
    np.testing.assert_array_equal(_level_lp(scorer, x), _level_lp(plain, x))
    # The Gaussian's own tail read as a fitted one: the same up to rounding.
    scorer.slabs["level_tail_rate"][:] = 1e-2
    scorer.slabs["level_tail_excess"][:] = _LOG10_E
    np.testing.assert_allclose(_level_lp(scorer, x), _level_lp(plain, x), rtol=1e-6)
    # A heavy tail: a 12-sigma reading is rare, not 1e-32.
    scorer.slabs["level_tail_rate"][:] = 0.03
    scorer.slabs["level_tail_excess"][:] = 5.0
    heavy = _level_lp(scorer, x)
    assert heavy[2] > -6.0 and _level_lp(plain, x)[2] < -30.0
    assert heavy[0] > heavy[1] > heavy[2]  # still in order
    before = {k: v.copy() for k, v in scorer.slabs.items()}
    for _ in range(50):  # a lasting excursion cannot teach the tail anything
        scorer.evidence(np.arange(3), np.zeros((3, 1)), np.full((3, 1), 12.0))
    np.testing.assert_array_equal(scorer.slabs["level_tail_rate"], before["level_tail_rate"])
    np.testing.assert_array_equal(scorer.slabs["level_tail_excess"], before["level_tail_excess"])


@pytest.fixture(scope="module")
def ckpt():
    fleet = sine_fleet()
    fleet[1].values[:, 0] += np.where(np.arange(len(fleet[1])) % 97 == 0, 300.0, 0.0)  # bursts
    return train(fleet, TrainConfig(timesteps=12, hidden=8, epochs=1, device="cpu")).to_checkpoint()


def test_training_fits_one_tail_per_stream_and_the_checkpoint_keeps_it(ckpt, tmp_path) -> None:
    tails = ckpt.metrics["training"]["level_tail"]
    assert set(tails["streams"]) == {s.name for s in sine_fleet()}
    assert tails["streams"]["s1"][1] > 3 * tails["streams"]["s0"][1]  # s1's bursts
    back = load_checkpoint(save_checkpoint(tmp_path / "m.pt", ckpt))
    assert back.metrics["training"]["level_tail"] == tails
    bad = copy.deepcopy(ckpt)
    bad.metrics["training"]["level_tail"] = {"pooled": [2.0, 0.4], "streams": {}}
    with pytest.raises(CheckpointError, match="level_tail"):
        load_checkpoint(save_checkpoint(tmp_path / "bad.pt", bad))


def _slab(engine: Engine, name: str) -> tuple[float, float]:
    slot = engine.state.slot_of[name]
    s = engine.scorer.slabs
    return float(s["level_tail_rate"][slot]), float(s["level_tail_excess"][slot])


def test_the_engine_sets_each_streams_tail_from_the_checkpoint(ckpt, tmp_path) -> None:
    tails = ckpt.metrics["training"]["level_tail"]
    engine = Engine(ckpt, EngineConfig(device="cpu"))
    engine.process(["s1", "new"], [0.0, 0.0], np.zeros((2, 2)))
    np.testing.assert_allclose(_slab(engine, "s1"), tails["streams"]["s1"], rtol=1e-6)
    np.testing.assert_allclose(_slab(engine, "new"), tails["pooled"], rtol=1e-6)
    # A restore takes the running checkpoint's tails, not the snapshot's.
    snap = engine.snapshot(tmp_path / "snap.npz")
    with np.load(snap) as saved:  # the tails are the model's: a snapshot leaves them out
        assert not [k for k in saved.files if "level_tail" in k]
        assert "extra_scorer_level_mean" in saved.files
    other = copy.deepcopy(ckpt)
    other.metrics["training"]["level_tail"]["streams"]["s1"] = [0.5, 9.0]
    restored = Engine(other, EngineConfig(device="cpu"))
    restored.restore(snap)
    np.testing.assert_allclose(_slab(restored, "s1"), [0.5, 9.0], rtol=1e-6)
    # A swap to another model takes its tails too.
    engine.swap_model(other)
    np.testing.assert_allclose(_slab(engine, "s1"), [0.5, 9.0], rtol=1e-6)
    # A checkpoint from before tails were fitted: the Gaussian's (no tail set).
    old = copy.deepcopy(ckpt)
    del old.metrics["training"]["level_tail"]
    plain = Engine(old, EngineConfig(device="cpu"))
    plain.process(["s1"], [0.0], np.zeros((1, 2)))
    assert _slab(plain, "s1") == (0.0, 0.0)


def test_tails_say_what_they_were_fitted_under_and_the_engine_warns_on_a_mismatch(
    ckpt, caplog
) -> None:
    tails = ckpt.metrics["training"]["level_tail"]
    assert tails["fitted_with"] == {"horizon": CFG.horizon, "clip": CFG.clip}
    assert tail_mismatch(tails, CFG) is None
    assert tail_mismatch({"pooled": [0.01, 0.5], "streams": {}}, CFG) is None  # session 20's
    short = dataclasses.replace(CFG, horizon=500)
    assert "horizon 2000 (scorer: 500)" in tail_mismatch(tails, short)
    with caplog.at_level("WARNING", logger="detector.engine"):
        Engine(ckpt, EngineConfig(device="cpu"))
    assert not caplog.records
    with caplog.at_level("WARNING", logger="detector.engine"):
        engine = Engine(ckpt, EngineConfig(device="cpu", scorer=dataclasses.replace(CFG, clip=3)))
        engine.process(["s0", "s1"], [0.0, 0.0], np.zeros((2, 2)))
    assert [r.getMessage().count("clip 5 (scorer: 3)") for r in caplog.records] == [1]  # once
    # The tails are still read: they are nearer the stream's excursions than the Gaussian's.
    np.testing.assert_allclose(_slab(engine, "s1"), tails["streams"]["s1"], rtol=1e-6)
    for bad in ({"horizon": 0, "clip": 5.0}, {"clip": 5.0}, "2000"):
        with pytest.raises(ValueError, match="horizon and clip"):
            check_level_tails(dict(tails, fitted_with=bad))
