"""Every scorer passes the same contract; then each one's own behaviour."""

import numpy as np
import pytest

from detector.scoring import (
    KNEE,
    SCORERS,
    ScorerConfig,
    chi2_tail,
    log10_chi2_tail,
    make_scorer,
    probit_log10,
    surprise,
)

CFG = ScorerConfig(warmup=10, short=5, long=100)


def _errors(seed: int, n: int = 300, b: int = 4, t: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (n, b, t))


def _run(kind: str, errs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scorer = make_scorer(ScorerConfig(**{**CFG.__dict__, "kind": kind}), np.ones(errs.shape[2]), 8)
    slots = np.arange(errs.shape[1])
    out = [scorer.score(slots, e) for e in errs]
    return np.stack([s for s, _ in out]), np.stack([c for _, c in out])


@pytest.mark.parametrize("kind", sorted(SCORERS))
def test_contract_deterministic_range_neutral_warmup_no_mutation(kind: str) -> None:
    errs = _errors(0)
    before = errs.copy()
    s1, c1 = _run(kind, errs)
    s2, c2 = _run(kind, errs)
    np.testing.assert_array_equal(errs, before)  # input not mutated
    np.testing.assert_array_equal(s1, s2)  # same input, same scores
    np.testing.assert_array_equal(c1, c2)
    assert np.all((s1 >= 0) & (s1 <= 1))  # one score scale
    assert np.all(s1[: CFG.warmup] == 0.0)  # warm-up is neutral
    assert np.allclose(c1.sum(axis=2)[s1 > 0], 1.0)  # contributions are shares
    other, _ = _run(kind, _errors(1))
    assert not np.array_equal(s1, other)


@pytest.mark.parametrize("kind", sorted(SCORERS))
def test_contract_normal_errors_rarely_alert_and_big_ones_do(kind: str) -> None:
    errs = _errors(2, n=600)
    scores, _ = _run(kind, errs)
    assert np.mean(scores[100:] >= 0.5) < 0.01  # p <= 1e-5 should almost never happen
    errs[400:420, 0, 1] += 8.0  # a sustained 8-sigma error on one target of stream 0
    hit, contrib = _run(kind, errs)
    assert hit[400:420, 0].max() >= 0.5
    assert np.argmax(contrib[hit[:, 0].argmax(), 0]) == 1
    np.testing.assert_array_equal(hit[:, 1:], scores[:, 1:])  # other streams unaffected


def test_gaussian_single_spike_and_missing_targets() -> None:
    errs = _errors(3)
    errs[200, 2, 0] = 10.0
    errs[250, 3] = np.nan
    errs[260, 3, 1] = np.nan
    scores, _ = _run("gaussian", errs)
    assert KNEE < scores[200, 2] < 1.0 and scores[199, 2] < 0.5
    assert scores[250, 3] == 0.0  # nothing to score: neutral here (the engine decides otherwise)
    assert 0 < scores[260, 3] < 0.5


def test_surprise_scale_meaning() -> None:
    np.testing.assert_allclose(surprise(np.array([1.0, 1e-5, 1e-9, 0.0])), [0, 0.5, KNEE, 1])
    np.testing.assert_allclose(chi2_tail(np.array([3.841458820694124]), np.array([1])), [0.05])


def test_surprise_never_ties_at_the_top() -> None:
    # Rarer is always higher, however rare: a threshold sweep can rank extreme readings.
    s = surprise(np.array([1e-9, 1e-10, 1e-30, 1e-300]))
    assert np.all(np.diff(s) > 0) and s[-1] < 1.0
    d2 = np.array([50.0, 500.0, 5e3, 5e4, 5e6])
    lp = log10_chi2_tail(d2, np.full(5, 3))
    assert np.all(np.isfinite(lp)) and np.all(np.diff(lp) < 0)
    assert np.all(np.diff(probit_log10(np.array([-5.0, -200.0, -299.0, -301.0, -1e4]))) > 0)


def test_unknown_scorer() -> None:
    with pytest.raises(ValueError, match="scorer must be one of"):
        make_scorer(ScorerConfig(kind="magic"), np.ones(1), 1)


def test_tail_calibration_learns_routine_outliers_but_still_flags_a_bigger_one() -> None:
    # A stream whose model misses a daily step: a 10-sigma error every 50 readings is routine.
    errs = _errors(4, n=2000, b=1, t=1)
    errs[::50] += 10.0
    errs[1990, 0, 0] = 40.0  # the anomaly: far beyond the routine steps
    plain, _ = _run("gaussian", errs)
    cfg = ScorerConfig(**{**CFG.__dict__, "tail": False})
    scorer = make_scorer(cfg, np.ones(1), 1)
    untailed = np.array([scorer.score(np.zeros(1, np.int64), e)[0][0] for e in errs])
    routine = np.arange(1000, 1990, 50)
    assert np.all(untailed[routine] > KNEE)  # Gaussian: every routine step is "1e-9 or rarer"
    assert np.all(plain[routine] < 0.3)  # learnt tail: routine steps stop alerting
    assert plain[1990] >= 0.5 and plain[1990] > plain[routine].max()


def test_tail_calibration_is_the_identity_on_gaussian_errors() -> None:
    errs = _errors(5, n=3000, b=1, t=1)
    scores, _ = _run("gaussian", errs)
    cfg = ScorerConfig(**{**CFG.__dict__, "tail": False})
    scorer = make_scorer(cfg, np.ones(1), 1)
    untailed = np.array([scorer.score(np.zeros(1, np.int64), e)[0][0] for e in errs])
    assert np.abs(scores[500:, 0] - untailed[500:]).mean() < 0.02


def test_level_evidence_holds_through_a_sustained_shift_the_forecast_follows() -> None:
    # The forecaster tracks the shift (small errors), but the readings sit 8 sigmas off their
    # usual level: the level evidence keeps the score up while the forecast error says nothing.
    # (The level follows drift at the pace of `horizon`, so a shift is absorbed in the end.)
    rng = np.random.default_rng(6)
    errs = rng.normal(0, 1, (1000, 1, 2))
    level = rng.normal(0, 1, (1000, 1, 2))
    level[600:900, 0, 0] += 8.0
    scores = {}
    for on in (True, False):
        scorer = make_scorer(ScorerConfig(**{**CFG.__dict__, "level": on}), np.ones(2), 1)
        slot = np.zeros(1, np.int64)
        scores[on] = np.array(
            [scorer.score(slot, e, x)[0][0] for e, x in zip(errs, level, strict=True)]
        )
    assert np.mean(scores[True][600:650] >= 0.5) > 0.9
    assert np.mean(scores[False][600:650] >= 0.5) < 0.05
    assert np.mean(scores[True][100:600] >= 0.5) < 0.01
