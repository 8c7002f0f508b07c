"""The wire decoders against the least a consumer must do with the same bytes.

Baselines: a bare ``orjson.loads`` per JSON record, and a bare ``numpy.frombuffer`` per binary
record. Neither validates anything; ``decode_batch`` also checks every field, rejects with a
reason and builds the arrays the engine takes, so ``ratio`` near 1 means validation is cheap.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import orjson

from detector.codec import _binary_dtype, decode_batch, encode_binary, encode_json

__all__ = ["bench_decode", "sample_records"]


def sample_records(fmt: str, n: int, features: int, streams: int = 1000, seed: int = 0):
    """``n`` encoded readings of ``streams`` streams: (keys, values, columns)."""
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((n, features))
    names = [f"sensor-{i % streams}" for i in range(n)]
    ts = 1.7e9 + np.arange(n, dtype=np.float64)
    if fmt == "json":
        enc = [encode_json(s, t, v.tolist()) for s, t, v in zip(names, ts, values, strict=True)]
    else:
        enc = [encode_binary(t, v) for t, v in zip(ts, values, strict=True)]
    columns = tuple(f"f{i}" for i in range(features))
    return [s.encode() for s in names], enc, columns


def _best_rate(fn: Callable[[], object], n: int, seconds: float) -> float:
    """Readings/s of the fastest of repeated runs (the least disturbed by neighbours)."""
    best, start = float("inf"), time.perf_counter()
    while best == float("inf") or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n / best


def bench_decode(
    fmt: str, features: int, n: int = 50_000, seconds: float = 2.0
) -> dict[str, object]:
    keys, values, columns = sample_records(fmt, n, features)
    now = 2e9
    if fmt == "json":

        def baseline() -> object:
            return [orjson.loads(v) for v in values]
    else:
        dtype = _binary_dtype(features)  # the wire layout, as the decoder reads it

        def baseline() -> object:
            return [np.frombuffer(v, dtype) for v in values]

    def ours() -> object:
        out = decode_batch(keys, values, fmt, columns, now=now)
        assert not out.rejects, out.rejects[:1]  # a benchmark of rejects would measure nothing
        return out

    ours_rate = _best_rate(ours, n, seconds)
    base_rate = _best_rate(baseline, n, seconds)
    return {
        "format": fmt,
        "features": features,
        "readings": n,
        "decode_per_s": ours_rate,
        "baseline_per_s": base_rate,
        "ratio": ours_rate / base_rate,
    }
