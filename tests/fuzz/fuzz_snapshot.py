"""Fuzz state-snapshot restore: any bytes restore cleanly or raise ``DataError``, never
anything else, never a half-restored engine, never NaN or infinity in the state.

    .venv/bin/python tests/fuzz/fuzz_snapshot.py -runs=20000 -seed=1

Raw bytes rarely get past the zip CRC, so the first byte picks a mode: raw bytes, or an
``.npz`` built from the input, key by key, with shapes, dtypes and values taken from it (the
structure a damaged or hostile writer could produce).
"""

from __future__ import annotations

import io

import atheris
import numpy as np
import torch
from _harness import main, tiny_checkpoint  # beside this file: harnesses run as scripts

with atheris.instrument_imports(include=["detector"]):
    from detector.engine import Engine, EngineConfig
    from detector.errors import DataError

KEYS = (
    "window pos seen offset scale forecast last_ts last_used fit_scaler unit_offset unit_scale "
    "units_fixed h c names version shape "
    "extra_scorer_mean extra_scorer_var extra_scorer_count extra_alerts_above extra_alerts_below "
    "extra_alerts_cooldown extra_alerts_run_start extra_alerts_active extra_alerts_alert_start "
    "extra_alerts_last_score"
).split()
DTYPES = (np.float64, np.float32, np.int64, np.int8, np.bool_, np.uint64, "U3")
CKPT = tiny_checkpoint()


def _engine() -> Engine:
    return Engine(CKPT, EngineConfig(device="cpu", capacity=1, max_streams=64))


def _good() -> dict[str, np.ndarray]:
    engine = _engine()
    for k in range(6):
        engine.process(["x", "y"], [1e9 + k] * 2, [[k, 1.0, 2.0], [1.0, k, 0.5]])
    with np.load(io.BytesIO(engine.snapshot_bytes())) as npz:
        return {k: npz[k] for k in npz.files}


GOOD = _good()


def _array(fdp: atheris.FuzzedDataProvider, like: np.ndarray) -> np.ndarray:
    # Input that runs out reads as zeros: the defaults below then build the good snapshot.
    if fdp.ConsumeIntInRange(0, 3) != 3:  # the right array, perhaps with one value changed
        a = like.copy()
        if a.size and a.dtype.kind == "f":
            a.flat[fdp.ConsumeIntInRange(0, a.size - 1)] = fdp.ConsumeRegularFloat()
        elif a.size and a.dtype.kind in "iu":
            a.flat[fdp.ConsumeIntInRange(0, a.size - 1)] = fdp.ConsumeIntInRange(-3, 70)
        return a
    shape = tuple(fdp.ConsumeIntInRange(0, 4) for _ in range(fdp.ConsumeIntInRange(0, 3)))
    dtype = np.dtype(DTYPES[fdp.ConsumeIntInRange(0, len(DTYPES) - 1)])
    n = int(np.prod(shape))
    if dtype.kind == "U":
        return np.array([fdp.ConsumeUnicodeNoSurrogates(3) for _ in range(n)], dtype).reshape(shape)
    raw = fdp.ConsumeBytes(n * dtype.itemsize).ljust(n * dtype.itemsize, b"\0")
    return np.frombuffer(raw, dtype).reshape(shape).copy()


def _blob(fdp: atheris.FuzzedDataProvider) -> bytes:
    if fdp.ConsumeIntInRange(0, 3) == 3:
        return fdp.ConsumeBytes(atheris.ALL_REMAINING)
    arrays = {k: _array(fdp, GOOD[k]) for k in KEYS if fdp.ConsumeIntInRange(0, 15) != 15}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_one(data: bytes) -> None:
    blob = _blob(atheris.FuzzedDataProvider(data))
    engine = _engine()
    try:
        names = engine.restore(io.BytesIO(blob))
    except DataError as exc:
        assert "\n" not in str(exc)
        assert len(engine.state) == 0, "a refused snapshot left streams behind"
        return
    st = engine.state
    assert sorted(names) == sorted(st.slot_of)
    for k in ("window", "offset", "scale", "forecast", "unit_offset", "unit_scale"):
        assert np.isfinite(getattr(st, k)).all(), k
    assert (st.unit_scale > 0).all(), "a restored stream divides its errors by zero"
    assert torch.isfinite(st.h).all() and torch.isfinite(st.c).all()
    # a restored engine keeps working
    engine.process(names[:1], [2e9], [[1.0, 2.0, 3.0]])


if __name__ == "__main__":
    main(test_one, [b"\x01" * 64, b"\x00" * 64, bytes(range(256))])
