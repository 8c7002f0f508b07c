"""Kafka plumbing: clients from settings, topic creation, and the partition-state store.

The state store keeps each input partition's engine snapshot in a state topic, so the worker
that takes a partition over after a rebalance or a crash resumes exactly where the state says,
on any machine (Kafka Streams' changelog idea). A snapshot larger than one record is split
into chunks; a generation id ties the chunks of one snapshot together.

A write can be torn (the broker goes away after some chunks), so a partition's snapshots take
turns between two sets of record keys (slots): compaction keeps the latest record per key, and
a torn write into one slot then leaves the previous complete snapshot whole in the other. The
reader takes the newest complete snapshot.
"""

from __future__ import annotations

import logging
import time
import uuid
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

__all__ = [
    "PartitionState",
    "StateStore",
    "assemble",
    "ensure_topics",
    "iter_to_end",
    "partition_key",
    "read_to_end",
]

log = logging.getLogger(__name__)
CHUNK_BYTES = 900_000  # under Kafka's default 1 MiB record limit, with room for headers
MAX_CHUNKS = 10_000  # a snapshot of up to ~9 GB compressed; more is a damaged header
MAX_STATE_BYTES = 1 << 33  # 8 GiB uncompressed: above any real partition's state (~3 KiB/stream)


def partition_key(tp: TopicPartition) -> str:
    return f"{tp.topic}/{tp.partition}"


def ensure_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    client_options: Mapping | None = None,
    compacted: Iterable[str] = (),
) -> None:
    """Create missing topics (name → partitions); compacted ones keep the last value per key."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, **dict(client_options or {}))
    try:
        for name, partitions in topics.items():
            configs = {"cleanup.policy": "compact"} if name in set(compacted) else {}
            try:
                admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs)])
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


@dataclass(frozen=True)
class PartitionState:
    """A partition's snapshot and the input offset it covers (the next one to read)."""

    data: bytes
    offset: int
    slot: int = 0  # which of the partition's two sets of record keys holds it


def _header(headers: list[tuple[str, bytes]], name: str) -> str:
    return next((v.decode() for k, v in headers if k == name), "")


class StateStore:
    """Write and read per-partition snapshots in a (compacted) state topic."""

    def __init__(
        self,
        producer: KafkaProducer,
        topic: str,
        bootstrap: str,
        client_options: Mapping | None = None,
    ) -> None:
        self.producer, self.topic = producer, topic
        self.bootstrap, self.client_options = bootstrap, dict(client_options or {})
        self._slot: dict[str, int] = {}  # partition key -> the slot last written or read

    def write(self, tp: TopicPartition, data: bytes, offset: int) -> list:
        """Send one snapshot (compressed, chunked) into the slot the last one did not use;
        returns the send futures to wait on.

        Alternating is safe only because a failed write is always followed by a :meth:`read`
        (the worker rewinds to its last checkpoint) before the partition's next write: the read
        points the slot back at the complete snapshot, and the next write avoids it.
        """
        blob = zlib.compress(data, 1)
        gen = uuid.uuid4().hex[:12]
        parts = [blob[i : i + CHUNK_BYTES] for i in range(0, len(blob), CHUNK_BYTES)] or [b""]
        key = partition_key(tp)
        slot = 1 - self._slot.get(key, 1)
        self._slot[key] = slot
        futures = []
        for i, part in enumerate(parts):
            headers = [
                ("gen", gen.encode()),
                ("part", str(i).encode()),
                ("parts", str(len(parts)).encode()),
                ("offset", str(offset).encode()),
            ]
            futures.append(
                self.producer.send(
                    self.topic,
                    key=f"{key}#{_SLOT_TAG[slot]}{i}".encode(),
                    value=part,
                    headers=headers,
                )
            )
        return futures

    def read(
        self, tps: Iterable[TopicPartition], timeout_s: float = 30.0
    ) -> dict[str, PartitionState]:
        """The latest complete snapshot of each partition in ``tps`` that has one."""
        wanted = {partition_key(tp) for tp in tps}
        records = iter_to_end(self.bootstrap, self.topic, self.client_options, timeout_s)
        states = assemble(records, wanted)
        for key in wanted:  # the next write must spare the snapshot a restore would use
            self._slot.pop(key, None)
        self._slot.update({key: state.slot for key, state in states.items()})
        return states


_SLOT_TAG = ("", "b")  # record key "<partition>#<tag><part>"; slot 0 is the original key format


def _chunk(record) -> tuple[str, str, int, int, int, int] | None:
    """(partition key, generation, part, parts, offset, slot) of a state record; None if
    malformed."""
    try:
        key, suffix = record.key.decode().rsplit("#", 1)
        gen = _header(record.headers, "gen")
        part, parts = int(_header(record.headers, "part")), int(_header(record.headers, "parts"))
        offset = int(_header(record.headers, "offset"))
    except (AttributeError, TypeError, ValueError):  # no key, not UTF-8, header not a number
        return None
    slot = 1 if suffix.startswith(_SLOT_TAG[1]) else 0
    if not gen or not 0 <= part < parts <= MAX_CHUNKS or offset < 0 or record.value is None:
        return None
    return key, gen, part, parts, offset, slot


