"""Fuzz both wire decoders: any keys and values decode or reject, each exactly once.

    .venv/bin/python tests/fuzz/fuzz_codec.py -runs=200000 -seed=1

The first input byte picks the format and the batch layout; the rest is split into records.
"""

from __future__ import annotations

import math

import atheris
import numpy as np
from _harness import main  # beside this file: harnesses run as scripts

with atheris.instrument_imports(include=["detector"]):
    from detector.codec import REJECT_REASONS, decode_batch, encode_binary, encode_json

COLS = ("a", "b", "c")
NOW = 1_767_225_600.0
F32_MAX = float(np.finfo(np.float32).max)


def check(keys: list, values: list, fmt: str, max_bytes: int) -> None:
    out = decode_batch(keys, values, fmt, COLS, now=NOW, max_bytes=max_bytes)
    seen = out.index.tolist() + [r.index for r in out.rejects]
    assert sorted(seen) == list(range(len(values))), "each record decoded or rejected once"
    assert out.values.shape == (len(out.index), len(COLS))
    assert np.isfinite(out.timestamp).all() and (out.timestamp <= NOW + 86_400).all()
    assert not (np.abs(out.values) > F32_MAX).any(), "no value the windows cannot hold"
    assert all(isinstance(s, str) and 0 < len(s) <= 256 for s in out.stream)
    for r in out.rejects:
        assert r.reason in REJECT_REASONS and r.detail.isascii() and len(r.detail) <= 200


def test_one(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    fmt = "binary" if fdp.ConsumeBool() else "json"
    max_bytes = fdp.ConsumeIntInRange(1, 200)
    keys, values = [], []
    for _ in range(fdp.ConsumeIntInRange(0, 6)):
        key = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 6)) if fdp.ConsumeBool() else None
        keys.append(key or None if fdp.ConsumeBool() else key)
        values.append(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 120)))
    check(keys, values, fmt, max_bytes)


SEEDS = [
    b"\x00\x80\x01\x01s\x01" + encode_json("s", NOW, [1.0, math.nan, 2.5]),
    b"\x00\x80\x01\x00" + b'{"stream":"p","ts":"2026-01-01T00:00:00Z","a":1,"b":2,"c":null}',
    b"\x01\x80\x01\x01k\x01" + encode_binary(NOW, [1.0, 2.0, math.nan]),
    b"\x01\x80\x01\x01k\x01" + encode_binary(NOW, [1.0, math.inf, 3e38]),
]

if __name__ == "__main__":
    main(test_one, SEEDS)
