"""Wire formats of sensor readings on Kafka: bytes in, arrays out.

Two formats, one per topic:

``json``
    One object per record: ``{"stream": "pump-7", "ts": 1767225600.5, "values": [1.0, null]}``,
    or named fields ``{"stream": ..., "ts": ..., "temperature": 1.0, ...}`` holding every model
    column (extra fields are ignored). ``ts`` is epoch seconds or ISO-8601 (naive = UTC); ``null``
    is a missing reading (NaN). ``stream`` may be left out when the Kafka key (UTF-8) carries it.
``binary``
    For wide feature vectors: the Kafka key is the stream id; the value is :data:`MAGIC`, a
    little-endian float64 timestamp (epoch s), then ``n_features`` little-endian float32 values
    (NaN = missing reading).

Either format: a value that is infinite or beyond float32 range is rejected (``non_finite``).

:func:`decode_batch` never raises on bad input: each record comes back either decoded or as a
:class:`Reject` carrying one of :data:`REJECT_REASONS` and a short ASCII detail.

Example
-------
>>> batch = decode_batch([b"pump-7"], [encode_json("pump-7", 1767225600.0, [1.0, float("nan")])],
...                      "json", ("temperature", "pressure"), now=1767225600.0)
>>> batch.stream.tolist(), batch.values.tolist()
(['pump-7'], [[1.0, nan]])
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import orjson

from detector.csvio import _parse_timestamp
from detector.errors import ConfigError

__all__ = [
    "FORMATS",
    "MAGIC",
    "REJECT_REASONS",
    "Decoded",
    "Reject",
    "decode_batch",
    "encode_binary",
    "encode_json",
]

FORMATS = ("json", "binary")
MAGIC = b"DTB1"
# Fixed and ordered so that metrics can create every label up front.
REJECT_REASONS = (
    "empty",
    "too_large",
    "unparsable",
    "missing_stream",
    "stream_mismatch",
    "bad_stream",
    "missing_field",
    "bad_timestamp",
    "wrong_length",
    "non_numeric",
    "non_finite",
    "future_timestamp",
)
MAX_BYTES = 1 << 20
MAX_FUTURE_S = 86_400.0
MAX_STREAM_CHARS = 256
MAX_DETAIL_CHARS = 200

# Windows keep readings as float32: a larger JSON number would become infinite there.
_F32_MAX = float(np.finfo(np.float32).max)
_BINARY_HEAD = struct.Struct("<4sd")
_JSON_NUMBER = frozenset({int, float, type(None)})


@dataclass(frozen=True)
class Reject:
    """Record ``index`` of the batch was dropped for ``reason``; ``detail`` is ASCII, bounded."""

    index: int
    reason: str
    detail: str


@dataclass(frozen=True, eq=False)
class Decoded:
    """The good records of a batch as arrays, plus the rejected ones.

    Attributes
    ----------
    index : (M,) int64 positions of the good records in the input, increasing.
    stream : (M,) object array of str.
    timestamp : (M,) float64 epoch seconds.
    values : (M, F) float64, NaN = missing reading.
    rejects : one :class:`Reject` per bad record, by increasing index.
    """

    index: np.ndarray
    stream: np.ndarray
    timestamp: np.ndarray
    values: np.ndarray
    rejects: list[Reject]

    def __len__(self) -> int:
        return len(self.index)


class _Bad(Exception):
    """Internal: one record is rejected; caught per record, never leaves the module."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


def _reject(index: int, bad: _Bad) -> Reject:
    # The detail travels in Kafka headers and log lines: ASCII only and bounded.
    detail = bad.detail.encode("ascii", "backslashreplace").decode("ascii")
    return Reject(index, bad.reason, detail[:MAX_DETAIL_CHARS])


def _describe(x: object) -> str:
    """A short description of a payload piece: a clipped repr of scalars, else the type name."""
    if isinstance(x, str):
        return ascii(x) if len(x) <= 40 else f"a {len(x)}-char string"
    if isinstance(x, int | float):  # bool included
        return repr(x)[:40]
    return "null" if x is None else type(x).__name__


def _check_size(value: bytes | None, max_bytes: int) -> None:
    if not value:
        raise _Bad("empty", "no value")
    if len(value) > max_bytes:
        raise _Bad("too_large", f"{len(value)} bytes > max {max_bytes}")


def _check_stream(stream: object, where: str) -> str:
    if not isinstance(stream, str) or not stream or len(stream) > MAX_STREAM_CHARS:
        raise _Bad(
            "bad_stream",
            f"{where} stream must be a non-empty string of <= {MAX_STREAM_CHARS} chars, "
            f"got {_describe(stream)}",
        )
    return stream


