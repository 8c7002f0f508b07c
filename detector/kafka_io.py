"""Kafka plumbing: clients from settings, topic creation, and the partition-state store.

The state store keeps each input partition's engine snapshot in a state topic, so the worker
that takes a partition over after a rebalance or a crash resumes exactly where the state says,
on any machine (Kafka Streams' changelog idea). A snapshot larger than one record is split
into chunks; a generation id ties the chunks of one snapshot together.
"""

from __future__ import annotations

import logging
import time
import uuid
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

__all__ = [
    "PartitionState",
    "StateStore",
    "assemble",
    "ensure_topics",
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

    def write(self, tp: TopicPartition, data: bytes, offset: int) -> list:
        """Send one snapshot (compressed, chunked); returns the send futures to wait on."""
        blob = zlib.compress(data, 1)
        gen = uuid.uuid4().hex[:12]
        parts = [blob[i : i + CHUNK_BYTES] for i in range(0, len(blob), CHUNK_BYTES)] or [b""]
        key = partition_key(tp)
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
                    self.topic, key=f"{key}#{i}".encode(), value=part, headers=headers
                )
            )
        return futures

    def read(
        self, tps: Iterable[TopicPartition], timeout_s: float = 30.0
    ) -> dict[str, PartitionState]:
        """The latest complete snapshot of each partition in ``tps`` that has one."""
        wanted = {partition_key(tp) for tp in tps}
        records = read_to_end(self.bootstrap, self.topic, self.client_options, timeout_s)
        return assemble(records, wanted)


def _chunk(record) -> tuple[str, str, int, int, int] | None:
    """(partition key, generation, part, parts, offset) of a state record; None if malformed."""
    try:
        key = record.key.decode().rsplit("#", 1)[0]
        gen = _header(record.headers, "gen")
        part, parts = int(_header(record.headers, "part")), int(_header(record.headers, "parts"))
        offset = int(_header(record.headers, "offset"))
    except (AttributeError, TypeError, ValueError):  # no key, not UTF-8, header not a number
        return None
    if not gen or not 0 <= part < parts <= MAX_CHUNKS or offset < 0 or record.value is None:
        return None
    return key, gen, part, parts, offset


def assemble(
    records: Iterable, wanted: set[str], max_bytes: int = MAX_STATE_BYTES
) -> dict[str, PartitionState]:
    """The latest complete snapshot per partition key in ``wanted``, from state records in log
    order. A malformed record is skipped; a snapshot that is incomplete or does not decompress is
    ignored with a warning (that partition then starts from its committed offset)."""
    chunks: dict[tuple[str, str], dict[int, bytes]] = {}
    latest: dict[str, tuple[str, int, int]] = {}  # key -> (gen, parts, offset), by log order
    for record in records:
        meta = _chunk(record)
        if meta is None:
            log.warning("state topic: malformed record skipped")
            continue
        key, gen, part, parts, offset = meta
        if key in wanted:
            chunks.setdefault((key, gen), {})[part] = record.value
            latest[key] = (gen, parts, offset)
    out = {}
    for key, (gen, parts, offset) in latest.items():
        got = chunks[(key, gen)]
        if sorted(got) != list(range(parts)):
            log.warning(
                "state for %s: generation %s incomplete (%d/%d chunks); ignored",
                key,
                gen,
                len(got),
                parts,
            )
            continue
        try:
            data = _inflate(b"".join(got[i] for i in range(parts)), max_bytes)
        except (zlib.error, ValueError) as exc:
            log.warning("state for %s: generation %s unreadable (%s); ignored", key, gen, exc)
            continue
        out[key] = PartitionState(data, offset)
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
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, **dict(client_options or {})
    )
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records, deadline = [], time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
            ends = [consumer.highwater(tp) for tp in tps]
            if all(
                h is not None and consumer.position(tp) >= h
                for tp, h in zip(tps, ends, strict=True)
            ):
                return records
        raise TimeoutError(f"topic {topic!r} not read to its end in {timeout_s:g} s")
    finally:
        consumer.close()
