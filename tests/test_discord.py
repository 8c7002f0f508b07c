"""The subsequence discord (detector.discord): exact nearest neighbours, online, calibrated."""

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from detector.alerts import AlertConfig, replay
from detector.discord import (
    DiscordConfig,
    discord_log10_p,
    nearest_distance,
    standardise,
    tail_log10_p,
)
from detector.evaluation import DISCORD, DISCORD_COLUMNS, discord_streams
from detector.scaling import Scaler
from detector.scoring import surprise_log10
from detector.series import Series

SMALL = DiscordConfig(length=8, history=100, min_candidates=5, min_past=20)


def _brute_force(z: np.ndarray, cfg: DiscordConfig) -> np.ndarray:
    m, out = cfg.length, np.full(len(z), np.nan)
    for t in range(m - 1, len(z)):
        ends = [s for s in range(m - 1, t - m + 1) if s >= t - cfg.history]
        if len(ends) >= cfg.min_candidates:
            q = z[t - m + 1 : t + 1]
            out[t] = min(np.linalg.norm(q - z[s - m + 1 : s + 1]) for s in ends)
    return out


@pytest.mark.parametrize("columns", [1, 3])
def test_nearest_distance_is_the_exact_nearest_earlier_subsequence(columns):
    z = np.random.default_rng(columns).standard_normal((700, columns))  # > one 512-row block
    np.testing.assert_allclose(nearest_distance(z, SMALL), _brute_force(z, SMALL), atol=1e-9)


def test_a_reading_is_scored_from_earlier_readings_only():
    rng = np.random.default_rng(0)
    x = np.sin(np.arange(3000) / 9.0)[:, None] + 0.1 * rng.standard_normal((3000, 1))
    full = discord_log10_p(x, [0.0], [1.0])
    changed = x.copy()
    changed[2000:] += 5.0 * rng.standard_normal((1000, 1))
    assert (discord_log10_p(changed, [0.0], [1.0])[:2000] == full[:2000]).all()
    assert (discord_log10_p(x[:1500], [0.0], [1.0]) == full[:1500]).all()


def test_a_new_shape_is_a_discord_and_the_repeated_pattern_is_not():
    t = np.arange(6000)
    x = np.sin(2 * np.pi * t / 100) + 0.05 * np.random.default_rng(1).standard_normal(6000)
    x[4500:4600] = np.sin(2 * np.pi * t[4500:4600] / 50)  # twice the frequency for a while
    lp = discord_log10_p(x[:, None], [0.0], [0.7])
    assert -lp[4500:4600].min() >= 5  # alert-level evidence (open_at 0.5)
    assert -lp[1000:4500].min() < 2.5  # the pattern it learnt, at its ordinary tail


def test_its_tail_is_calibrated_on_noise():
    x = np.random.default_rng(2).standard_normal((20000, 1))
    lp = discord_log10_p(x, [0.0], [1.0])[1000:]
    share = (lp <= -2).mean()  # p <= 0.01 should be about 1% of readings
    assert 0.003 < share < 0.03


def test_an_exact_repetition_gives_no_evidence():
    x = np.tile(np.arange(10.0), 500)[:, None]
    assert (discord_log10_p(x, [0.0], [1.0]) == 0).all()


def test_the_tail_needs_enough_earlier_distances():
    d = np.concatenate([np.full(SMALL.min_past, np.nan), np.arange(100.0)])
    lp = tail_log10_p(d, SMALL)
    assert (lp[: SMALL.min_past + 20] == 0).all()  # fewer than min_past finite distances so far
    assert lp[-1] < 0


def test_standardise_fills_gaps_forward_and_leaves_constant_columns_unscaled():
    x = np.array([[np.nan, 1, np.nan], [2, 1, np.nan], [np.nan, 1, np.nan], [4, 1, np.nan]])
    z = standardise(x, [2.0, 1.0, np.nan], [2.0, 0.0, np.nan])
    np.testing.assert_array_equal(z[:, 0], [0.0, 0.0, 0.0, 1.0])  # leading gap: the first value
    np.testing.assert_array_equal(z[:, 1], [0.0] * 4)  # spread 0: not divided
    np.testing.assert_array_equal(z[:, 2], [0.0] * 4)  # never present: 0


