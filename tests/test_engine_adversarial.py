"""The engine under hostile batches: every reading gets a defined status, nothing raises, and no
NaN or infinity leaks into any stream's state (see docs/input-handling.md)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector.engine import STATUS, Engine, EngineConfig
from detector.scoring import ScorerConfig
from detector.training import TrainConfig, train
from tests.conftest import sine_fleet

T = 4
BASE = 1.7e9
STATE_SLABS = ("window", "offset", "scale", "forecast", "last_used", "seen", "pos")


@pytest.fixture(scope="module")
def ckpt():
    result = train(sine_fleet(n=200), TrainConfig(timesteps=T, hidden=8, epochs=1, device="cpu"))
    return result.to_checkpoint()


def _engine(ckpt, **kw) -> Engine:
    scorer = ScorerConfig(warmup=2, short=3, long=8, kind=kw.pop("kind", "gaussian"))
    return Engine(ckpt, EngineConfig(device="cpu", scorer=scorer, **kw))


def _assert_state_finite(engine: Engine) -> None:
    """No NaN or infinity in any slab a later reading would read (NaN in the alert run
    timestamps means "no run" and is by design)."""
    s = engine.state
    for name in STATE_SLABS:
        assert np.isfinite(getattr(s, name)).all(), name
    assert torch.isfinite(s.h).all() and torch.isfinite(s.c).all(), "h/c"
    assert (s.scale > 0).all()
    live = np.array(sorted(s.slot_of.values()), np.int64)
    assert not np.isnan(s.last_ts[live]).any() and not np.isposinf(s.last_ts[live]).any()
    for name, slab in engine.scorer.slabs.items():
        assert np.isfinite(slab).all(), f"scorer {name}"
    assert np.isfinite(engine.alerts.slabs["last_score"]).all()


def _assert_result_defined(res, ts: np.ndarray) -> None:
    n = len(ts)
    assert res.status.shape == (n,) and set(res.status.tolist()) <= set(range(len(STATUS)))
    assert ((res.status == STATUS.index("bad_timestamp")) == ~np.isfinite(ts)).all()
    ok = res.status == 0
    assert np.isfinite(res.score).all() and ((res.score >= 0) & (res.score <= 1)).all()
    assert (res.score[~ok] == 0).all() and (res.alert_id[~ok] == "").all()
    assert not np.isinf(res.error).any() and not np.isinf(res.forecast).any()
    assert np.isnan(res.error[~ok]).all()


# --- regressions found by the properties below ------------------------------------------------


@pytest.mark.parametrize("bad", [math.inf, -math.inf, 1e300, 3e38, -3.4e38])
@pytest.mark.parametrize("at", [1, 12])  # during warm-up (scaler fit) and once primed
def test_one_absurd_value_does_not_poison_the_stream(ckpt, bad: float, at: int) -> None:
    # Before the fix an infinite value, or a finite one that overflowed float32 in the window or
    # the LSTM, left NaN in h/c: the stream then scored 1.0 (all targets "missing") for good.
    engine = _engine(ckpt)
    scores = []
    for i in range(40):
        row = [bad, bad] if i == at else [math.sin(i / 3), math.cos(i / 3)]
        res = engine.process(["s"], [BASE + i], [row])
        _assert_result_defined(res, np.array([BASE + i]))
        _assert_state_finite(engine)
        scores.append(res.score[0])
    assert max(scores[-5:]) < 1.0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_timestamp_is_rejected_and_changes_nothing(ckpt, bad: float) -> None:
    engine = _engine(ckpt, idle_s=100.0)
    engine.process(["a", "b"], [BASE, BASE], [[0.0, 0.0], [0.0, 0.0]])
    res = engine.process(["a"], [bad], [[1.0, 1.0]])
    assert STATUS[res.status[0]] == "bad_timestamp"
    # +inf once counted as "later than everything": idle-evicted every other stream and then
    # rejected each later reading of the stream as out of order.
    assert sorted(engine.state.slot_of) == ["a", "b"]
    assert engine.process(["a"], [BASE + 1], [[0.0, 0.0]]).status.tolist() == [0]


def test_wrong_width_raises_before_touching_state(ckpt) -> None:
    engine = _engine(ckpt)
    with pytest.raises(ValueError, match="values"):
        engine.process(["a"], [BASE], [[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError):
        engine.process(["a", "b"], [BASE], [[1.0, 2.0]])
    assert len(engine.state) == 0


def test_caller_arrays_are_not_modified(ckpt) -> None:
    values = np.array([[math.inf, 1.0]])
    _engine(ckpt).process(["a"], np.array([BASE]), values)
    assert values[0, 0] == math.inf


# --- properties -------------------------------------------------------------------------------

_value = st.one_of(
    st.floats(-10, 10),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -1e300, 3e38, 1e-300, 0.0]),
    st.floats(allow_nan=True, allow_infinity=True),
)
_ts = st.one_of(
    st.integers(0, 30).map(lambda k: BASE + k),  # small range: duplicates and reversals
    st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -1e300, 0.0, -1.0]),
    st.floats(allow_nan=True, allow_infinity=True),
)
_reading = st.tuples(st.sampled_from(["a", "b", "c", "pump-7", ""]), _ts, st.tuples(_value, _value))
_batches = st.lists(st.lists(_reading, max_size=25), min_size=1, max_size=6)
FUZZ = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@FUZZ
@given(
    _batches,
    st.sampled_from(["gaussian", "likelihood"]),
    st.sampled_from([None, 5.0]),
    st.sampled_from([None, 50.0]),
)
def test_adversarial_batches_have_defined_outcomes(ckpt, batches, kind, gap_s, idle_s) -> None:
    engine = _engine(ckpt, kind=kind, gap_s=gap_s, idle_s=idle_s, capacity=1, max_streams=5)
    last: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # overflow or invalid-value warnings are findings too
        for batch in batches:
            streams = [r[0] for r in batch]
            ts = np.array([r[1] for r in batch], np.float64)
            values = np.array([r[2] for r in batch], np.float64).reshape(len(batch), 2)
            finite = ts[np.isfinite(ts)]
            if idle_s is not None and len(finite):  # idle is judged by the batch's latest time
                last = {s: t for s, t in last.items() if t >= finite.max() - idle_s}
            res = engine.process(streams, ts, values)
            _assert_result_defined(res, ts)
            _assert_state_finite(engine)
            for i, s in enumerate(streams):  # the status follows each stream's last good time
                prev = last.get(s, -math.inf)
                if not math.isfinite(ts[i]):
                    continue
                expect = "scored" if ts[i] > prev else "duplicate_timestamp"
                expect = "out_of_order" if ts[i] < prev else expect
                assert STATUS[res.status[i]] == expect, (s, ts[i], prev)
                if expect == "scored":
                    last[s] = ts[i]


@FUZZ
@given(st.lists(st.text(min_size=1, max_size=300), min_size=1, max_size=40, unique=True))
def test_many_and_odd_stream_ids(ckpt, names) -> None:
    engine = _engine(ckpt, capacity=1, max_streams=64)
    n = len(names)
    for k in range(T + 4):
        res = engine.process(names, np.full(n, BASE + k), np.full((n, 2), float(k)))
        assert (res.status == 0).all()
    _assert_state_finite(engine)
    assert sorted(engine.state.slot_of) == sorted(names)