_KEEP = 2  # complete snapshots kept per partition while reading: the newest, and one spare


@dataclass
class _Generation:
    gen: str
    parts: int
    offset: int
    slot: int
    seen: int  # position of its last record in the read: the later of two at one offset wins
    chunks: dict[int, bytes]

    def rank(self) -> tuple[int, int]:
        return self.offset, self.seen

    def complete(self) -> bool:  # distinct parts: the count, then one max() per generation
        return len(self.chunks) == self.parts and max(self.chunks) < self.parts


def assemble(
    records: Iterable, wanted: set[str], max_bytes: int = MAX_STATE_BYTES
) -> dict[str, PartitionState]:
    """The newest complete snapshot per partition key in ``wanted``: the one covering the
    highest input offset, the later in the read at equal offsets (a state topic of several
    partitions has no single log order). A malformed record is skipped; a newer snapshot that
    is incomplete (a torn write) or does not decompress is passed over with a warning for the
    one before it; with none left, that partition starts from its committed offset.

    Memory stays bounded on a topic compaction has not cleaned yet (every checkpoint since the
    last clean-up): per partition it holds the two best complete snapshots, compressed, and the
    chunks of snapshots still incomplete that could beat them. ``records`` may be a generator.
    """
    pending: dict[tuple[str, str], _Generation] = {}
    done: dict[str, list[_Generation]] = {}  # best first, at most _KEEP
    finished: set[tuple[str, str]] = set()  # generations completed (kept or already beaten)
    for seen, record in enumerate(records):
        meta = _chunk(record)
        if meta is None:
            log.warning("state topic: malformed record skipped")
            continue
        key, gen, part, parts, offset, slot = meta
        if key not in wanted or (key, gen) in finished:
            continue
        g = pending.setdefault((key, gen), _Generation(gen, parts, offset, slot, seen, {}))
        g.chunks[part], g.seen = record.value, seen
        if g.complete():
            del pending[(key, gen)]
            finished.add((key, gen))
            done[key] = sorted([*done.get(key, []), g], key=_Generation.rank, reverse=True)
            done[key] = done[key][:_KEEP]
            if len(done[key]) == _KEEP:  # what cannot beat the spare will never be used
                floor = done[key][-1].rank()
                for k in [k for k, p in pending.items() if k[0] == key and p.rank() < floor]:
                    del pending[k]
    for (key, _), g in pending.items():  # torn writes newer than what will be restored
        if not done.get(key) or g.rank() > done[key][0].rank():
            log.warning(
                "state for %s: generation %s at offset %d incomplete (%d/%d chunks); passed over",
                key,
                g.gen,
                g.offset,
                len(g.chunks),
                g.parts,
            )
    out = {}
    for key, best in done.items():
        for g in best:
            try:
                data = _inflate(b"".join(g.chunks[i] for i in range(g.parts)), max_bytes)
            except (zlib.error, ValueError) as exc:
                log.warning(
                    "state for %s: generation %s unreadable (%s); passed over", key, g.gen, exc
                )
                continue
            out[key] = PartitionState(data, g.offset, g.slot)
            break
    return out


def _inflate(blob: bytes, max_bytes: int) -> bytes:
    """zlib-decompress at most ``max_bytes``: a damaged or hostile record cannot exhaust memory."""
    d = zlib.decompressobj()
    data = d.decompress(blob, max_bytes)
    if d.unconsumed_tail or not d.eof:
        raise ValueError(f"not one complete zlib stream of <= {max_bytes} bytes")
    return data


def read_to_end(
    bootstrap: str, topic: str, client_options: Mapping | None = None, timeout_s: float = 30.0
) -> list:
    """Every record of ``topic`` from the beginning to its current end, in log order per partition.

    The end is each partition's highwater, known once a fetch has answered (``end_offsets`` is
    wrong on Tansu); raises ``TimeoutError`` if the end is not reached in ``timeout_s``.
    """
    return list(iter_to_end(bootstrap, topic, client_options, timeout_s))


def iter_to_end(
    bootstrap: str, topic: str, client_options: Mapping | None = None, timeout_s: float = 30.0
) -> Iterator:
    """:func:`read_to_end`, one poll's records at a time: a large state topic need not sit in
    memory whole."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, **dict(client_options or {})
    )
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not tps:
            return
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                yield from batch
            ends = [consumer.highwater(tp) for tp in tps]
            if all(
                h is not None and consumer.position(tp) >= h
                for tp, h in zip(tps, ends, strict=True)
            ):
                return
        raise TimeoutError(f"topic {topic!r} not read to its end in {timeout_s:g} s")
    finally:
        consumer.close()