# A poll holds few distinct keys, so validating each once matters; failures are not cached.
@functools.lru_cache(maxsize=4096)
def _key_stream(key: bytes | None) -> str | None:
    """The stream named by a Kafka key; ``None`` for no key (an empty key is no key)."""
    if not key:
        return None
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        raise _Bad("bad_stream", f"key of {len(key)} bytes is not UTF-8") from None
    return _check_stream(text, "key")


def _body_stream(from_key: str | None, body: object) -> str:
    if from_key is not None and (body is None or body == from_key):
        return from_key  # the common case, and the key is already checked
    if body is None:
        raise _Bad("missing_stream", "no stream in the body and no Kafka key")
    stream = _check_stream(body, "body")
    if from_key is not None:
        raise _Bad(
            "stream_mismatch", f"body stream {_describe(stream)} != key {_describe(from_key)}"
        )
    return stream


def _timestamp(raw: object) -> float:
    # bool is an int subclass, but `true` as a time is a producer bug, not 1970-01-01T00:00:01.
    if type(raw) is bool or not isinstance(raw, int | float | str):
        raise _Bad("bad_timestamp", f"ts must be epoch seconds or ISO-8601, got {_describe(raw)}")
    try:
        ts = _parse_timestamp(raw) if isinstance(raw, str) else float(raw)
    except (ValueError, OverflowError):
        raise _Bad("bad_timestamp", f"cannot read ts {_describe(raw)}") from None
    if not math.isfinite(ts):
        raise _Bad("bad_timestamp", f"ts {_describe(raw)} is not finite")
    return ts


def _json_row(obj: dict, columns: tuple[str, ...]) -> list:
    if "values" in obj:
        row = obj["values"]
        if row is None:
            raise _Bad("missing_field", "values is null")
        if not isinstance(row, list):
            raise _Bad("non_numeric", f"values must be a list, got {_describe(row)}")
        if len(row) != len(columns):
            raise _Bad("wrong_length", f"{len(row)} values, model has {len(columns)}")
    else:
        try:
            row = [obj[c] for c in columns]
        except KeyError as exc:  # column names come from config, so safe to echo
            raise _Bad("missing_field", f"no values list and no field {exc.args[0]!r}") from None
    # map/set run in C; a per-element isinstance loop would dominate decoding of wide rows.
    if not _JSON_NUMBER.issuperset(map(type, row)):
        j = next(j for j, v in enumerate(row) if type(v) not in _JSON_NUMBER)
        raise _Bad("non_numeric", f"{columns[j]!r} is {_describe(row[j])}, not a number or null")
    return row