def test_short_streams_have_no_score():
    assert np.isnan(nearest_distance(np.zeros((50, 1)))).all()
    assert (discord_log10_p(np.zeros((50, 1)), [0.0], [1.0]) == 0).all()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"length": 0},
        {"history": 50},
        {"tail_fraction": 1.0},
        {"beta_floor": 0.0},
        {"min_past": 1},
        {"refit_every": 0},
    ],
)
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        DiscordConfig(**kwargs)


def _stream(name: str, start: float, values: np.ndarray):
    return Series(name, start + np.arange(len(values), dtype=float), values[:, None], ("a",))


def test_discord_streams_go_on_from_the_training_stream_they_continue():
    x = np.sin(np.arange(4000) / 9.0) + 0.1 * np.random.default_rng(3).standard_normal(4000)
    x[3500:3530] = 2.0  # a shape the training rows never showed
    train, test = _stream("s", 0.0, x[:1000]), _stream("s", 1000.0, x[1000:])
    ckpt = SimpleNamespace(targets=("a",))
    (out,) = discord_streams(ckpt, [test], AlertConfig(), warm=[train])
    whole = surprise_log10(discord_log10_p(x[:, None], [x[:1000].mean()], [x[:1000].std()]))
    flag, onset = replay(whole, AlertConfig())
    np.testing.assert_allclose(out.score, whole[1000:], atol=1e-12)
    assert (out.flag == flag[1000:]).all() and (out.onset == onset[1000:]).all()
    assert out.flag[2500:2530].any() and not out.flag[:2400].any()


def test_discord_streams_scale_by_the_fitting_rows_else_the_models_scaler():
    # readings 1000 times finer than the tail's floor in raw units: only a scale reads them
    x = 10.0 + 1e-3 * np.random.default_rng(4).standard_normal(1500)
    s = _stream("s", 0.0, x)
    scaler = Scaler("standard", np.array([10.0]), np.array([1e-3]))
    ckpt = SimpleNamespace(targets=("a",), scaler_for=lambda name: scaler)
    (fitted,) = discord_streams(ckpt, [s], AlertConfig(), fit_rows=300)
    (scaled,) = discord_streams(ckpt, [s], AlertConfig())
    head = x[:300]
    expected = discord_log10_p(x[:, None], [head.mean()], [head.std()])
    np.testing.assert_allclose(fitted.score, surprise_log10(expected), atol=1e-12)
    by_scaler = discord_log10_p(x[:, None], [10.0], [1e-3])
    np.testing.assert_allclose(scaled.score, surprise_log10(by_scaler), atol=1e-12)
    assert by_scaler.min() < -2  # scaled, the noise has a tail...
    assert discord_log10_p(x[:, None], [0.0], [1.0]).min() > -1.1  # ...raw, the floor holds it


def test_wide_streams_search_a_shorter_history():
    """The work per reading grows with history x columns: past DISCORD_COLUMNS columns the
    history shrinks so that a reading costs what it costs on that many."""
    columns = 5 * DISCORD_COLUMNS
    x = np.random.default_rng(5).standard_normal((1200, columns))
    names = tuple(f"c{j}" for j in range(columns))
    s = Series("s", np.arange(1200.0), x, names)
    (out,) = discord_streams(SimpleNamespace(targets=names), [s], AlertConfig(), fit_rows=200)
    short = dataclasses.replace(DISCORD, history=DISCORD.history // 5)
    center, spread = x[:200].mean(0), x[:200].std(0)
    expected = surprise_log10(discord_log10_p(x, center, spread, short))
    np.testing.assert_allclose(out.score, expected, atol=1e-12)
    assert not np.allclose(out.score, surprise_log10(discord_log10_p(x, center, spread)))
