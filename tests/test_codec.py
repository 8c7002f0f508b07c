"""Wire formats: round trips, stream rules, every reject reason, and never-raise properties."""

from __future__ import annotations

import math
import struct

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector import codec
from detector.codec import (
    FORMATS,
    MAGIC,
    REJECT_REASONS,
    Decoded,
    decode_batch,
    encode_binary,
    encode_json,
)

COLS = ("temperature", "pressure", "flow")
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _json(obj: object) -> bytes:
    return orjson.dumps(obj)


def _one(fmt: str, key: bytes | None, value: bytes | None, **kw) -> Decoded:
    return decode_batch([key], [value], fmt, COLS, now=NOW, **kw)


def _reason(fmt: str, key: bytes | None, value: bytes | None, **kw) -> str:
    out = _one(fmt, key, value, **kw)
    assert len(out) == 0 and len(out.rejects) == 1, out.rejects
    return out.rejects[0].reason


def _assert_accounted(out: Decoded, n: int, n_features: int = len(COLS)) -> None:
    """Each input position is decoded or rejected exactly once, and the arrays agree."""
    seen = out.index.tolist() + [r.index for r in out.rejects]
    assert sorted(seen) == list(range(n))
    assert np.all(np.diff(out.index) > 0)
    assert [r.index for r in out.rejects] == sorted(r.index for r in out.rejects)
    m = len(out.index)
    assert out.stream.shape == (m,) and out.timestamp.shape == (m,)
    assert out.values.shape == (m, n_features) and out.values.dtype == np.float64
    assert np.isfinite(out.timestamp).all() and not np.isinf(out.values).any()
    for r in out.rejects:
        assert r.reason in REJECT_REASONS
        assert len(r.detail) <= 200 and r.detail.isascii()


# --- round trips -------------------------------------------------------------------------------


def test_json_round_trip_keeps_values_and_nan() -> None:
    rows = [[1.0, 2.5, math.nan], [-3.25, 3e38, 0.0]]
    values = [encode_json("pump-7", NOW - 10 + i, r) for i, r in enumerate(rows)]
    out = decode_batch([None, b"pump-7"], values, "json", COLS, now=NOW)
    _assert_accounted(out, 2)
    assert out.stream.tolist() == ["pump-7", "pump-7"]
    assert out.timestamp.tolist() == [NOW - 10, NOW - 9]
    np.testing.assert_array_equal(out.values, np.array(rows))
    assert b"null" in values[0]


def test_binary_round_trip_at_float32_precision() -> None:
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(5, 3)) * 1e3
    rows[2, 1] = np.nan  # a binary NaN is a missing reading, kept
    values = [encode_binary(NOW - 0.5 * i, r) for i, r in enumerate(rows)]
    out = decode_batch([b"cam-%d" % i for i in range(5)], values, "binary", COLS, now=NOW)
    _assert_accounted(out, 5)
    assert out.stream.tolist() == [f"cam-{i}" for i in range(5)]
    assert out.timestamp.tolist() == [NOW - 0.5 * i for i in range(5)]
    np.testing.assert_array_equal(out.values, rows.astype(np.float32).astype(np.float64))
    assert np.isnan(out.values[2, 1])


def test_binary_layout_is_magic_float64_float32s() -> None:
    raw = encode_binary(1.5, [1.0, 2.0])
    assert raw == MAGIC + struct.pack("<d", 1.5) + struct.pack("<2f", 1.0, 2.0)


def test_named_fields_in_column_order_extra_ignored() -> None:
    body = {"ts": NOW, "flow": None, "pressure": 2, "temperature": 1.5, "colour": "red"}
    out = _one("json", b"pump-1", _json(body))
    assert out.values.shape == (1, 3)
    np.testing.assert_array_equal(out.values[0], [1.5, 2.0, np.nan])


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2026-01-01T00:00:00Z", NOW),
        ("2026-01-01T00:00:00", NOW),  # naive = UTC
        ("2026-01-01T01:00:00+01:00", NOW),
        ("1767225600.5", NOW + 0.5),
        (1767225600, NOW),
    ],
)
def test_json_timestamp_forms(ts: object, expected: float) -> None:
    out = _one("json", None, _json({"stream": "s", "ts": ts, "values": [1, 2, 3]}))
    assert out.timestamp.tolist() == [expected]


# --- stream rules ------------------------------------------------------------------------------


def test_stream_from_key_body_or_both() -> None:
    body = {"ts": NOW, "values": [1, 2, 3]}
    keys = [b"k", None, b"same", b""]
    values = [_json(body), _json({**body, "stream": "b"}), _json({**body, "stream": "same"})]
    values.append(_json({**body, "stream": "b2"}))  # an empty key is no key
    out = decode_batch(keys, values, "json", COLS, now=NOW)
    assert out.stream.tolist() == ["k", "b", "same", "b2"]


def test_stream_mismatch_and_missing() -> None:
    body = {"ts": NOW, "values": [1, 2, 3]}
    assert _reason("json", b"key", _json({**body, "stream": "body"})) == "stream_mismatch"
    assert _reason("json", None, _json(body)) == "missing_stream"
    assert _reason("json", None, _json({**body, "stream": None})) == "missing_stream"


