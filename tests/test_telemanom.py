"""Telemanom's dynamic threshold (detector.telemanom): what it flags, what it prunes, and that it
never looks past its batch."""

import numpy as np
import pytest

from detector.telemanom import (
    TelemanomConfig,
    choose_z,
    prune_sequences,
    smooth_errors,
    telemanom_flags,
)


def _channel(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seasonal channel and a forecast off by calm Gaussian errors."""
    rng = np.random.default_rng(seed)
    values = np.sin(np.arange(n) * 2 * np.pi / 200)
    return values, values + rng.normal(0.0, 0.05, n)


def test_smoothing_is_an_ewma_that_holds_over_gaps() -> None:
    e = np.array([np.nan, 1.0, 3.0, np.nan, 3.0])
    out = smooth_errors(e, span=3)  # alpha 0.5
    np.testing.assert_allclose(out, [np.nan, 1.0, 2.0, 2.0, 2.5])


def test_a_lasting_error_is_flagged_and_calm_errors_are_not() -> None:
    values, forecast = _channel(5000, 0)
    forecast[3000:3300] += 1.0  # the forecast is off for 300 readings: a fault
    flags = telemanom_flags(values, forecast)
    assert flags[3000:3300].mean() > 0.6
    assert not flags[:3000].any()
    assert not flags[3500:].any()  # the forward buffer ends; nothing after it


def test_errors_far_below_normal_are_flagged_by_the_mirrored_pass() -> None:
    rng = np.random.default_rng(1)
    values = np.sin(np.arange(5000) * 2 * np.pi / 200)
    forecast = values + rng.normal(0.0, 0.3, 5000)
    forecast[3000:3300] = values[3000:3300]  # the errors vanish: a frozen, echoed channel
    flags = telemanom_flags(values, forecast)
    assert flags[3050:3300].mean() > 0.6
    assert not flags[:3000].any()


def test_calm_errors_alone_raise_nothing() -> None:
    for seed in range(3):
        assert not telemanom_flags(*_channel(4000, seed)).any()


def test_flags_never_look_past_their_batch() -> None:
    values, forecast = _channel(5000, 2)
    forecast[2000:2200] += 1.0
    forecast[4100:4300] -= 1.0
    full = telemanom_flags(values, forecast)
    assert full[2000:2200].any() and full[4100:4300].any()
    batch = TelemanomConfig().batch
    for end in (batch * 20, batch * 31, batch * 58):
        assert (telemanom_flags(values[:end], forecast[:end]) == full[:end]).all()


def test_choose_z_puts_the_threshold_between_calm_errors_and_a_bump() -> None:
    rng = np.random.default_rng(3)
    e_s = np.abs(rng.normal(0.0, 0.1, 2100))
    e_s[1000:1050] = 3.0
    z = choose_z(e_s)
    eps = e_s.mean() + z * e_s.std()
    assert (e_s[1000:1050] > eps).all() and (np.delete(e_s, range(1000, 1050)) < eps).all()
    assert choose_z(np.full(100, 0.2)) == TelemanomConfig().z_high  # no spread: nothing chosen


def test_an_error_equal_to_the_threshold_is_flagged_as_in_the_papers_code() -> None:
    """16 zeros and a 1: at z = 4 the threshold is exactly 1. The paper's code flags errors at
    or above it; flagging only those above once left that z with nothing flagged and a score of
    0 / 0 (a divide-by-zero warning, and an infinite score that beat every real candidate)."""
    e_s = np.r_[np.zeros(16), 1.0]
    assert e_s.mean() + 4.0 * e_s.std() == 1.0  # the tie this test is about
    with np.errstate(all="raise"):
        assert choose_z(e_s) == TelemanomConfig().z_high  # every z flags half the window or more
        assert choose_z(e_s, TelemanomConfig(buffer=1)) == 4.0  # the 1 alone, at the tie


def test_pruning_drops_sequences_not_clearly_above_the_calm_errors() -> None:
    e_s = np.full(1000, 0.1)
    e_s[500] = 0.28  # the highest calm error
    e_s[100:110], e_s[300:310], e_s[700:710] = 1.0, 0.95, 0.3
    flagged = np.zeros(1000, bool)
    flagged[100:110] = flagged[300:310] = flagged[700:710] = True
    flagged[900] = True  # a one-reading sequence
    kept = prune_sequences(e_s, flagged, np.zeros(1000, bool), 0.13)
    # 1.0 -> 0.95 is no clear fall, but 0.95 -> 0.3 is: both stand. 0.3 is within 13% of 0.28.
    assert kept[100:110].all() and kept[300:310].all()
    assert not kept[700:710].any() and not kept[900]
    # readings flagged earlier are not calm: without 0.28 among the calm ones, 0.3 stands
    before = np.zeros(1000, bool)
    before[500] = True
    assert prune_sequences(e_s, flagged, before, 0.13)[700:710].all()


def test_bad_settings_and_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        TelemanomConfig(batch=0)
    with pytest.raises(ValueError, match="prune"):
        TelemanomConfig(prune=1.0)
    with pytest.raises(ValueError, match=r"\(n,\)"):
        telemanom_flags(np.zeros(10), np.zeros(9))


def test_evaluate_flags_a_reading_when_any_target_is_flagged_with_one_onset_per_run() -> None:
    from types import SimpleNamespace

    from detector.evaluation import StreamScores, telemanom_streams
    from detector.series import Series

    a, fa = _channel(3000, 4)
    b, fb = _channel(3000, 5)
    fb[2000:2200] += 1.0  # only target b's forecast goes off
    s = Series("s", np.arange(3000.0), np.stack([a, b], 1), ("a", "b"), np.zeros(3000, np.uint8))
    lstm = StreamScores(np.zeros(3000), np.zeros(3000, bool), np.stack([fa, fb], 1))
    (out,) = telemanom_streams(SimpleNamespace(targets=("a", "b")), [s], [lstm])
    assert (out.flag == telemanom_flags(b, fb)).all() and out.flag[2000:2200].any()
    starts = np.flatnonzero(np.diff(np.concatenate([[0], out.flag.astype(int)])) == 1)
    assert (np.flatnonzero(out.onset) == starts).all() and (out.onset[starts] == 1.0).all()
    assert (out.score == out.flag).all()
