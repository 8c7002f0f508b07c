"""The daemon loop: poll → decode → engine → publish → checkpoint → commit.

At-least-once, nothing lost. Offsets are committed only at a checkpoint, after every alert and
dead letter of the readings they cover has been acknowledged by the broker and the state that
reflects them has been written to the state topic with those same offsets. After a crash or a
rebalance the partition's new owner restores that state and seeks to its offset, so it resumes
exactly there; readings after the checkpoint are scored again and give the same alert ids,
which downstream de-duplicates.

Rebalance callbacks run on kafka-python's network loop, where blocking IO would stall the
heartbeat; they only record what changed (and pause new partitions). The loop acts on it
between polls: it drops the state of revoked partitions and restores assigned ones.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import threading
import time

import numpy as np
import orjson
import torch
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata
from prometheus_client import CollectorRegistry

from detector.alerts import AlertEvent
from detector.checkpoint import load_checkpoint
from detector.codec import decode_batch
from detector.config import WorkerConfig
from detector.engine import STATUS, BatchResult, Engine
from detector.errors import DataError, DetectorError
from detector.kafka_io import StateStore, partition_key
from detector.lifecycle import ModelLifecycle
from detector.metrics import Metrics, observe_many

__all__ = ["Worker", "alert_message", "BrokerUnavailable", "BrokerDataLoss"]

log = logging.getLogger(__name__)
BROKER_WAIT_S = 10.0  # longest wait for the broker to acknowledge before backing off
BACKOFF_S = (0.5, 30.0)  # first and longest pause between attempts while the broker is away


class BrokerUnavailable(DetectorError):
    """The broker did not answer or acknowledge in time: back off and rewind, then go on."""


class BrokerDataLoss(DetectorError):
    """The broker no longer has data this worker has read or committed (e.g. a broker with
    memory storage restarted). Fatal: resuming would silently skip or re-read readings."""


def alert_message(event: AlertEvent, status: str, version: str) -> bytes:
    """The alert record: same id for its opening and its resolution."""
    return orjson.dumps(
        {
            "id": event.id,
            "status": status,
            "stream": event.stream,
            "start": event.start,
            "end": event.end,
            "peak_score": round(event.peak_score, 6),
            "top_features": event.top_features,
            "model_version": version,
        }
    )


class _Listener(ConsumerRebalanceListener):
    """Records rebalances for the loop; never blocks the network thread."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def on_partitions_revoked(self, revoked):
        self.worker._revoked.update(revoked)

    def on_partitions_assigned(self, assigned):
        # An eager rebalance revokes everything first: what the loop has not yet dropped
        # (``_revoked``) does not count as held.
        held = self.worker.assigned - self.worker._revoked
        new = set(assigned) - held
        self.worker._assigned.update(new)
        if new:
            self.worker.consumer.pause(*new)  # no data until its state is restored


