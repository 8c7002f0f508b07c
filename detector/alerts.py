"""Scores → alerts: a per-stream state machine with hysteresis, minimum duration and cool-down.

An alert **opens** when a stream's score has been at or above ``open_at`` for ``min_duration``
consecutive readings (and no cool-down is running); it **closes** when the score has stayed
below ``close_at`` (< ``open_at``: hysteresis) for ``clear_duration`` readings; after closing,
no new alert opens for ``cooldown`` readings. All of it is vectorised over slots.

Beside the alert state, each reading gets an **onset score**: its score when it starts an episode
or, inside one, when its evidence (``-log10 p``) is at least ``onset_step`` times that of the
episode's highest onset so far; else 0. An episode lasts ``quiet`` readings after its last onset
(with ``hold_while_open``, also while an alert is open; off by default: on the development
benchmark it lowered the NAB-style score by 1.1 to 1.7, see docs/accuracy.md). An anomaly is
thus reported once, then again only when its evidence has grown by a clear factor, and the
stream stays quiet while the same episode goes on; a benchmark that sweeps one threshold over
per-reading scores and counts every extra detection as a false positive (NAB) reads this column.
Without the step (``onset_step`` 1) a slowly growing anomaly reported itself at every new high,
each a false positive once it outlasted its window. With ``onset_cap`` an onset's evidence is
also held to the stream's own record: a stream that has already started ``c`` episodes about
this strong in ``n`` readings (at least ``1 / onset_step`` of its evidence; ``c`` > 2, counted
among its 8 strongest onsets) has shown that such an event comes about ``c / n`` of the time, so
its onset claims no more than ``-log10(c / n)`` (a bursty metric's routine bursts stop ranking
with a quiet stream's first fault; an onset ``onset_step`` times stronger than all but two of
its stream's earlier ones is never capped). Alerts themselves follow the plain score, unless
``lone_cap`` (on by default since stage 21) holds a lone anomalous reading to the same record
before it may open one.

An alert's id is derived from its stream and the event time of its first anomalous reading
(``sha1``), so replaying the same readings gives the same ids and downstream can de-duplicate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from detector.scoring import evidence_of_score, surprise_log10
from detector.slabs import Slabs

__all__ = ["AlertConfig", "AlertEvent", "AlertTracker", "alert_id", "onset_scores", "replay"]

_RUN_MAX = 2**30  # readings counted in a run (int32 slabs; far past any duration setting)
# The onset cap, set by reasoning: a stream's 8 strongest onsets are its record (bounded state;
# the cap can then claim no less than c / n = 8 / n), and it binds from the third precedent on
# (c > 2): one or two earlier events of the size could be faults too, a handful cannot all be.
_CAP_RECORD = 8
_CAP_AFTER = 2


@dataclass(frozen=True)
class AlertConfig:
    """Alert rule on the one score scale (see scoring); no default was tuned on a test
    benchmark's labels. ``open_at``, ``close_at``, the durations and ``quiet`` were set by
    reasoning; ``hold_while_open`` and ``onset_step`` were chosen on the development benchmark
    (``scripts/devset.py``), where ``open_at`` 0.6 / 0.7 only tied with 0.5 (event F1 within
    0.01), so 0.5 stays. ``onset_cap`` and its constants were set by reasoning and kept after a
    guard written before fresh dev seeds 45-47; counting precedents by ``onset_step`` passed its
    own guard on fresh seeds 51-53 (docs/accuracy.md, stage 14). ``lone_cap`` failed its guard
    on fresh seeds 54-59 and 84-89 (``skab_free``, stages 15 and 20) while the level test also
    ran on multivariate streams; with the scorer's ``level_beside_relations`` off it passed a
    rule written before fresh seeds 90-95, and both became defaults (stage 21)."""

    open_at: float = 0.5  # score >= this is anomalous (p <= 1e-5)
    close_at: float = 0.3  # score < this is normal again (p > 1e-3)
    min_duration: int = 1  # consecutive anomalous readings needed to open
    clear_duration: int = 5  # consecutive normal readings needed to close
    cooldown: int = 0  # readings after a close during which no alert opens
    top_k: int = 3  # features named per alert
    quiet: int = 250  # onset score: readings an episode lasts after its last onset (0 = off)
    hold_while_open: bool = False  # onset score: an episode also lasts while its alert is open
    # onset score: inside an episode, a reading is a new onset only when its evidence (-log10 p)
    # is at least this many times the episode's highest onset's (1 = any new high)
    onset_step: float = 1.5
    # onset score: capped at -log10(c / n) where the stream has had c > 2 onsets about as
    # strong in its n readings (see the module docstring)
    onset_cap: bool = True
    # opening: a lone anomalous reading (the first of its run) opens an alert only if its
    # evidence, held to the stream's onset record as onsets are, still reaches open_at; a run of
    # two opens as before (a routine blip the stream has shown before is not an alert)
    lone_cap: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.close_at <= self.open_at <= 1:
            raise ValueError(
                f"need 0 <= close_at ({self.close_at}) <= open_at ({self.open_at}) <= 1"
            )
        if self.min_duration < 1 or self.clear_duration < 1 or min(self.cooldown, self.quiet) < 0:
            raise ValueError(
                "min_duration and clear_duration must be >= 1, cooldown and quiet >= 0"
            )
        if not self.onset_step >= 1.0:
            raise ValueError(f"need onset_step >= 1, got {self.onset_step}")
        if max(self.min_duration, self.clear_duration, self.cooldown) > _RUN_MAX:
            raise ValueError(f"min_duration, clear_duration and cooldown must be <= {_RUN_MAX}")
        if self.quiet >= _RUN_MAX:  # the readings since an onset saturate there
            raise ValueError(f"quiet must be < {_RUN_MAX}, got {self.quiet}")


@dataclass
class AlertEvent:
    """One alert, from its first anomalous reading to the reading that closed it."""

    id: str
    stream: str
    start: float  # event time of the first anomalous reading
    end: float | None = None  # event time of the reading that closed it; None while open
    peak_score: float = 0.0
    top_features: list[str] = field(default_factory=list)


def alert_id(stream: str, start: float) -> str:
    """Deterministic id of the alert of ``stream`` starting at event time ``start``."""
    return hashlib.sha1(f"{stream}|{start:.6f}".encode()).hexdigest()[:16]


def replay(score: np.ndarray, config: AlertConfig) -> tuple[np.ndarray, np.ndarray]:
    """Each reading's alert flag and onset score for one stream's ``(n,)`` scores, as
    :class:`AlertTracker` gives them reading by reading (for scores made outside the engine)."""
    tracker = AlertTracker(config, ("x",), capacity=1)
    slot, name, contrib = np.zeros(1, np.int64), ["x"], np.ones((1, 1))
    flag, onset = np.zeros(len(score), bool), np.zeros(len(score))
    for i, x in enumerate(np.asarray(score, np.float64).tolist()):
        ids, _, _ = tracker.update(slot, name, np.array([float(i)]), np.array([x]), contrib)
        flag[i], onset[i] = ids[0] != "", tracker.slabs["onset"][0]
    return flag, onset


def onset_scores(score: np.ndarray, config: AlertConfig) -> np.ndarray:
    """The onset scores of one stream's ``(n,)`` scores (:func:`replay`'s second half)."""
    return replay(score, config)[1]


class AlertTracker(Slabs):
    """Alert state of every slot; ``update`` takes one wave (distinct slots)."""

    # The onset cap's record: a snapshot from before it restores it empty (a stream's record
    # starts again, so its cap binds later, never wrongly).
    added_later = frozenset({"onset_top", "onset_n"})

    def __init__(self, config: AlertConfig, features: tuple[str, ...], capacity: int) -> None:
        self.config, self.features = config, features
        self.open: dict[int, AlertEvent] = {}  # slot -> its open alert
        self.grow(capacity)

    def _fresh(self, n: int) -> dict[str, np.ndarray]:
        return {
            # Counters in int32, saturated: each is only compared with a small setting.
            "above": np.zeros(n, np.int32),  # consecutive readings >= open_at
            "below": np.zeros(n, np.int32),  # consecutive readings < close_at
            "cooldown": np.zeros(n, np.int32),  # readings left before an alert may open
            "run_start": np.full(n, np.nan),  # event time the current anomalous run began
            "active": np.zeros(n, bool),
            "alert_start": np.full(n, np.nan),  # start of the open alert (rebuilds it on restore)
            # The open alert's peak and its top features (indices, -1 = none), so that an alert
            # restored after a crash or a rebalance closes with what it had, not with nothing.
            "alert_peak": np.zeros(n),
            "alert_top": np.full((n, self.config.top_k), -1, np.int32),
            "last_score": np.zeros(n),  # the latest score, for the top-K streams gauge
            "onset_peak": np.zeros(n),  # the highest onset reported in the last `quiet` readings
            # readings since that onset, saturated: only compared with `quiet` (< _RUN_MAX)
            "onset_age": np.full(n, _RUN_MAX, np.int32),
            "onset": np.zeros(n),  # the latest reading's onset score
            # the onset cap's record: the evidence of the stream's strongest onsets (uncapped,
            # 0 = none yet), and the readings it has seen
            "onset_top": np.zeros((n, _CAP_RECORD)),
            "onset_n": np.zeros(n, np.int64),
        }

    def reset(self, slots: np.ndarray) -> list[AlertEvent]:
        """Forget these slots' alert state; returns their open alerts, now orphaned."""
        super().reset(slots)
        return [self.open.pop(int(s)) for s in slots if int(s) in self.open]

    def update(
        self,
        slots: np.ndarray,
        names: Sequence[str | None],
        ts: np.ndarray,
        score: np.ndarray,
        contrib: np.ndarray,
    ) -> tuple[np.ndarray, list[AlertEvent], list[AlertEvent]]:
        """Advance the state machine by one reading per slot (``names`` is indexed by slot).

        Returns each reading's alert id (``""`` outside alerts; the closing reading still
        belongs to its alert), the alerts opened and those closed.
        """
        cfg, s = self.config, self.slabs
        hot = score >= cfg.open_at
        cold = score < cfg.close_at
        run_start = np.where(hot & (s["above"][slots] == 0), ts, s["run_start"][slots])
        above = np.where(hot, np.minimum(s["above"][slots], _RUN_MAX) + 1, 0)
        below = np.where(cold, np.minimum(s["below"][slots], _RUN_MAX) + 1, 0)
        active = was_active = s["active"][slots]
        cooling = s["cooldown"][slots]
        opening = ~active & (above >= cfg.min_duration) & (cooling == 0)
        if cfg.lone_cap:
            lone = np.flatnonzero(opening & (above == 1))
            if len(lone):
                seen = s["onset_n"][slots[lone]] + 1  # as _onset will count this reading
                held = self._held(slots[lone], score[lone], seen)
                opening[lone] = held >= cfg.open_at
        closing = active & (below >= cfg.clear_duration)
        active = (active | opening) & ~closing
        cooldown = np.where(closing, cfg.cooldown, np.maximum(cooling - 1, 0))
        s["run_start"][slots], s["above"][slots], s["below"][slots] = run_start, above, below
        s["active"][slots], s["cooldown"][slots] = active, cooldown
        self._onset(slots, score, was_active)
        s["last_score"][slots] = score

        opened = [
            self._open(int(slots[i]), names[int(slots[i])], run_start[i])
            for i in np.flatnonzero(opening)
        ]
        for i in np.flatnonzero(active & hot):  # peaks: readings of open alerts above open_at
            self._peak(int(slots[i]), float(score[i]), contrib[i])
        # What the opening reading knew: later waves of the same batch must not change the
        # open event's record, or its content would depend on how readings were batched.
        opened = [replace(e, top_features=list(e.top_features)) for e in opened]
        ids = np.full(len(slots), "", dtype=object)
        for i in np.flatnonzero(active):
            ids[i] = self.open[int(slots[i])].id
        closed = []
        for i in np.flatnonzero(closing):
            closed.append(self._close(int(slots[i]), ts[i]))
            ids[i] = closed[-1].id
        return ids, opened, closed

    def _onset(self, slots: np.ndarray, score: np.ndarray, was_active: np.ndarray) -> None:
        s = self.slabs
        # An episode lasts `quiet` readings after its last onset (and, with hold_while_open,
        # while its alert is open).
        hold = was_active & self.config.hold_while_open
        age = np.where(hold, 0, np.minimum(s["onset_age"][slots], _RUN_MAX - 1) + 1)
        live = (age <= self.config.quiet) & (self.config.quiet > 0)
        peak = s["onset_peak"][slots]
        # Inside an episode only a clearly stronger reading is news: a slow drift's every new
        # high would otherwise be one more detection for a threshold sweep to count.
        step = self.config.onset_step
        stronger = (score > peak) & (evidence_of_score(score) >= step * evidence_of_score(peak))
        new = np.where(live, stronger, score > 0.0)
        seen = s["onset_n"][slots] + 1
        s["onset_n"][slots] = seen
        onset = np.where(new, score, 0.0)
        if (self.config.onset_cap or self.config.lone_cap) and new.any():
            i = np.flatnonzero(new)  # only onsets are capped: a wave's few, not all its slots
            held = self._recorded(slots[i], score[i], seen[i])
            onset[i] = held if self.config.onset_cap else score[i]
        s["onset"][slots] = onset
        s["onset_peak"][slots] = np.where(new, score, s["onset_peak"][slots])
        s["onset_age"][slots] = np.where(new, 0, age)

    def _held(self, slots: np.ndarray, score: np.ndarray, seen: np.ndarray) -> np.ndarray:
        """``score`` of each of ``slots`` held to its stream's record: ``-log10(c / n)`` where
        the stream has had ``c`` > 2 onsets about as strong in its ``n`` (``seen``) readings
        (see the module docstring)."""
        top = self.slabs["onset_top"][slots]  # (k, _CAP_RECORD)
        e = evidence_of_score(score)  # -log10(p) / 10
        # Precedents: the record's onsets not clearly weaker (by onset_step, the episode rule's
        # own measure of news), so a score that creeps up episode after episode, each onset a
        # new record by a hair, still counts its precedents.
        c = (top >= e[:, None] / self.config.onset_step).sum(axis=1)
        with np.errstate(divide="ignore"):
            cap = np.log10(seen / np.maximum(c, 1)) / 10.0
        binds = (c > _CAP_AFTER) & (cap < e)
        return np.where(binds, surprise_log10(-10.0 * cap), score)

    def _recorded(self, slots: np.ndarray, score: np.ndarray, seen: np.ndarray) -> np.ndarray:
        """The onset ``score`` of each of ``slots`` held to its stream's record (:meth:`_held`);
        then adds each, uncapped, to the record."""
        out = self._held(slots, score, seen)
        top = self.slabs["onset_top"][slots]  # a copy
        e = evidence_of_score(score)
        # The record keeps the strongest: a new onset replaces the weakest entry it beats.
        weakest = top.argmin(axis=1)
        row = np.arange(len(top))
        enters = e > top[row, weakest]
        top[row[enters], weakest[enters]] = e[enters]
        self.slabs["onset_top"][slots[enters]] = top[enters]
        return out

    def _open(self, slot: int, name: str, start: float) -> AlertEvent:
        event = AlertEvent(alert_id(name, float(start)), name, float(start))
        self.open[slot] = event
        self.slabs["alert_start"][slot] = start
        self.slabs["alert_peak"][slot] = 0.0
        self.slabs["alert_top"][slot] = -1
        return event

    def rebuild_open(self, slots: np.ndarray, names: Sequence[str | None]) -> None:
        """Recreate the open alerts of restored ``slots`` from their slabs (same ids)."""
        for slot in slots[self.slabs["active"][slots]]:
            start, name = float(self.slabs["alert_start"][slot]), names[int(slot)]
            top = [self.features[j] for j in self.slabs["alert_top"][slot] if j >= 0]
            peak = float(self.slabs["alert_peak"][slot])
            self.open[int(slot)] = AlertEvent(alert_id(name, start), name, start, None, peak, top)

    def _close(self, slot: int, end: float) -> AlertEvent:
        event = self.open.pop(slot)
        event.end = float(end)
        return event

    def _peak(self, slot: int, score: float, contrib: np.ndarray) -> None:
        event = self.open[slot]
        if score < event.peak_score:
            return
        event.peak_score = score
        top = [int(j) for j in np.argsort(-contrib, kind="stable")[: self.config.top_k]]
        top = [j for j in top if contrib[j] > 0]
        event.top_features = [self.features[j] for j in top]
        self.slabs["alert_peak"][slot] = score
        self.slabs["alert_top"][slot] = top + [-1] * (self.config.top_k - len(top))
