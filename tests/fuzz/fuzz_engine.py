"""Fuzz the engine with batches built from the input: every reading gets a defined status and no
NaN or infinity reaches any stream's state.

    .venv/bin/python tests/fuzz/fuzz_engine.py -runs=5000 -seed=1

Values and timestamps come as raw float64 bits, so NaN, infinities, subnormals and 1e308 all
occur; streams come from a small set, so duplicates, reversals and evictions (cap 4) occur too.
"""

from __future__ import annotations

import atheris
import numpy as np
import torch
from _harness import main, tiny_checkpoint  # beside this file: harnesses run as scripts

with atheris.instrument_imports(include=["detector"]):
    from detector.engine import STATUS, Engine, EngineConfig
    from detector.scoring import ScorerConfig

CKPT = tiny_checkpoint()
NAMES = ("a", "b", "c", "d", "e")
BASE = 1.7e9


def _float(fdp: atheris.FuzzedDataProvider, near: float) -> float:
    pick = fdp.ConsumeIntInRange(0, 3)
    if pick == 0:
        return near + fdp.ConsumeIntInRange(0, 20)
    raw = fdp.ConsumeBytes(8).ljust(8, b"\0")
    return float(np.frombuffer(raw, "<f8")[0]) if pick == 1 else fdp.ConsumeRegularFloat()


def test_one(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    scorer = ScorerConfig(
        kind=("gaussian", "likelihood")[fdp.ConsumeIntInRange(0, 1)],
        warmup=1,
        repeats=fdp.ConsumeBool(),
    )
    engine = Engine(
        CKPT,
        EngineConfig(
            scorer=scorer,
            device="cpu",
            capacity=1,
            max_streams=4 + fdp.ConsumeIntInRange(0, 1),  # 4: a batch of 5 names must raise
            gap_s=(None, 5.0)[fdp.ConsumeIntInRange(0, 1)],
            idle_s=(None, 30.0)[fdp.ConsumeIntInRange(0, 1)],
        ),
    )
    for _ in range(fdp.ConsumeIntInRange(1, 5)):
        n = fdp.ConsumeIntInRange(0, 12)
        streams = [NAMES[fdp.ConsumeIntInRange(0, 4)] for _ in range(n)]
        ts = np.array([_float(fdp, BASE) for _ in range(n)])
        x = np.array([[_float(fdp, 0.0) for _ in range(3)] for _ in range(n)]).reshape(n, 3)
        if len(set(streams)) > engine.config.max_streams:
            continue  # a batch wider than the cap raises DataError by design (config forbids it)
        res = engine.process(streams, ts, x)
        assert ((res.status == STATUS.index("bad_timestamp")) == ~np.isfinite(ts)).all()
        assert np.isfinite(res.score).all() and (res.score >= 0).all() and (res.score <= 1).all()
        assert not np.isinf(res.error).any() and not np.isinf(res.forecast).any()
        st = engine.state
        for k in ("window", "offset", "scale", "forecast"):
            assert np.isfinite(getattr(st, k)).all(), k
        assert torch.isfinite(st.h).all() and torch.isfinite(st.c).all(), "h/c"
        for k, v in engine.scorer.slabs.items():
            assert np.isfinite(v).all(), k


if __name__ == "__main__":
    main(test_one, [b"\x00" * 64, b"\x01" * 200, bytes(range(256)) * 2])
