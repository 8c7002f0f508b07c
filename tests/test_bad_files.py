"""Damaged, truncated and foreign state snapshots and state-topic records: refused with one clear
line, never unpickled, and never half-applied."""

from __future__ import annotations

import io
import logging
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from detector.checkpoint import save_checkpoint
from detector.config import load_config
from detector.engine import Engine, EngineConfig
from detector.errors import DataError
from detector.kafka_io import PartitionState, StateStore, assemble
from detector.training import TrainConfig, train
from tests.conftest import sine_fleet

T = 4


@pytest.fixture(scope="module")
def ckpt():
    result = train(sine_fleet(n=200), TrainConfig(timesteps=T, hidden=8, epochs=1, device="cpu"))
    return result.to_checkpoint()


def _engine(ckpt) -> Engine:
    return Engine(ckpt, EngineConfig(device="cpu"))


def _good_snapshot(ckpt) -> bytes:
    engine = _engine(ckpt)
    for k in range(T + 3):
        engine.process(["a", "b"], [1e9 + k] * 2, [[k, 1.0], [1.0, k]])
    return engine.snapshot_bytes()


def _arrays(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob)) as npz:
        return {k: npz[k] for k in npz.files}


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _damaged(good: bytes, how: str, marker: Path) -> bytes:
    a = _arrays(good)
    if how == "truncated":
        return good[: len(good) // 2]
    if how == "garbage":
        return b"\x00not a snapshot" * 40
    if how == "empty":
        return b""
    if how == "foreign_zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("readme.txt", "hello")
        return buf.getvalue()
    if how == "pickle_object_array":
        a["names"] = np.array([_Exploit(marker), "b"], dtype=object)
    elif how == "pickle_extra":
        a["extra_evil"] = np.array([_Exploit(marker)], dtype=object)
    elif how == "rows_disagree":
        a["window"] = a["window"][:1]
    elif how == "nan_hidden_state":
        a["h"][0, 0, 0] = np.nan
    elif how == "zero_scale":
        a["scale"][0] = 0.0
    elif how == "duplicate_names":
        a["names"] = np.array(["a", "a"])
    elif how == "version_array":
        a["version"] = np.array([1, 1])
    elif how == "future_version":
        a["version"] = np.array(99)
    elif how == "text_slab":
        a["seen"] = np.array(["x", "y"])
    elif how == "scorer_extra_wrong_shape":
        a["extra_scorer_mean"] = a["extra_scorer_mean"][:, :1]
    elif how == "scorer_extra_missing":
        del a["extra_scorer_mean"]
    return _npz(a)


CASES = {
    "truncated": "not a readable state snapshot",
    "garbage": "not a readable state snapshot",
    "empty": "not a readable state snapshot",
    "foreign_zip": "not a state snapshot",
    "pickle_object_array": "not a readable state snapshot",
    "pickle_extra": "not a readable state snapshot",
    "rows_disagree": "damaged state snapshot",
    "nan_hidden_state": "damaged state snapshot",
    "zero_scale": "damaged state snapshot",
    "duplicate_names": "damaged state snapshot",
    "version_array": "snapshot version",
    "future_version": "snapshot version 99",
    "text_slab": "damaged state snapshot",
    "scorer_extra_wrong_shape": "snapshot lacks scorer_mean",
    "scorer_extra_missing": "snapshot lacks scorer_mean",
}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("how", sorted(CASES))
def test_bad_snapshot_is_refused_in_one_line_and_changes_nothing(ckpt, tmp_path, how) -> None:
    marker = tmp_path / "pwned"
    blob = _damaged(_good_snapshot(ckpt), how, marker)
    path = tmp_path / f"{how}.npz"
    path.write_bytes(blob)
    engine = _engine(ckpt)
    for source in (path, io.BytesIO(blob)):
        with pytest.raises(DataError, match=CASES[how]) as info:
            engine.restore(source)
        assert "\n" not in str(info.value)
        assert len(engine.state) == 0  # nothing half-restored
    assert not marker.exists()  # the pickle inside was never run


def test_snapshot_with_more_streams_than_the_cap_is_refused_whole(ckpt) -> None:
    small = Engine(ckpt, EngineConfig(device="cpu", capacity=1, max_streams=1))
    with pytest.raises(DataError, match="more than max_streams=1"):
        small.restore(io.BytesIO(_good_snapshot(ckpt)))
    assert len(small.state) == 0


def test_good_snapshot_still_restores(ckpt) -> None:
    engine = _engine(ckpt)
    assert sorted(engine.restore(io.BytesIO(_good_snapshot(ckpt)))) == ["a", "b"]


# --- the state topic's chunks -------------------------------------------------------------------


@dataclass
class Rec:
    key: bytes | None
    value: bytes | None
    headers: list


def _chunks(key: str, data: bytes, gen: str = "g1", offset: int = 7, size: int = 5) -> list[Rec]:
    blob = zlib.compress(data)
    parts = [blob[i : i + size] for i in range(0, len(blob), size)]
    return [
        Rec(
            f"{key}#{i}".encode(),
            part,
            [
                ("gen", gen.encode()),
                ("part", str(i).encode()),
                ("parts", str(len(parts)).encode()),
                ("offset", str(offset).encode()),
            ],
        )
        for i, part in enumerate(parts)
    ]


def test_assemble_takes_the_latest_complete_generation() -> None:
    records = _chunks("t/0", b"old state", "g1", 5) + _chunks("t/0", b"new state", "g2", 9)
    records += _chunks("t/1", b"other partition")
    assert assemble(records, {"t/0"}) == {"t/0": PartitionState(b"new state", 9)}


def test_assemble_passes_over_a_torn_snapshot_for_the_complete_one_before(caplog) -> None:
    torn = _chunks("t/0", b"the newest state, torn in flight", "g2", 9)[:-1]
    records = _chunks("t/0", b"old state", "g1", 5) + torn
    with caplog.at_level(logging.WARNING):
        assert assemble(records, {"t/0"}) == {"t/0": PartitionState(b"old state", 5)}
    assert "g2 at offset 9 incomplete" in caplog.text and "passed over" in caplog.text


def test_assemble_takes_the_highest_offset_whatever_the_read_order() -> None:
    # A state topic of several partitions is read partition by partition, not in write order.
    records = _chunks("t/0", b"new state", "g2", 9) + _chunks("t/0", b"old state", "g1", 5)
    assert assemble(records, {"t/0"}) == {"t/0": PartitionState(b"new state", 9)}


def test_assemble_falls_back_to_the_spare_when_the_newest_does_not_inflate(caplog) -> None:
    bad = _chunks("t/0", b"newest", "g3", 11)
    bad[0].value = b"not zlib at all"
    records = _chunks("t/0", b"oldest", "g1", 5) + _chunks("t/0", b"spare", "g2", 9) + bad
    with caplog.at_level(logging.WARNING):
        assert assemble(records, {"t/0"}) == {"t/0": PartitionState(b"spare", 9)}
    assert "g3 unreadable" in caplog.text


def test_assemble_holds_two_snapshots_however_many_the_topic_has() -> None:
    import tracemalloc

    size, gens = 100_000, 200

    def records():  # every checkpoint since the last compaction, made one at a time
        for g in range(gens):
            data = np.random.default_rng(g).bytes(size)  # random: zlib cannot shrink it
            yield from _chunks("t/0", data, f"g{g}", offset=g, size=size // 4)

    tracemalloc.start()
    try:
        got = assemble(records(), {"t/0"})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got["t/0"] == PartitionState(np.random.default_rng(gens - 1).bytes(size), gens - 1)
    assert peak < 10 * size, peak  # holding them all would take gens * size


class _Sent:
    """What a producer was asked to send, in order (the record fields the reader uses)."""

    def __init__(self) -> None:
        self.records: list[Rec] = []

    def send(self, topic, key, value, headers):
        self.records.append(Rec(key, value, headers))


def _compact(records: list[Rec]) -> list[Rec]:
    """What log compaction keeps: the last record of each key."""
    last = {r.key: i for i, r in enumerate(records)}
    return [r for i, r in enumerate(records) if last[r.key] == i]


def test_a_torn_write_never_costs_the_previous_snapshot_after_compaction(monkeypatch) -> None:
    from kafka import TopicPartition

    import detector.kafka_io as kafka_io

    monkeypatch.setattr(kafka_io, "CHUNK_BYTES", 64)  # several chunks per snapshot
    sent = _Sent()
    store = StateStore(sent, "state", "unused:9092")
    tp = TopicPartition("t", 0)
    first, second = np.random.default_rng(0).bytes(300), np.random.default_rng(1).bytes(300)
    store.write(tp, first, 5)
    n_first = len(sent.records)
    store.write(tp, second, 9)
    torn = sent.records[: n_first + 2]  # the broker went away after two chunks of the second
    assert n_first > 2 and len(sent.records) > n_first + 2
    assert assemble(_compact(torn), {"t/0"}) == {"t/0": PartitionState(first, 5, 0)}
    assert assemble(_compact(sent.records), {"t/0"}) == {"t/0": PartitionState(second, 9, 1)}

    # After a restore from slot 0, the next write must go to slot 1 (sparing slot 0), even
    # though the torn write had used slot 1 last.
    monkeypatch.setattr(kafka_io, "iter_to_end", lambda *a, **k: iter(_compact(torn)))
    assert store.read([tp])["t/0"].offset == 5
    del sent.records[:]
    store.write(tp, second, 9)
    assert all(r.key.startswith(b"t/0#b") for r in sent.records)


def test_assemble_skips_malformed_records_and_unreadable_snapshots(caplog) -> None:
    good = _chunks("t/0", b"fine")
    junk = [
        Rec(None, b"x", []),  # no key
        Rec(b"\xff\xfe#0", b"x", []),  # key not UTF-8
        Rec(b"t/0#0", b"x", [("gen", b"g9"), ("part", b"zero")]),  # header not a number
        Rec(b"t/0#0", b"x", [("gen", b"g9"), ("part", b"3"), ("parts", b"2"), ("offset", b"1")]),
        Rec(b"t/0#0", None, [("gen", b"g9"), ("part", b"0"), ("parts", b"1"), ("offset", b"1")]),
    ]
    with caplog.at_level(logging.WARNING):
        assert assemble(junk + good, {"t/0"}) == {"t/0": PartitionState(b"fine", 7)}
    assert "malformed" in caplog.text
    not_zlib = _chunks("t/0", b"x")
    not_zlib[0].value = b"garbage!"
    incomplete = _chunks("t/1", b"a longer state, several chunks")[1:]
    bomb = _chunks("t/2", b"\x00" * 100_000, size=10_000)
    got = assemble(not_zlib + incomplete + bomb, {"t/0", "t/1", "t/2"}, max_bytes=1000)
    assert got == {}
    assert "incomplete" in caplog.text and "unreadable" in caplog.text


def test_worker_starts_a_partition_afresh_when_its_state_is_damaged(ckpt, tmp_path, caplog) -> None:
    from kafka import TopicPartition

    from detector.worker import Worker

    path = save_checkpoint(tmp_path / "m.pt", ckpt)
    worker = Worker(load_config(None, env={}, overrides=[f"model.path={path}", "model.device=cpu"]))
    tp = TopicPartition("readings", 0)
    with caplog.at_level(logging.ERROR):
        assert worker._restore_state(tp, PartitionState(b"garbage", 5)) is None
    assert "readings/0" in caplog.text and "refused" in caplog.text
    blob = _good_snapshot(ckpt)
    assert sorted(worker._restore_state(tp, PartitionState(blob, 5))) == ["a", "b"]