def _json_record(key: bytes | None, value: bytes) -> tuple[str, float, dict]:
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise _Bad("unparsable", f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise _Bad("unparsable", f"expected a JSON object, got {type(obj).__name__}")
    stream = _body_stream(_key_stream(key), obj.get("stream"))
    ts = obj.get("ts")
    if type(ts) is not float or not math.isfinite(ts):  # fast path for the usual float
        if ts is None:
            raise _Bad("missing_field", "no ts")
        ts = _timestamp(ts)
    return stream, ts, obj


def _decode_json(keys, values, columns, max_bytes, rejects):
    index, streams, stamps, rows = [], [], [], []
    for i, (key, value) in enumerate(zip(keys, values, strict=True)):
        try:
            _check_size(value, max_bytes)
            stream, ts, obj = _json_record(key, value)
            row = _json_row(obj, columns)
        except _Bad as bad:
            rejects.append(_reject(i, bad))
            continue
        index.append(i)
        streams.append(stream)
        stamps.append(ts)
        rows.append(row)
    # One conversion for the whole poll; None becomes NaN here.
    matrix = np.array(rows, dtype=np.float64).reshape(len(rows), len(columns))
    return index, streams, np.array(stamps, dtype=np.float64), matrix


def _binary_dtype(n_features: int) -> np.dtype:
    return np.dtype([("magic", "S4"), ("ts", "<f8"), ("values", "<f4", (n_features,))])


def _bad_binary(value: bytes, size: int) -> None:
    """Raise the reason a value is not ``size`` bytes starting with the magic."""
    head = _BINARY_HEAD.size
    if not value.startswith(MAGIC):
        raise _Bad("unparsable", f"no {MAGIC.decode()} magic")
    if len(value) < head or (len(value) - head) % 4:
        raise _Bad("unparsable", f"{len(value)} bytes is not magic + ts + float32s")
    n = (len(value) - head) // 4
    raise _Bad("wrong_length", f"{n} values, model has {(size - head) // 4}")


def _decode_binary(keys, values, columns, max_bytes, rejects):
    dtype = _binary_dtype(len(columns))
    index, streams, chunks = [], [], []
    for i, (key, value) in enumerate(zip(keys, values, strict=True)):
        try:
            _check_size(value, max_bytes)
            if len(value) != dtype.itemsize or not value.startswith(MAGIC):
                _bad_binary(value, dtype.itemsize)
            stream = _key_stream(key)
            if stream is None:
                raise _Bad("missing_stream", "binary records need the stream id as Kafka key")
        except _Bad as bad:
            rejects.append(_reject(i, bad))
            continue
        index.append(i)
        streams.append(stream)
        chunks.append(value)
    # All well-formed records in one buffer, read by one structured frombuffer.
    records = np.frombuffer(b"".join(chunks), dtype=dtype)
    return index, streams, records["ts"].astype(np.float64), records["values"].astype(np.float64)


def _screen(index, streams, stamps, matrix, now, max_future_s, rejects) -> Decoded:
    """Checks shared by both formats, done on whole arrays; returns the surviving records."""
    checks = (  # in order of precedence: a record is rejected once, for its first failure
        ("bad_timestamp", ~np.isfinite(stamps), lambda r: f"ts {stamps[r]} is not finite"),
        (
            "non_finite",
            (np.abs(matrix) > _F32_MAX).any(axis=1),  # NaN compares False: it stays missing
            lambda r: "a value is infinite or beyond float32 range",
        ),
        (
            "future_timestamp",
            stamps > now + max_future_s,
            lambda r: f"{stamps[r] - now:.0f} s ahead",
        ),
    )
    keep = np.ones(len(index), dtype=bool)
    for reason, failed, detail in checks:
        for r in np.flatnonzero(failed & keep):
            rejects.append(_reject(index[r], _Bad(reason, detail(r))))
        keep &= ~failed
    stream = np.empty(len(streams), dtype=object)
    stream[:] = streams
    rejects.sort(key=lambda r: r.index)
    return Decoded(
        index=np.asarray(index, dtype=np.int64)[keep],
        stream=stream[keep],
        timestamp=stamps[keep],
        values=matrix[keep],
        rejects=rejects,
    )


def decode_batch(
    keys: Sequence[bytes | None],
    values: Sequence[bytes | None],
    fmt: str,
    columns: tuple[str, ...],
    now: float,
    max_bytes: int = MAX_BYTES,
    max_future_s: float = MAX_FUTURE_S,
) -> Decoded:
    """Decode one poll of Kafka records.

    Parameters
    ----------
    keys, values : the records' keys and values, same length.
    fmt : one of :data:`FORMATS`.
    columns : the model's input columns; ``len(columns)`` values per record.
    now : epoch seconds; a record stamped more than ``max_future_s`` after it is rejected.
    max_bytes : longer values are rejected unread.

    Returns
    -------
    Decoded
        Every input position appears exactly once, in ``index`` or in ``rejects``.

    Raises
    ------
    ConfigError
        ``fmt`` is unknown or ``columns`` is empty (a ``ValueError``); bad records never raise.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown wire format {fmt!r}; choose one of {FORMATS}")
    if not columns:
        raise ConfigError("the model needs at least one input column")
    if len(keys) != len(values):
        raise ValueError(f"{len(keys)} keys but {len(values)} values")
    rejects: list[Reject] = []
    decode = _decode_json if fmt == "json" else _decode_binary
    index, streams, stamps, matrix = decode(keys, values, tuple(columns), max_bytes, rejects)
    return _screen(index, streams, stamps, matrix, float(now), max_future_s, rejects)


def encode_json(stream: str, ts: float, values: Sequence[float]) -> bytes:
    """One ``json`` record ``{"stream", "ts", "values"}``; NaN is written as ``null``.

    Raises ``ValueError`` for a non-finite ``ts`` or an infinite value, which JSON cannot carry.
    """
    row = np.asarray(values, dtype=np.float64)
    if row.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {row.shape}")
    if not math.isfinite(ts) or np.isinf(row).any():
        raise ValueError("JSON records carry finite numbers only (NaN = missing)")
    # orjson writes NaN as null, which is exactly the wire's missing reading.
    return orjson.dumps({"stream": stream, "ts": float(ts), "values": row.tolist()})


def encode_binary(ts: float, values: np.ndarray | Sequence[float]) -> bytes:
    """One ``binary`` record value (the stream goes in the Kafka key); values become float32.

    No checks: an infinite value or one beyond float32 range encodes, and the decoder rejects it.
    """
    row = np.asarray(values, dtype="<f4")
    if row.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {row.shape}")
    return _BINARY_HEAD.pack(MAGIC, float(ts)) + row.tobytes()
