"""Fuzz checkpoint loading: any file loads as a checkpoint or raises ``CheckpointError``, and a
pickle inside is never run.

    .venv/bin/python tests/fuzz/fuzz_checkpoint.py -runs=2000 -seed=1

Seeds are a real checkpoint and a pickle that would create a marker file; libFuzzer mutates
their bytes (a torch checkpoint is a zip, and torch does not check its CRCs).
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
from pathlib import Path

import atheris
import torch
from _harness import main, tiny_checkpoint  # beside this file: harnesses run as scripts

with atheris.instrument_imports(include=["detector"]):
    from detector.checkpoint import load_checkpoint, save_checkpoint
    from detector.engine import Engine, EngineConfig
    from detector.errors import CheckpointError

WORK = Path(tempfile.mkdtemp(prefix="fuzz-checkpoint-"))
MARKER = WORK / "pwned"
PATH = WORK / "model.pt"


class Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


def test_one(data: bytes) -> None:
    PATH.write_bytes(data)
    try:
        ckpt = load_checkpoint(PATH)
    except CheckpointError as exc:
        assert "\n" not in str(exc) and str(PATH) in str(exc)
    else:  # what loads, serves
        engine = Engine(ckpt, EngineConfig(device="cpu"))
        n = len(ckpt.inputs)
        for k in range(ckpt.train_config["timesteps"] + 2):
            engine.process(["s"], [1e9 + k], [[0.5 * k] * n])
    assert not MARKER.exists(), "a pickle in the checkpoint was executed"


def _seeds() -> list[bytes]:
    good = WORK / "good.pt"
    save_checkpoint(good, tiny_checkpoint())
    evil = io.BytesIO()
    torch.save({"format": "detector-checkpoint", "x": Exploit()}, evil)
    return [good.read_bytes(), evil.getvalue(), pickle.dumps(Exploit())]


if __name__ == "__main__":
    main(test_one, _seeds())