class Worker:
    """One member of the consumer group; ``run`` until ``stop`` is called."""

    def __init__(self, config: WorkerConfig, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        if config.model.device == "cpu" or not torch.cuda.is_available():
            torch.set_num_threads(config.worker.torch_threads)
        self.ckpt = load_checkpoint(config.model.path)
        # model.device says where the model runs; the engine runs it there.
        self.engine = Engine(
            self.ckpt, dataclasses.replace(config.engine, device=config.model.device)
        )
        log.info("model step on %s: %s kernel", self.engine.device, self.engine.kernel)
        self.metrics = Metrics(registry or CollectorRegistry(), config.metrics.top_streams)
        w = config.worker
        self.model = ModelLifecycle(
            self.engine,
            self.metrics,
            config.model.path,
            config.model.reload_check_s,
            w.finetune_interval_s,
            w.finetune_budget_s,
        )
        self.stopping = threading.Event()
        self.assigned: set[TopicPartition] = set()
        self._assigned: set[TopicPartition] = set()  # set by the listener, handled by the loop
        self._revoked: set[TopicPartition] = set()
        self.owner: dict[str, TopicPartition] = {}  # stream -> the partition it arrives on
        self.next_offset: dict[TopicPartition, int] = {}
        self.last_checkpoint = time.monotonic()
        self.consumer: KafkaConsumer | None = None
        self.producer: KafkaProducer | None = None
        self.pending: list = []  # send futures since the last checkpoint
        self.poll_to_alert_s = 0.0  # the last poll with records: returned -> alerts handed over
        self.committed_at: dict[TopicPartition, int] = {}  # last offset committed, per partition
        self.broker_trouble: str = ""  # why the last attempt failed; "" once one succeeds
        self._backoff = 0.0

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> Worker:
        k = self.config.kafka
        opts = k.client_options_dict()
        self.producer = self._new_producer()
        self.consumer = KafkaConsumer(
            bootstrap_servers=k.bootstrap_servers,
            group_id=k.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=k.max_poll_records,
            session_timeout_ms=k.session_timeout_ms,
            heartbeat_interval_ms=k.heartbeat_interval_ms,
            **opts,
        )
        self.consumer.subscribe(list(k.topics), listener=_Listener(self))
        # A fresh worker has nothing to checkpoint yet: count its start as the last checkpoint,
        # so checkpoint-age alerts measure time since the worker could have checkpointed.
        self.metrics.checkpoint_ts.set_to_current_time()
        self.state = StateStore(self.producer, k.state_topic, k.bootstrap_servers, opts)
        return self

    def _new_producer(self) -> KafkaProducer:
        k = self.config.kafka
        return KafkaProducer(
            bootstrap_servers=k.bootstrap_servers,
            acks="all",
            linger_ms=5,
            **k.client_options_dict(),
        )

    def stop(self) -> None:
        """Ask the loop to finish its poll, checkpoint, commit and leave the group."""
        self.stopping.set()

    def run(self) -> None:
        clean = False
        try:
            while not self.stopping.is_set():
                try:
                    self.poll_once()
                except (KafkaError, BrokerUnavailable, TimeoutError) as exc:
                    self._recover(exc)
                else:
                    self._backoff, self.broker_trouble = 0.0, ""
            clean = True
        finally:
            self.close(checkpoint=clean)

    def close(self, checkpoint: bool = True) -> None:
        """Leave the group; with ``checkpoint``, save state and commit first. After a failure
        nothing is committed: the next owner replays from the last checkpoint."""
        if self.consumer is None:
            return
        try:
            if checkpoint:
                self._rebalance()
                self.checkpoint()
        finally:
            self.consumer.close(autocommit=False)
            self.producer.close()
            self.consumer = None

    def _recover(self, exc: BaseException) -> None:
        """The broker is away or did not acknowledge: wait (exponential back-off, no spinning),
        then rewind every partition to its last checkpoint with a fresh producer.

        Sends since that checkpoint may be lost or half-done; replaying the readings from the
        checkpoint sends them again (same alert ids), so nothing is lost. Readiness says
        "broker unreachable" meanwhile. Raises :class:`BrokerDataLoss` if the broker lost data.
        """
        lo, hi = BACKOFF_S
        self._backoff = min(hi, max(lo, 2 * self._backoff))
        self.broker_trouble = f"{type(exc).__name__}: {exc}"
        self.metrics.ready.set(0)
        log.warning(
            "broker trouble (%s); retrying in %.1f s from the last checkpoint",
            self.broker_trouble,
            self._backoff,
        )
        if self.stopping.wait(self._backoff):
            return
        try:
            self.producer.close(timeout=0)  # unacknowledged sends are replayed, not awaited
        except Exception as close_exc:  # a wedged client must not stop the recovery
            log.warning("closing the old producer: %s", close_exc)
        self.producer = self._new_producer()
        self.state.producer = self.producer
        self.pending.clear()
        # Rewind: drop what was scored since the checkpoint; the loop restores and seeks.
        held = set(self.assigned)
        by_tp = self._streams_by_partition()
        for tp in held:
            self.engine.forget(by_tp.get(tp, []))
            self.next_offset.pop(tp, None)
        self.owner = {s: tp for s, tp in self.owner.items() if tp not in held}
        self.assigned -= held
        self._assigned |= held
        if held:
            self.consumer.pause(*held)

    # -- the loop ------------------------------------------------------------------------------
    def poll_once(self) -> int:
        k = self.config.kafka
        polled = self.consumer.poll(timeout_ms=k.poll_timeout_ms, max_records=k.max_poll_records)
        returned = time.perf_counter()
        self._rebalance()
        batches = {tp: batch for tp, batch in polled.items() if tp in self.assigned and batch}
        records = [r for batch in batches.values() for r in batch]
        for tp, batch in batches.items():  # offsets advance over good and bad records alike
            if batch[0].offset < self.committed_at.get(tp, 0):  # the client reset behind us
                self._check_not_behind(tp, batch[0].offset)
            self.next_offset[tp] = batch[-1].offset + 1
        if records:
            self._process(records, [tp for tp, batch in batches.items() for _ in batch])
            self.poll_to_alert_s = time.perf_counter() - returned
            self.metrics.poll_to_alert.observe(self.poll_to_alert_s)
        now = time.monotonic()
        if now - self.last_checkpoint >= self.config.worker.checkpoint_interval_s:
            self.checkpoint()
        self.model.due(now)
        return len(records)

    def _process(self, records: list, partitions: list[TopicPartition]) -> None:
        k, m = self.config.kafka, self.metrics
        m.consumed.inc(len(records))
        m.batch.observe(len(records))
        with m.stage.labels("decode").time():
            decoded = decode_batch(
                [r.key for r in records],
                [r.value for r in records],
                k.format,
                self.ckpt.inputs,
                now=time.time(),
                max_bytes=k.max_record_bytes,
                max_future_s=self.config.worker.max_future_s,
            )
        for rej in decoded.rejects:
            self._dead_letter(records[rej.index], rej.reason, rej.detail)
        if len(decoded.index) == 0:
            return
        # Keyed producers keep a stream on one partition; the last record's partition wins.
        tps = [partitions[i] for i in decoded.index.tolist()]
        self.owner.update(zip(decoded.stream.tolist(), tps, strict=True))
        evicted = self.engine.evicted
        with m.stage.labels("score").time():
            res = self.engine.process(decoded.stream, decoded.timestamp, decoded.values)
        m.evicted.inc(self.engine.evicted - evicted)
        for j in np.flatnonzero(res.status != 0):
            self._dead_letter(records[decoded.index[j]], STATUS[res.status[j]], "")
        scored = res.status == 0
        m.scored.inc(int(scored.sum()))
        observe_many(m.score, res.score[scored])
        observe_many(m.event_lag, time.time() - res.timestamp[scored])
        with m.stage.labels("publish").time():
            self._publish(res, [records[j] for j in decoded.index] if k.scores_topic else None)

    def _publish(self, res: BatchResult, sources: list | None = None) -> None:
        """Send the batch's alert events and, with a scores topic, one record per scored reading
        naming its source (topic, partition, offset): the evidence that a reading was scored."""
        k, m = self.config.kafka, self.metrics
        for event, status in [(e, "open") for e in res.opened] + [
            (e, "resolved") for e in res.closed
        ]:
            self.pending.append(
                self.producer.send(
                    k.alerts_topic,
                    key=event.stream.encode(),
                    value=alert_message(event, status, self.model.version),
                )
            )
        m.alerts_opened.inc(len(res.opened))
        m.alerts_resolved.inc(len(res.closed))
        m.alerts_open.set(len(self.engine.alerts.open))
        m.streams.set(len(self.engine.state))
        if k.scores_topic:
            # Plain Python values: orjson rejects numpy scalars (np.float64 included).
            scored = np.flatnonzero(res.status == 0)
            streams = res.stream[scored].tolist()
            times = res.timestamp[scored].tolist()
            scores = np.round(res.score[scored], 6).tolist()
            alert_ids = res.alert_id[scored].tolist()
            for j, i in enumerate(scored.tolist()):
                src = sources[i]
                self.pending.append(
                    self.producer.send(
                        k.scores_topic,
                        key=str(streams[j]).encode(),
                        value=orjson.dumps(
                            {
                                "stream": str(streams[j]),
                                "ts": times[j],
                                "score": scores[j],
                                "alert_id": str(alert_ids[j]),
                                "source": f"{src.topic}/{src.partition}/{src.offset}",
                            }
                        ),
                    )
                )

    def _dead_letter(self, record, reason: str, detail: str) -> None:
        self.metrics.rejected.labels(reason).inc()
        headers = [
            ("reason", reason.encode()),
            ("detail", detail[:200].encode()),
            ("source", f"{record.topic}/{record.partition}/{record.offset}".encode()),
        ]
        self.pending.append(
            self.producer.send(
                self.config.kafka.dead_letter_topic,
                key=record.key,
                value=record.value,
                headers=headers,
            )
        )

    # -- checkpoint and rebalance --------------------------------------------------------------
    def _streams_by_partition(self) -> dict[TopicPartition, list[str]]:
        """Streams with state, grouped by the partition they arrive on, in one pass.

        Streams the engine has evicted leave ``owner`` here, so it stays as bounded as the engine.
        """
        live = self.engine.state.slot_of
        self.owner = {s: tp for s, tp in self.owner.items() if s in live}
        groups: dict[TopicPartition, list[str]] = {}
        for stream, tp in self.owner.items():
            groups.setdefault(tp, []).append(stream)
        return groups

    def checkpoint(self, tps: set[TopicPartition] | None = None) -> None:
        """Wait for every send, write the partitions' state with their offsets, then commit."""
        with self.metrics.stage.labels("checkpoint").time():
            self._checkpoint(tps)
        self._export_gauges()

    def _checkpoint(self, tps: set[TopicPartition] | None) -> None:
        tps = {tp for tp in (self.assigned if tps is None else tps) if tp in self.next_offset}
        self._check_broker_kept(tps)
        self._flush()
        failed = [f for f in self.pending if f.failed()]
        self.pending.clear()
        if failed:  # a lost alert must not be committed past: rewind and replay
            raise BrokerUnavailable(
                f"{len(failed)} record(s) not acknowledged by the broker: "
                f"{failed[0].exception}; not committing"
            )
        by_tp = self._streams_by_partition()
        futures = []
        for tp in tps:
            snapshot = self.engine.snapshot_bytes(by_tp.get(tp, []))
            futures += self.state.write(tp, snapshot, self.next_offset[tp])
        self._flush()
        for f in futures:
            f.get(timeout=BROKER_WAIT_S)
        if tps:
            offsets = {tp: OffsetAndMetadata(self.next_offset[tp], "", -1) for tp in tps}
            try:
                self.consumer.commit(offsets, timeout_ms=int(BROKER_WAIT_S * 1000))
                self.committed_at.update({tp: o.offset for tp, o in offsets.items()})
            except CommitFailedError as exc:
                # The group moved on (this member was too slow or is being rebalanced). The
                # state just written carries its offsets; the next owner resumes from it.
                log.warning("commit refused by the group, state kept in the state topic: %s", exc)
        self.last_checkpoint = time.monotonic()
        self.metrics.checkpoint_ts.set_to_current_time()

    def _flush(self) -> None:
        try:
            self.producer.flush(timeout=BROKER_WAIT_S)
        except KafkaError as exc:
            raise BrokerUnavailable(f"sends not acknowledged within {BROKER_WAIT_S:g} s") from exc

    def _check_broker_kept(self, tps) -> None:
        """A partition whose end is now below what this worker read lost data on the broker."""
        for tp in tps:
            high = self.consumer.highwater(tp)
            if high is not None and high < self.next_offset[tp]:
                raise BrokerDataLoss(
                    f"{partition_key(tp)} ends at offset {high} on the broker, but this worker "
                    f"has read up to {self.next_offset[tp]}: the broker lost data (restarted "
                    "with memory storage?). Stopping rather than skipping or re-reading; "
                    "restore the broker's data or reset the group's offsets deliberately"
                )

    def _export_gauges(self) -> None:
        """Gauges computed over all streams or partitions: at checkpoints, not every poll."""
        m, st = self.metrics, self.engine.state
        m.streams.set(len(st))
        if m.top_streams:
            names = list(st.slot_of)
            slots = np.array([st.slot_of[n] for n in names], np.int64)
            m.set_top(names, self.engine.alerts.slabs["last_score"][slots] if len(slots) else slots)
        m.lag.clear()
        for tp in self.assigned:
            high = self.consumer.highwater(tp)  # end_offsets is wrong on Tansu; highwater is not
            if high is not None:
                m.lag.labels(tp.topic, str(tp.partition)).set(high - self.next_offset.get(tp, 0))
        m.ready.set(1 if self.readiness()[0] else 0)

    def readiness(self) -> tuple[bool, str]:
        """Ready when partitions are held, a model is loaded and the broker answers."""
        if self.consumer is None:
            return False, "not started"
        if self.broker_trouble:
            return False, f"broker unreachable: {self.broker_trouble}"
        if not self._broker_connected():
            return False, "broker unreachable"
        if not self.assigned:
            return False, "no partitions assigned"
        return True, f"ok: {len(self.assigned)} partition(s), model {self.model.version}"

    def _broker_connected(self) -> bool:
        # kafka-python has no public "connected to the cluster" call (bootstrap_connected() is
        # False once bootstrapping is over); ask its client about the known brokers.
        client = self.consumer._client
        return any(client.connected(b.node_id) for b in client.cluster.brokers())

    def _rebalance(self) -> None:
        if self._revoked:
            revoked, self._revoked = self._revoked, set()
            by_tp = self._streams_by_partition()
            for tp in revoked & self.assigned:
                self.engine.forget(by_tp.get(tp, []))
                self.next_offset.pop(tp, None)
            self.owner = {s: tp for s, tp in self.owner.items() if tp not in revoked}
            self.assigned -= revoked
            log.info("revoked %s", sorted(map(partition_key, revoked)))
        if self._assigned:
            pending = set(self._assigned)
            # Only what the group still gives us: a partition left pending by a failed restore
            # may have been revoked since.
            mine = pending & self.consumer.assignment()
            if mine:
                self._restore(mine)
            self._assigned -= pending  # after the restore: if it fails they stay pending

    def _restore(self, tps: set[TopicPartition]) -> None:
        states = self.state.read(tps)
        for tp in tps:
            saved = states.get(partition_key(tp))
            if saved is not None:
                self._check_not_behind(tp, saved.offset)
            names = self._restore_state(tp, saved) if saved is not None else None
            if names is None:  # never checkpointed (or damaged): from the group's offset, if any
                offset = self.consumer.committed(tp) or 0
                self._check_not_behind(tp, offset)
                self.consumer.seek(tp, offset)
                log.info("no saved state for %s; from offset %d", partition_key(tp), offset)
                continue
            self.owner.update(dict.fromkeys(names, tp))
            self.consumer.seek(tp, saved.offset)
            self.next_offset[tp] = saved.offset
            log.info(
                "restored %d stream(s) of %s at offset %d",
                len(names),
                partition_key(tp),
                saved.offset,
            )
        self.assigned |= tps
        self.consumer.resume(*tps)

    def _restore_state(self, tp: TopicPartition, saved) -> list[str] | None:
        """The streams of a saved partition state, or None if the snapshot is refused: a damaged
        state costs that partition's warm-up, never a crash loop of the whole worker."""
        try:
            return self.engine.restore(io.BytesIO(saved.data))
        except DataError as exc:
            log.error("state of %s refused, starting it afresh: %s", partition_key(tp), exc)
            return None

    def _check_not_behind(self, tp: TopicPartition, offset: int) -> None:
        """Resuming before an offset this worker committed means the broker forgot it."""
        done = self.committed_at.get(tp)
        if done is not None and offset < done:
            raise BrokerDataLoss(
                f"{partition_key(tp)}: the broker resumes it at offset {offset}, but this worker "
                f"committed {done}: the broker lost its state (restarted with memory storage?). "
                "Stopping rather than scoring readings twice or skipping them"
            )
