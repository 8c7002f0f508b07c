"""Every scorer passes the same contract; then each one's own behaviour."""

import numpy as np
import pytest

from detector import native
from detector.scoring import (
    KNEE,
    SCORERS,
    ScorerConfig,
    chi2_tail,
    evidence_of_score,
    log10_chi2_tail,
    make_scorer,
    probit_log10,
    surprise,
    surprise_log10,
)

CFG = ScorerConfig(warmup=10, short=5, long=100)


def _errors(seed: int, n: int = 300, b: int = 4, t: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (n, b, t))


def _run(kind: str, errs: np.ndarray, **kw) -> tuple[np.ndarray, np.ndarray]:
    cfg = ScorerConfig(**{**CFG.__dict__, "kind": kind, **kw})
    scorer = make_scorer(cfg, np.ones(errs.shape[2]), 8)
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


def test_evidence_of_score_inverts_the_scale() -> None:
    log10_p = np.array([0.0, -2.0, -5.0, -9.0, -12.0, -40.0, -300.0])
    np.testing.assert_allclose(evidence_of_score(surprise_log10(log10_p)), -log10_p / 10.0)
    assert evidence_of_score(np.array([1.0]))[0] == np.inf


def test_unknown_scorer() -> None:
    with pytest.raises(ValueError, match="scorer must be one of"):
        make_scorer(ScorerConfig(kind="magic"), np.ones(1), 1)


def test_tail_calibration_learns_routine_outliers_but_still_flags_a_bigger_one() -> None:
    # A stream whose model misses a daily step: a 10-sigma error every 50 readings is routine.
    errs = _errors(4, n=2000, b=1, t=1)
    errs[::50] += 10.0
    errs[1990, 0, 0] = 40.0  # the anomaly: far beyond the routine steps
    plain, _ = _run("gaussian", errs, tail=True)
    # The error test alone, untailed (no Sidak factor for the error-size test beside it).
    cfg = ScorerConfig(**{**CFG.__dict__, "tail": False, "error_sustained": False})
    scorer = make_scorer(cfg, np.ones(1), 1)
    untailed = np.array([scorer.score(np.zeros(1, np.int64), e)[0][0] for e in errs])
    routine = np.arange(1000, 1990, 50)
    assert np.all(untailed[routine] > KNEE)  # Gaussian: every routine step is "1e-9 or rarer"
    assert np.all(plain[routine] < 0.3)  # learnt tail: routine steps stop alerting
    assert plain[1990] >= 0.5 and plain[1990] > plain[routine].max()


def test_tail_calibration_is_the_identity_on_gaussian_errors() -> None:
    errs = _errors(5, n=3000, b=1, t=1)
    scores, _ = _run("gaussian", errs, tail=True)
    cfg = ScorerConfig(**{**CFG.__dict__, "tail": False})
    scorer = make_scorer(cfg, np.ones(1), 1)
    untailed = np.array([scorer.score(np.zeros(1, np.int64), e)[0][0] for e in errs])
    assert np.abs(scores[500:, 0] - untailed[500:]).mean() < 0.02