# --- every reject reason -----------------------------------------------------------------------

_GOOD = {"stream": "s", "ts": NOW, "values": [1.0, 2.0, 3.0]}
_BIN = encode_binary(NOW, [1.0, 2.0, 3.0])
REJECT_CASES = [
    ("empty", "json", b"s", None),
    ("empty", "binary", b"s", b""),
    ("too_large", "json", b"s", b" " * 2000 + _json(_GOOD)),
    ("unparsable", "json", None, b"{not json"),
    ("unparsable", "json", None, b"[1, 2, 3]"),
    ("unparsable", "binary", b"s", b"XXXX" + _BIN[4:]),
    ("missing_stream", "binary", None, _BIN),
    ("stream_mismatch", "json", b"other", _json(_GOOD)),
    ("bad_stream", "json", None, _json({**_GOOD, "stream": ""})),
    ("bad_stream", "json", None, _json({**_GOOD, "stream": 7})),
    ("bad_stream", "json", None, _json({**_GOOD, "stream": "x" * 257})),
    ("bad_stream", "binary", b"\xff\xfe", _BIN),
    ("missing_field", "json", None, _json({"stream": "s", "values": [1, 2, 3]})),
    ("missing_field", "json", None, _json({"stream": "s", "ts": NOW, "temperature": 1})),
    ("bad_timestamp", "json", None, _json({**_GOOD, "ts": "yesterday"})),
    ("bad_timestamp", "json", None, _json({**_GOOD, "ts": True})),
    ("bad_timestamp", "json", None, _json({**_GOOD, "ts": "inf"})),
    ("bad_timestamp", "binary", b"s", encode_binary(math.nan, [1.0, 2.0, 3.0])),
    ("wrong_length", "json", None, _json({**_GOOD, "values": [1, 2]})),
    ("wrong_length", "binary", b"s", encode_binary(NOW, [1.0, 2.0])),
    ("non_numeric", "json", None, _json({**_GOOD, "values": [1, "2", 3]})),
    ("non_numeric", "json", None, _json({**_GOOD, "values": [1, False, 3]})),
    ("non_numeric", "json", None, _json({**_GOOD, "values": "1,2,3"})),
    ("non_finite", "binary", b"s", encode_binary(NOW, [1.0, -math.inf, 3.0])),
    ("non_finite", "json", None, _json({**_GOOD, "values": [1.0, 1e300, 3.0]})),
    ("unparsable", "json", None, b'{"stream": "s", "ts": 1, "values": [1, 2, 1e999]}'),  # orjson
    ("future_timestamp", "json", None, _json({**_GOOD, "ts": NOW + 86_401})),
    ("future_timestamp", "binary", b"s", encode_binary(NOW + 86_401, [1.0, 2.0, 3.0])),
]


@pytest.mark.parametrize(("reason", "fmt", "key", "value"), REJECT_CASES)
def test_each_reject_reason(reason: str, fmt: str, key: bytes | None, value: bytes) -> None:
    assert _reason(fmt, key, value, max_bytes=1000) == reason


def test_reject_cases_cover_every_reason() -> None:
    assert {case[0] for case in REJECT_CASES} == set(REJECT_REASONS)


def test_future_limit_is_inclusive() -> None:
    out = _one("json", None, _json({**_GOOD, "ts": NOW + 86_400}))
    assert len(out) == 1


def test_too_large_is_not_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = orjson.loads
    monkeypatch.setattr(codec.orjson, "loads", lambda b: calls.append(len(b)) or real(b))
    small, big = _json(_GOOD), _json({**_GOOD, "pad": "x" * 200})
    out = decode_batch([None, None], [small, big], "json", COLS, now=NOW, max_bytes=100)
    assert [r.reason for r in out.rejects] == ["too_large"]
    assert calls == [len(small)]


def test_binary_mixed_batch_in_bulk() -> None:
    good = [encode_binary(NOW - i, [i, i + 0.5, math.nan]) for i in range(3)]
    keys = [b"a", b"b", b"c", None, b"e", b"f"]
    values = [good[0], encode_binary(NOW, [1.0]), b"JUNK" + good[1][4:], good[1], good[2], b"DT"]
    out = decode_batch(keys, values, "binary", COLS, now=NOW)
    _assert_accounted(out, 6)
    assert out.index.tolist() == [0, 4]
    assert out.stream.tolist() == ["a", "e"]
    reasons = [(r.index, r.reason) for r in out.rejects]
    assert reasons == [
        (1, "wrong_length"),
        (2, "unparsable"),
        (3, "missing_stream"),
        (5, "unparsable"),
    ]
    np.testing.assert_array_equal(out.values, [[0, 0.5, np.nan], [2, 2.5, np.nan]])


def test_rejects_and_good_records_interleave_in_order() -> None:
    values = [_json(_GOOD), b"", _json({**_GOOD, "ts": "x"}), _json(_GOOD), b"[]"]
    out = decode_batch([None] * 5, values, "json", COLS, now=NOW)
    _assert_accounted(out, 5)
    assert out.index.tolist() == [0, 3]


