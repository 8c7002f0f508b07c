"""Fuzz the state topic's chunk reassembly: any records give snapshots or warnings, never an
exception, and never more bytes than the bound.

    .venv/bin/python tests/fuzz/fuzz_state_chunks.py -runs=100000 -seed=1
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import atheris
from _harness import main  # beside this file: harnesses run as scripts

with atheris.instrument_imports(include=["detector"]):
    from detector.kafka_io import PartitionState, assemble

WANTED = {"t/0", "t/1"}
LIMIT = 4096


@dataclass
class Record:
    key: bytes | None
    value: bytes | None
    headers: list


def _text(fdp: atheris.FuzzedDataProvider, choices: tuple[bytes, ...]) -> bytes:
    pick = fdp.ConsumeIntInRange(0, len(choices))
    return choices[pick] if pick < len(choices) else fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 8))


def _record(fdp: atheris.FuzzedDataProvider) -> Record:
    key = (
        _text(fdp, (b"t/0#0", b"t/0#1", b"t/0#b0", b"t/1#0", b"t/1#b1", b"x/9#0"))
        if fdp.ConsumeIntInRange(0, 7)
        else None
    )
    headers = []
    for name in ("gen", "part", "parts", "offset"):
        if fdp.ConsumeIntInRange(0, 7):
            headers.append((name, _text(fdp, (b"g1", b"g2", b"0", b"1", b"2", b"-1", b"99"))))
    if fdp.ConsumeBool():
        value = zlib.compress(
            fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64)) * fdp.ConsumeIntInRange(1, 200)
        )
        cut = fdp.ConsumeIntInRange(0, len(value))
        value = value[:cut] if fdp.ConsumeBool() else value
    else:
        value = (
            fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 32)) if fdp.ConsumeIntInRange(0, 7) else None
        )
    return Record(key, value, headers)


def test_one(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    records = [_record(fdp) for _ in range(fdp.ConsumeIntInRange(0, 8))]
    out = assemble(records, WANTED, max_bytes=LIMIT)
    assert set(out) <= WANTED
    for state in out.values():
        assert isinstance(state, PartitionState) and len(state.data) <= LIMIT and state.offset >= 0


if __name__ == "__main__":
    main(test_one, [b"\x01" * 40, bytes(range(200))])