def test_level_evidence_holds_through_a_sustained_shift_the_forecast_follows() -> None:
    # The forecaster tracks the shift (small errors), but the readings sit 8 sigmas off their
    # usual level: the level evidence keeps the score up while the forecast error says nothing.
    # (The level follows drift at the pace of `horizon`, so a shift is absorbed in the end: an
    # 8-sigma one within about horizon / 20 readings, as its clipped 5-sigma updates inflate
    # the variance.)
    rng = np.random.default_rng(6)
    errs = rng.normal(0, 1, (1000, 1, 2))
    level = rng.normal(0, 1, (1000, 1, 2))
    level[600:900, 0, 0] += 8.0
    scores = {}
    for on in (True, False):
        # The relations and sustained tests would see the shift too: off, so this measures the
        # level test.
        cfg = ScorerConfig(**{**CFG.__dict__, "level": on, "relations": False, "sustained": 0})
        scorer = make_scorer(cfg, np.ones(2), 1)
        slot = np.zeros(1, np.int64)
        scores[on] = np.array(
            [scorer.score(slot, e, x)[0][0] for e, x in zip(errs, level, strict=True)]
        )
    held = slice(600, 600 + CFG.horizon // 40)
    assert np.mean(scores[True][held] >= 0.5) > 0.9
    assert np.mean(scores[False][held] >= 0.5) < 0.05
    assert np.mean(scores[True][100:600] >= 0.5) < 0.01


def test_level_beside_relations_off_leaves_the_level_to_the_relations_test_only() -> None:
    """Off, a stream the relations test reads (2 to 64 targets) is scored as with no level
    test; a univariate one, which the relations test cannot read, keeps its level test."""
    rng = np.random.default_rng(7)

    def scores(t: int, **kw) -> np.ndarray:
        errs = rng.normal(0, 1, (800, 1, t))
        level = rng.normal(0, 1, (800, 1, t))
        level[500:700, 0, 0] += 8.0
        cfg = ScorerConfig(**{**CFG.__dict__, **kw})
        scorer = make_scorer(cfg, np.ones(t), 1)
        slot = np.zeros(1, np.int64)
        return np.array([scorer.score(slot, e, x)[0][0] for e, x in zip(errs, level, strict=True)])

    for t in (1, 3):
        state = rng.bit_generator.state
        runs = {}
        for name, kw in {
            "beside": {"level_beside_relations": True},
            "not beside": {"level_beside_relations": False},
            "no level": {"level": False},
        }.items():
            rng.bit_generator.state = state  # the same readings for each setting
            runs[name] = scores(t, **kw)
        assert not np.array_equal(runs["beside"], runs["no level"])  # the level test counts
        twin = "no level" if t > 1 else "beside"
        np.testing.assert_array_equal(runs["not beside"], runs[twin])


@pytest.mark.parametrize("dof", [2, 4, 8, 16])
def test_even_dof_closed_form_matches_gammaincc(dof: int) -> None:
    """The fast path for a batch with one small even dof is the general path's function, and
    stays exact and ordered where the general one falls back to its asymptotic form."""
    rng = np.random.default_rng(dof)
    d2 = np.concatenate([rng.chisquare(dof, 2000), [0.0, 1e-12, 1.0, 2.0, 30.0, 300.0]])
    fast = log10_chi2_tail(d2, np.full(len(d2), dof))
    # The same values through the general (gammaincc) path: mixed dof defeats the fast path.
    general = log10_chi2_tail(np.append(d2, 1.0), np.append(np.full(len(d2), dof), 3))[:-1]
    np.testing.assert_allclose(fast, general, rtol=1e-12, atol=1e-12)
    far = log10_chi2_tail(np.logspace(3, 90, 200), np.full(200, dof))
    assert np.all(np.isfinite(far)) and np.all(np.diff(far) < 0)
    # Past float64's reach, log10 Q(a, x) = (ln(sum_k x^k/k!) - x) / ln 10 exactly; x = 1e40:
    a, x = dof // 2, 1e40
    leading = ((a - 1) * np.log(x) - np.sum(np.log(np.arange(1, a))) - x) / np.log(10)
    np.testing.assert_allclose(log10_chi2_tail(np.array([2 * x]), np.array([dof])), [leading])
    assert log10_chi2_tail(np.array([5.0]), np.array([0])) == 0.0


def test_scores_of_a_run_of_slots_equal_those_of_the_same_slots_shuffled() -> None:
    """A run of slots is scored on views of the slabs, other waves on gathered copies; the two
    must agree reading for reading and leave the same statistics behind."""
    rng = np.random.default_rng(4)
    errs = rng.standard_normal((60, 16, 3))
    errs[40, 5] += 9.0
    order = rng.permutation(16)
    a, b = (make_scorer(CFG, np.ones(3), 16) for _ in range(2))
    for e in errs:
        sa, ca = a.score(np.arange(16), e, e * 0.5)
        sb, cb = b.score(order, e[order], e[order] * 0.5)
        np.testing.assert_array_equal(sa[order], sb)
        np.testing.assert_array_equal(ca[order], cb)
    for key in a.slabs:
        np.testing.assert_array_equal(a.slabs[key], b.slabs[key])


@pytest.mark.skipif(native.library() is None, reason="no C compiler here")
@pytest.mark.parametrize("kind", sorted(SCORERS))
@pytest.mark.parametrize("shuffled", [False, True])
def test_native_gaussian_pass_equals_the_numpy_reference(kind: str, shuffled: bool) -> None:
    """The C passes (Gaussian tests, repeats) and the NumPy code score alike and leave the same
    statistics, missing values, huge errors, quantised and stuck readings and both kinds of slot
    index (a run, or scattered) included."""
    rng = np.random.default_rng(11)
    errs = rng.standard_normal((160, 12, 5))  # past the relations test's warm-up
    errs[50, 3] += 40.0
    errs[60, 4, :2] = 1e30
    errs[rng.random(errs.shape) < 0.05] = np.nan
    errs[70, 6] = np.nan  # a reading with every target missing
    slots = rng.permutation(12) if shuffled else np.arange(12)
    cfg = ScorerConfig(**{**CFG.__dict__, "kind": kind, "repeats": True})
    fast, ref = (make_scorer(cfg, np.full(5, 0.7), 12) for _ in range(2))
    ref.native = False
    levels = np.round(errs * 0.3 + 1.0, 1)  # quantised: repeats are common
    levels[20:45, 5] = levels[19, 5]  # and stream 5 gets stuck, with a gap in the run
    levels[30:33, 5, 1] = np.nan
    for e, lv in zip(errs, levels, strict=True):
        s1, c1 = fast.score(slots, e, lv)
        s2, c2 = ref.score(slots, e, lv)
        np.testing.assert_allclose(s1, s2, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(c1, c2, rtol=1e-9, atol=1e-12)
    for key in ref.slabs:
        np.testing.assert_allclose(fast.slabs[key], ref.slabs[key], rtol=1e-9, atol=1e-12)


@pytest.mark.skipif(native.library() is None, reason="no C compiler here")
@pytest.mark.parametrize("targets", [33, 64])
def test_native_relations_equal_numpy_up_to_the_widest(targets: int) -> None:
    """The C pass's Cholesky buffers hold 64 targets: wide streams score as NumPy does."""
    rng = np.random.default_rng(15)
    level = rng.normal(size=(140, 4, 3)) @ rng.normal(size=(3, targets))
    level += rng.normal(size=level.shape) * 0.3
    level[120:, 2, :5] += 3.0  # a break, so the Huber bound is used
    fast, ref = (make_scorer(CFG, np.ones(targets), 4) for _ in range(2))
    ref.native = False
    slots = np.array([2, 0, 3, 1])
    for x in level:
        e = rng.normal(size=(4, targets))
        np.testing.assert_allclose(fast.score(slots, e, x)[0], ref.score(slots, e, x)[0], 1e-9)
    # and the whitened innovation's sustained test, which the C pass feeds
    for key in ("rel_mean", "rel_tri", "rel_n", "wsus_level", "wsus_mean", "wsus_var"):
        np.testing.assert_allclose(fast.slabs[key], ref.slabs[key], rtol=1e-6, atol=1e-9)


def _related_pair(n: int, rng: np.random.Generator) -> np.ndarray:
    """Two readings that move together, in the scaler's units: the second follows the first."""
    first = rng.normal(0, 1, n)
    return np.stack([first, first + rng.normal(0, 0.1, n)], axis=1)


def test_relations_flag_a_broken_correlation_that_each_target_alone_misses() -> None:
    # From row 1500 the second channel moves against the first: each stays N(0, 1), inside its
    # usual range, so the per-target tests see nothing; only the broken relation is new.
    rng = np.random.default_rng(12)
    level = _related_pair(1800, rng)
    level[1500:, 1] = -level[1500:, 0] + rng.normal(0, 0.1, 300)
    on, contrib = _scores_with_level(level, relations=True)
    off, _ = _scores_with_level(level, relations=False)
    broken = slice(1500, 1600)
    # Where the first channel is near 0, the broken relation reads alike: the evidence is the
    # readings away from it (the second is then 2 sd or more off where it belonged). The test's
    # own tail learns from each such run, so the onset is what must be seen.
    telling = np.flatnonzero(np.abs(level[broken, 0]) > 1.0)
    assert np.all(on[broken][telling[:5]] >= 0.5)
    assert np.mean(off[broken] >= 0.5) < 0.05
    assert np.mean(on[200:1500] >= 0.5) < 0.01  # learnt relation, no false alerts
    assert contrib[1500:1600].sum(axis=1).max() <= 1.0 + 1e-9


def test_relations_on_32_targets_raise_no_false_alerts_while_the_covariance_is_young() -> None:
    # 32 correlated targets, evidence from the 100th reading on: a sample covariance that young
    # is near-singular and would call every reading an anomaly (it does with `prior` 0); the
    # scaler's N(0, 1) as its prior, weighted `prior` readings, must keep it calm.
    rng = np.random.default_rng(14)
    n, b, t = 800, 10, 32
    level = (rng.normal(size=(n, b, 3)) @ rng.normal(size=(3, t))) * 0.3
    level += rng.normal(size=(n, b, t)) * 0.2
    errs = rng.normal(size=(n, b, t))
    scorer = make_scorer(CFG, np.ones(t), b)
    slots = np.arange(b)
    scores = np.array([scorer.score(slots, e, x)[0] for e, x in zip(errs, level, strict=True)])
    assert "rel_tri" in scorer.slabs
    assert np.mean(scores[100:] >= 0.5) < 1e-3


def _telemetry_with_command_flags(rng: np.random.Generator, n: int, b: int) -> np.ndarray:
    """Four correlated channels and two command flags: 0, then 1 for 5-20 readings every few
    hundred, in the scaler's units (a pulse is about 6 training sd)."""
    cont = rng.normal(size=(n, b, 2)) @ rng.normal(size=(2, 4)) * 0.5
    cont += rng.normal(size=(n, b, 4)) * 0.2
    flags = np.zeros((n, b, 2))
    for j in range(b):
        for k in range(2):
            i = int(rng.integers(50, 300))
            while i < n:
                length = int(rng.integers(5, 20))
                flags[i : i + length, j, k] = 1.0
                i += length + int(rng.integers(150, 450))
    return np.concatenate([cont, (flags - flags.mean()) / flags.std()], axis=2)


def _command_flag_alert_share(**kw) -> float:
    """Share of alert-level readings (after 300) on 10 streams of 3,000 readings with command
    flags, the forecaster missing each switch, under ``CFG`` changed by ``kw``."""
    rng = np.random.default_rng(3)
    n, b = 3000, 10
    level = _telemetry_with_command_flags(rng, n, b)
    errs = rng.normal(size=(n, b, 6)) * 0.5
    errs[1:, :, 4:] += np.diff(level[:, :, 4:], axis=0)
    scorer = make_scorer(ScorerConfig(**{**CFG.__dict__, **kw}), np.ones(6), b)
    slots = np.arange(b)
    scores = np.array([scorer.score(slots, e, x)[0] for e, x in zip(errs, level, strict=True)])
    return float(np.mean(scores[300:] >= 0.5))


def test_relations_learn_a_routine_command_flag_and_stop_alerting_on_it() -> None:
    # A Gaussian covariance learnt in a calm stretch calls each pulse a many-sigma event (7% of
    # readings alert-level without the test's own tail); the tail must learn pulses are routine.
    share = {on: _command_flag_alert_share(relations=on) for on in (True, False)}
    assert share[True] <= share[False] + 0.005


def test_relations_skip_a_reading_with_a_missing_value() -> None:
    rng = np.random.default_rng(13)
    level = _related_pair(300, rng)
    cfg = ScorerConfig(**CFG.__dict__)
    scorer = make_scorer(cfg, np.ones(2), 1)
    slot = np.zeros(1, np.int64)
    for x in level:
        scorer.score(slot, rng.normal(0, 1, (1, 2)), x[None])
    before = {k: scorer.slabs[k].copy() for k in ("rel_mean", "rel_tri", "rel_n")}
    gap = np.array([[np.nan, 50.0]])  # the present value is absurd: a lost relation, not data
    score, _ = scorer.score(slot, np.zeros((1, 2)), gap)
    for k, v in before.items():
        np.testing.assert_array_equal(scorer.slabs[k], v)
    assert score[0] > 0.5  # the level test still reads the present target, 50 sigmas off


@pytest.mark.parametrize(("targets", "has"), [(1, False), (2, True), (64, True), (65, False)])
def test_relations_need_2_to_64_targets(targets: int, has: bool) -> None:
    scorer = make_scorer(CFG, np.ones(targets), 4)
    assert ("rel_tri" in scorer.slabs) is has
    off = make_scorer(ScorerConfig(**{**CFG.__dict__, "relations": False}), np.ones(targets), 4)
    assert "rel_tri" not in off.slabs


def _scores_with_level(level: np.ndarray, **kw) -> tuple[np.ndarray, np.ndarray]:
    """Scores and contributions of one stream with small forecast errors and these readings."""
    n, t = level.shape
    errs = np.random.default_rng(9).normal(0, 1, (n, t))
    errs[np.isnan(level)] = np.nan
    scorer = make_scorer(ScorerConfig(**{**CFG.__dict__, **kw}), np.ones(t), 1)
    slot = np.zeros(1, np.int64)
    out = [scorer.score(slot, e[None], x[None]) for e, x in zip(errs, level, strict=True)]
    return np.array([s[0] for s, _ in out]), np.array([c[0] for _, c in out])


def test_repeats_flag_a_stuck_channel_that_the_forecast_follows() -> None:
    level = np.random.default_rng(8).normal(0, 1, (900, 2))
    level[600:700, 1] = level[599, 1]  # channel 1 stuck at an ordinary value
    on, contrib = _scores_with_level(level, repeats=True)
    off, _ = _scores_with_level(level, repeats=False)
    assert np.mean(off[600:700] >= 0.5) < 0.05  # errors and level look normal: missed
    assert np.all(on[605:700] >= 0.6)  # a run of 5 exact repeats is far past 1e-6
    assert np.argmax(contrib[650]) == 1  # and it is the stuck channel's doing
    assert np.mean(on[100:600] >= 0.5) < 0.01 and np.mean(on[710:] >= 0.5) < 0.01


def test_repeats_are_ordinary_for_count_data() -> None:
    # A low-rate count repeats itself a third of the time: runs of 2-3 are routine.
    level = np.random.default_rng(10).poisson(1.0, (2000, 1)).astype(np.float64)
    on, _ = _scores_with_level(level, repeats=True)
    assert np.mean(on[300:] >= 0.5) < 0.005


def test_repeats_a_missing_reading_neither_extends_nor_breaks_a_run() -> None:
    level = np.random.default_rng(11).normal(0, 1, (700, 1))
    level[600:620] = level[599]
    level[605:610] = np.nan
    on, _ = _scores_with_level(level, repeats=True)
    # 15 repeats spread over 20 rows: as strong at the end as 15 in a row, and no weaker
    # after the gap than before it
    level2 = level.copy()
    level2[605:610] = level[599]
    assert on[619] >= 0.6 and on[610] >= on[604]
    ref, _ = _scores_with_level(level2, repeats=True)
    assert on[619] == pytest.approx(ref[614], abs=0.05)


def test_sustained_flags_a_small_lasting_shift_that_no_single_reading_shows() -> None:
    # From row 1200 one channel sits 1.5 noise sd higher: single readings stay inside the usual
    # spread and the forecaster follows them, but the average of the last 20 readings is about
    # 6 of its own sds off. (Its clipped updates inflate its variance, so within a few hundred
    # readings a shift this small is learnt: the onset is what must be seen.)
    rng = np.random.default_rng(21)
    level = rng.normal(0, 1, (1600, 2))
    level[1200:, 0] += 1.5
    on, contrib = _scores_with_level(level, relations=False)
    off, _ = _scores_with_level(level, relations=False, sustained=0)
    caught_up = slice(1240, 1300)  # two memories in: the average has moved
    assert np.mean(on[caught_up] >= 0.5) > 0.9
    assert np.mean(off[1200:] >= 0.5) < 0.01
    assert np.mean(on[200:1200] >= 0.5) < 0.01
    assert np.all(contrib[caught_up].argmax(axis=1) == 0)  # it names the shifted channel


def _ar1(rng: np.random.Generator, n: int, b: int, phi: float) -> np.ndarray:
    """``(n, b, 1)``: b unit-variance AR(1) series, starting at 0."""
    out = np.zeros((n, b, 1))
    for i in range(1, n):
        out[i] = phi * out[i - 1] + np.sqrt(1 - phi**2) * rng.normal(size=(b, 1))
    return out


def test_sustained_learns_the_autocorrelation_of_a_slow_stream() -> None:
    # AR(1) readings with phi 0.98: averaging 20 of them hardly shrinks the noise. A test that
    # assumed independent readings would put the average's sd at 1 / sqrt(39) and call most
    # of this stream's ordinary swings anomalies; its own running variance must not.
    rng = np.random.default_rng(22)
    n, b, phi = 3000, 10, 0.98
    level = _ar1(rng, n, b, phi)
    cfg = ScorerConfig(**{**CFG.__dict__, "level": False})
    scorer = make_scorer(cfg, np.ones(1), b)
    slots = np.arange(b)
    scores = np.array([scorer.score(slots, rng.normal(size=(b, 1)), x)[0] for x in level])
    smooth = np.zeros((b, 1))
    naive = []
    for x in level:
        smooth += (x - smooth) / cfg.sustained
        naive.append(np.abs(smooth[:, 0]) * np.sqrt(2 * cfg.sustained - 1) > 4.5)
    assert np.mean(naive[500:]) > 0.3  # the independence assumption would fail here
    assert np.mean(scores[500:] >= 0.5) < 2e-3


def test_sustained_learns_routine_command_flag_pulses_and_stops_alerting_on_them() -> None:
    # A pulse's 20-reading average is many sigmas of a calm stretch's: 5% of these readings
    # are alert-level with no tail, and 3-4% with a tail that learns from a run's first
    # reading (the average is only starting to climb there); learning each run's peak must
    # bring it back to the rate without the test.
    share = {memory: _command_flag_alert_share(sustained=memory) for memory in (20, 0)}
    assert share[20] <= share[0] + 0.003


def test_sustained_a_missing_value_neither_moves_the_average_nor_is_evidence() -> None:
    rng = np.random.default_rng(23)
    scorer = make_scorer(ScorerConfig(**{**CFG.__dict__, "relations": False}), np.ones(2), 1)
    slot = np.zeros(1, np.int64)
    for _ in range(300):
        scorer.score(slot, rng.normal(0, 1, (1, 2)), rng.normal(0, 1, (1, 2)))
    before = {k: scorer.slabs[k][0, 0] for k in ("sus_level", "sus_mean", "sus_var")}
    gap = np.array([[np.nan, 0.0]])  # as the engine gives it: no reading, no error
    score, contrib = scorer.score(slot, gap, gap)
    for k, v in before.items():
        assert scorer.slabs[k][0, 0] == v
    assert contrib[0, 0] == 0.0 and score[0] < 0.5


@pytest.mark.parametrize("size", [1e3, 1e6, 1e30])
def test_sustained_a_single_glitch_is_not_a_lasting_shift(size: float) -> None:
    # One reading moves the average by at most one of its own sds. Uncapped, a glitch of a
    # thousand sigmas held the average at alert level for 80 readings, 1e6 for 200, 1e30 for
    # 1200.
    rng = np.random.default_rng(25)
    level = rng.normal(0, 1, (1200, 2))
    level[800, 1] += size
    on, _ = _scores_with_level(level, relations=False)
    off, _ = _scores_with_level(level, relations=False, sustained=0)
    assert on[800] >= 0.5  # the glitch itself is seen (by the level test)
    assert np.mean(on[805:] >= 0.5) == np.mean(off[805:] >= 0.5) == 0.0
    scorer = make_scorer(ScorerConfig(**{**CFG.__dict__, "relations": False}), np.ones(2), 1)
    slot = np.zeros(1, np.int64)
    for x in level:
        scorer.score(slot, rng.normal(0, 1, (1, 2)), x[None])
    for k, v in scorer.slabs.items():  # a snapshot refuses what is not finite
        assert np.isfinite(v).all(), k


def test_error_sustained_flags_a_lasting_noise_burst_that_single_errors_barely_show() -> None:
    # From row 2500, for 300 readings, one channel's forecast error has three times its usual
    # spread: the error test alone flags under 2% of those readings (an error must reach about
    # 4.4 sigmas), but the average size of the last 20 errors is many of its own sds off.
    rng = np.random.default_rng(31)
    n, start = 2900, 2500
    level = rng.normal(0, 1, (n, 2))
    errs = rng.normal(0, 1, (n, 2))
    errs[start : start + 300, 0] *= 3.0

    def scores(**kw) -> tuple[np.ndarray, np.ndarray]:
        scorer = make_scorer(ScorerConfig(**{**CFG.__dict__, "relations": False, **kw}), [1, 1], 1)
        slot = np.zeros(1, np.int64)
        out = [scorer.score(slot, e[None], x[None]) for e, x in zip(errs, level, strict=True)]
        return np.array([s[0] for s, _ in out]), np.array([c[0] for _, c in out])

    on, contrib = scores(error_sustained=True)
    off, _ = scores(error_sustained=False)
    window = slice(start + 40, start + 100)
    assert np.mean(on[window] >= 0.5) > 0.5
    assert np.mean(off[window] >= 0.5) < 0.05
    assert np.mean(on[200:start] >= 0.5) <= np.mean(off[200:start] >= 0.5) + 1e-3
    assert np.all(contrib[window][on[window] >= 0.5].argmax(axis=1) == 0)  # it names it


def test_error_sustained_learns_autocorrelated_errors_and_routine_command_flags() -> None:
    # A model that misses a slow component leaves AR(1) errors (phi 0.9): the average size of 20
    # of them varies far more than independent errors' would, and its own running variance must
    # learn that, from the first readings on.
    rng = np.random.default_rng(24)
    n, b = 3000, 10
    errs = _ar1(rng, n, b, 0.9)
    cfg = ScorerConfig(**{**CFG.__dict__, "level": False, "error_sustained": True})
    scorer = make_scorer(cfg, np.ones(1), b)
    slots = np.arange(b)
    scores = np.array([scorer.score(slots, e, rng.normal(size=(b, 1)))[0] for e in errs])
    assert np.mean(scores >= 0.5) < 1e-3
    share = {on: _command_flag_alert_share(error_sustained=on) for on in (True, False)}
    assert share[True] <= share[False] + 0.003


def test_sustained_beyond_keeps_a_lasting_shift_in_evidence_longer() -> None:
    # From row 700 to 1100 the reading sits 1.5 of its sds higher: invisible to the level test
    # (p ~ 0.1), about 9 sds of the 20-reading average. Taught in full, the average's spread
    # doubles every few dozen readings of the shift and the evidence is gone within 100; taught
    # a quarter, it lasts about 200; taught nothing, all 400. Before and after, no alert.
    level = np.random.default_rng(41).normal(0, 1, (1600, 1))
    level[700:1100, 0] += 1.5
    held = {w: _scores_with_level(level, sustained_beyond=w)[0] >= 0.3 for w in (1.0, 0.25, 0.0)}
    assert held[1.0][720:800].mean() < 0.8 and not held[1.0][800:1100].any()
    assert held[0.25][720:900].mean() > 0.95 and held[0.25][900:1100].mean() < 0.5
    assert held[0.0][720:1100].mean() > 0.95
    for h in held.values():
        assert not h[100:700].any() and h[1150:].mean() < 0.01
    assert ScorerConfig().sustained_beyond == 1.0  # failed its dev-set rule: opt-in


@pytest.mark.parametrize(
    "use_native",
    [
        pytest.param(
            True, marks=pytest.mark.skipif(native.library() is None, reason="no C compiler here")
        ),
        False,
    ],
)
def test_residual_beyond_holds_the_residual_tests_spread_and_not_the_readings(
    use_native: bool,
) -> None:
    # The same lasting shift fed to the readings' test (sus_) and to a residual one (esus_):
    # the residuals' lesson beyond the clip is `residual_beyond`, the readings' stays
    # `sustained_beyond`. Taught nothing, the residual test's spread is what it was before the
    # shift; taught in full, the readings' spread grows many times over.
    cfg = ScorerConfig(**{**CFG.__dict__, "error_sustained": True, "residual_beyond": 0.0})
    assert (cfg.beyond("sus_"), cfg.beyond("esus_"), cfg.beyond("wsus_")) == (1.0, 0.0, 0.0)
    scorer = make_scorer(cfg, np.ones(1), 1)
    scorer.native = use_native
    x = np.random.default_rng(43).normal(0, 1, (1100, 1))
    x[700:, 0] += 1.5  # about 9 sds of the 20-reading average
    slot, var = np.zeros(1, np.int64), {}
    for k, row in enumerate(x):
        if k == 700:
            var = {p: float(scorer.slabs[p + "var"][0, 0]) for p in ("sus_", "esus_")}
        scorer.slabs["count"][0] = k + 1
        alpha = np.array([1.0 / min(k + 1 + cfg.prior, cfg.horizon)])
        for prefix in ("sus_", "esus_"):
            scorer._sustained(slot, row[None], np.zeros((1, 1)), alpha, prefix)
    grown = {p: float(scorer.slabs[p + "var"][0, 0]) / var[p] for p in var}
    assert grown["sus_"] > 8.0
    assert grown["esus_"] < 1.2


def test_sustained_off_keeps_no_state() -> None:
    off = make_scorer(ScorerConfig(**{**CFG.__dict__, "sustained": 0}), np.ones(3), 4)
    assert not any(k.startswith("sus_") for k in off.slabs)
    no_size = make_scorer(ScorerConfig(**{**CFG.__dict__, "error_sustained": False}), [1], 4)
    assert not any(k.startswith("esus_") for k in no_size.slabs)
    with_size = make_scorer(ScorerConfig(**{**CFG.__dict__, "error_sustained": True}), [1], 4)
    assert with_size.slabs["esus_var"].dtype == np.float32
    on = make_scorer(CFG, np.ones(3), 4)
    assert on.slabs["sus_var"].dtype == np.float32  # 12 bytes per target: see performance.md


@pytest.mark.parametrize(
    "shuffled,beyond,residual", [(False, 1.0, 1.0), (True, 1.0, 1.0), (True, 0.25, 0.1)]
)
def test_native_sustained_pass_equals_the_numpy_reference(
    shuffled: bool, beyond: float, residual: float
) -> None:
    rng = np.random.default_rng(24)
    level = rng.normal(size=(400, 4, 5))
    level[250:, 1, 2] += 3.0  # a shift, so the clip is used
    level[100:120, 3, 0] = np.nan
    # both passes, with the spread's lesson beyond the clip taught in full and in part
    cfg = ScorerConfig(
        **{
            **CFG.__dict__,
            "error_sustained": True,
            "sustained_beyond": beyond,
            "residual_beyond": residual,
        }
    )
    fast, ref = (make_scorer(cfg, np.ones(5), 4) for _ in range(2))
    ref.native = False
    slots = np.array([2, 0, 3, 1]) if shuffled else np.arange(4)
    for k, x in enumerate(level):
        e = rng.normal(size=(4, 5)) * (3.0 if 250 <= k < 300 else 1.0)  # a burst: clip used
        np.testing.assert_allclose(fast.score(slots, e, x)[0], ref.score(slots, e, x)[0], 1e-6)
    for prefix in ("sus_", "esus_"):
        for key in ("level", "mean", "var", "tail_excess"):
            a, b = fast.slabs[prefix + key], ref.slabs[prefix + key]
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.skipif(native.library() is None, reason="no C compiler here")
def test_the_scorers_repeats_slabs_take_the_c_pass() -> None:
    # The equality test above would pass with NumPy on both sides if the slabs stopped fitting
    # the C pass; this says the fast path is the one a default scorer takes.
    scorer = make_scorer(ScorerConfig(repeats=True), np.ones(3), 4)
    s = scorer.slabs
    x, z2 = np.zeros((2, 3)), np.zeros((2, 3))
    args = (s["rep_last"], s["rep_run"], s["rep_rate"], np.array([3, 1]), np.full(2, 0.05))
    assert native.repeats(x, *args, 5e-4, -9.0, z2) is not None


def test_repeats_compare_readings_at_the_windows_float32_precision() -> None:
    # The engine's windows keep float32, so the model cannot tell readings apart that differ
    # past it; nor can the repeats test, whose slabs are float32. Readings that differ at
    # float32 precision are distinct.
    level = np.random.default_rng(8).normal(0, 1, (700, 1))
    stuck = level.copy()
    stuck[600:] = 0.123456789 + np.arange(100)[:, None] * 1e-12  # equal in float32
    moving = level.copy()
    moving[600:] = 0.123456789 + np.arange(100)[:, None] * 1e-3  # distinct in float32
    assert np.all(_scores_with_level(stuck, repeats=True)[0][610:] >= 0.6)
    assert np.mean(_scores_with_level(moving, repeats=True)[0][610:] >= 0.5) < 0.05


def test_tail_counts_saturate_instead_of_wrapping() -> None:
    scorer = make_scorer(ScorerConfig(), np.ones(1), 1)
    scorer.slabs["tail_n"][0] = np.iinfo(np.int32).max
    for e in np.random.default_rng(2).normal(0, 1, (50, 1)) * 10.0:  # many exceedances
        scorer.score(np.zeros(1, np.int64), e[None], e[None])
    assert 0 < scorer.slabs["tail_n"][0] <= np.iinfo(np.int32).max


def test_repeats_start_from_the_training_datas_rate() -> None:
    # A coarsely quantised channel repeats itself most of the time, here with a run of 30 at
    # its start. Started at the reasoned prior (0.1), that run alarms before the stream has
    # learnt its rate; started at the rate its training data showed, it is routine.
    level = np.round(np.random.default_rng(12).normal(0, 0.3, (400, 1)), 0)
    level[:30] = 0.0
    rate = float(np.mean(level[1:] == level[:-1]))
    assert rate > 0.8
    errs = np.random.default_rng(9).normal(0, 1, level.shape)
    cfg = ScorerConfig(**{**CFG.__dict__, "repeats": True})
    slot, scores = np.zeros(1, np.int64), {}
    for name, start in (("fixed", None), ("training", [rate])):
        scorer = make_scorer(cfg, np.ones(1), 1, start)
        out = [scorer.score(slot, e[None], x[None])[0][0] for e, x in zip(errs, level, strict=True)]
        scores[name] = np.array(out)
    assert np.any(scores["fixed"][:30] >= 0.5)
    assert np.mean(scores["training"] >= 0.5) < 0.01
    with pytest.raises(ValueError, match="repeat rates"):
        make_scorer(cfg, np.ones(2), 1, [rate])


def _common_load_channels(rng: np.random.Generator, n: int) -> np.ndarray:
    """``(n, 3)`` channels that move together with a common load (sd 1 to 1.5) under independent
    noise of sd 0.1."""
    load = rng.normal(0, 1, (n, 1)) * np.array([1.0, 1.2, 1.5])
    return load + rng.normal(0, 0.1, (n, 3))


def test_relations_sustained_flags_a_lasting_shift_of_a_few_noise_sigmas_in_one_channel() -> None:
    # From row 1500 channel 0 sits 0.35 higher: 3.5 of its noise sds, but a third of its
    # spread, so neither one reading (relations, level) nor channel 0's own average
    # (sustained, 2 of its sds) stands out. Against how the channels move together it is a
    # lasting break of 3 noise sds, which a 20-reading average shows as about 18.
    level = _common_load_channels(np.random.default_rng(31), 1800)
    level[1500:, 0] += 0.35
    on, _ = _scores_with_level(level, relations_sustained=True)
    off, _ = _scores_with_level(level, relations_sustained=False)
    assert np.mean(off[1500:] >= 0.5) < 0.01
    # one memory in, for over a hundred readings (then the test's own statistics and the tail's
    # rate, learning from it, let it fade)
    assert np.mean(on[1520:1640] >= 0.5) > 0.9
    assert np.mean(on[300:1500] >= 0.5) < 0.01
    assert ScorerConfig().relations_sustained  # on by default


def test_relations_sustained_skips_a_reading_with_a_missing_value() -> None:
    level = _common_load_channels(np.random.default_rng(32), 600)
    level[400, 1] = np.nan
    scorer = make_scorer(
        ScorerConfig(**{**CFG.__dict__, "relations_sustained": True}), np.ones(3), 1
    )
    slot = np.zeros(1, np.int64)
    before = None
    for i, x in enumerate(level):
        if i == 400:
            before = scorer.slabs["wsus_level"][0].copy()
        scorer.score(slot, np.zeros((1, 3)), x[None])
        if i == 400:  # the smoothed innovation did not move
            np.testing.assert_array_equal(scorer.slabs["wsus_level"][0], before)


def test_relations_sustained_survives_a_covariance_rounding_left_indefinite() -> None:
    scorer = make_scorer(
        ScorerConfig(**{**CFG.__dict__, "relations_sustained": True}), np.ones(3), 2
    )
    slots = np.arange(2)
    scorer.slabs["rel_tri"][0] = [1.0, 5.0, 1.0, 0.0, 0.0, 1.0]  # |corr| 5: not a covariance
    white = scorer._whitened(slots, np.ones((2, 3)))
    assert np.all(np.isfinite(white))  # the healthy stream keeps its evidence too
    score, _ = scorer.score(slots, np.zeros((2, 3)), np.ones((2, 3)))
    assert np.all(np.isfinite(score))