def test_empty_batch_has_right_shapes() -> None:
    for fmt in FORMATS:
        out = decode_batch([], [], fmt, COLS, now=NOW)
        assert out.values.shape == (0, 3) and out.rejects == []


def test_config_errors_raise() -> None:
    with pytest.raises(ValueError, match="unknown wire format"):
        decode_batch([None], [b"{}"], "avro", COLS, now=NOW)
    with pytest.raises(ValueError):
        decode_batch([None], [], "json", COLS, now=NOW)
    with pytest.raises(ValueError):
        encode_json("s", NOW, [math.inf])


def test_detail_never_dumps_the_payload() -> None:
    secret = "s3cret-" * 100
    out = _one("json", None, _json({**_GOOD, "ts": secret}))
    assert out.rejects[0].reason == "bad_timestamp"
    assert "s3cret" not in out.rejects[0].detail


# --- properties --------------------------------------------------------------------------------

_keys = st.one_of(st.none(), st.binary(max_size=8), st.sampled_from([b"s", b"pump-7"]))
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
_jsonish = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["stream", "ts", "values", *COLS, "x"]), inner, max_size=6
        )
    ),
    max_leaves=12,
)
_records = st.one_of(
    _jsonish.map(orjson.dumps),
    st.fixed_dictionaries(
        {"ts": st.one_of(st.floats(0, 2e9), st.sampled_from(["2026-01-01T00:00:00Z", "x"]))},
        optional={"stream": st.sampled_from(["s", "pump-7", ""]), "values": _jsonish},
    ).map(orjson.dumps),
    st.binary(max_size=60),
    st.builds(
        lambda ts, v: encode_binary(ts, v),
        st.floats(width=64),
        st.lists(st.floats(width=32), min_size=2, max_size=4),
    ),
)


@FAST
@given(st.lists(st.tuples(_keys, _records), max_size=20), st.sampled_from(FORMATS))
def test_arbitrary_input_never_raises_and_is_accounted(records, fmt) -> None:
    keys = [k for k, _ in records]
    values = [v for _, v in records]
    out = decode_batch(keys, values, fmt, COLS, now=NOW, max_bytes=50)
    _assert_accounted(out, len(records))


_finite = st.floats(-1e30, 1e30, allow_nan=False)
_rows = st.lists(st.lists(_finite | st.just(math.nan), min_size=3, max_size=3), max_size=10)


@FAST
@given(_rows, st.floats(0, NOW))
def test_json_round_trip_property(rows, ts) -> None:
    out = decode_batch(
        [b"s"] * len(rows), [encode_json("s", ts, r) for r in rows], "json", COLS, now=NOW
    )
    assert not out.rejects
    np.testing.assert_array_equal(out.values, np.array(rows).reshape(-1, 3))
    assert (out.timestamp == ts).all()


@FAST
@given(_rows, st.floats(-1e9, NOW))
def test_binary_round_trip_property(rows, ts) -> None:
    out = decode_batch(
        [b"s"] * len(rows), [encode_binary(ts, r) for r in rows], "binary", COLS, now=NOW
    )
    assert not out.rejects
    expected = np.array(rows, dtype=np.float32).astype(np.float64).reshape(-1, 3)
    np.testing.assert_array_equal(out.values, expected)
    assert (out.timestamp == ts).all()


def test_binary_batch_is_read_by_one_frombuffer(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = np.frombuffer
    monkeypatch.setattr(codec.np, "frombuffer", lambda *a, **k: calls.append(1) or real(*a, **k))
    values = [encode_binary(NOW, [1.0, 2.0, 3.0])] * 50
    out = decode_batch([b"s"] * 50, values, "binary", COLS, now=NOW)
    assert len(out) == 50 and calls == [1]


_row3 = st.lists(_finite | st.just(math.nan), min_size=3, max_size=3)


@FAST
@given(_row3, st.floats(0, NOW), st.sampled_from(FORMATS), st.data())
def test_truncated_or_extended_records_are_rejected_not_misread(row, ts, fmt, data) -> None:
    whole = encode_json("s", ts, row) if fmt == "json" else encode_binary(ts, row)
    cut = data.draw(st.integers(0, len(whole) - 1))
    tail = data.draw(st.binary(min_size=1, max_size=12).filter(bytes.strip))  # JSON allows spaces
    for value in (whole[:cut], whole + tail):
        out = decode_batch([b"s"], [value], fmt, COLS, now=NOW)
        assert len(out) == 0, value
        assert out.rejects[0].reason in {"empty", "unparsable", "wrong_length"}


@FAST
@given(
    _row3,
    st.dictionaries(
        st.text(max_size=10).filter(lambda k: k not in {"stream", "ts", "values"}),
        _jsonish,
        max_size=5,
    ),
)
def test_unknown_fields_are_ignored(row, extra) -> None:
    plain = {"stream": "s", "ts": NOW, "values": row}
    a = decode_batch([None], [_json(plain)], "json", COLS, now=NOW)
    b = decode_batch([None], [_json({**extra, **plain})], "json", COLS, now=NOW)
    assert len(a) == len(b) == 1
    np.testing.assert_array_equal(a.values, b.values)
