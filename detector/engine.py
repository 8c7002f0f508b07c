"""The one pipeline every entry point shares: readings in, scores and alerts out.

For a batch of decoded readings (any mix of streams, in arrival order) the engine groups them by
stream and applies them in **waves**: wave k holds the k-th reading of every stream in the batch,
so order within a stream holds while each wave is a handful of array operations over all its
streams. Per wave:

1. reject readings whose timestamp does not advance (duplicate or out of order) or is NaN or
   infinite; a value that is infinite or beyond float32 range counts as missing (see
   docs/input-handling.md);
2. compare each reading with the forecast made one step earlier (**forecast before observe**)
   and score the error; impute missing values from that forecast;
3. step the model one reading (one batched call), keep the new forecast and state;
4. advance each stream's alert state machine.

**Warm-up.** A new stream's first ``timesteps`` readings (the model's training window) only fill
its window and score 0 (neutral). At the ``timesteps``-th reading the stream is primed: the model
reads the window from a zero state, exactly as in training, and forecasts the next reading; an
unseen stream of a per-stream checkpoint first fits its own scaler on that window. The scorer then
needs ``ScorerConfig.warmup`` more readings before scores leave neutral: a stream scores from its
``timesteps + warmup + 1``-th reading on. A gap longer than ``gap_s`` restarts the warm-up.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from detector import native
from detector.alerts import AlertConfig, AlertEvent, AlertTracker
from detector.calendar import calendar_features, pinned
from detector.checkpoint import Checkpoint
from detector.device import resolve_device
from detector.errors import ConfigError, DataError, DetectorError
from detector.fused_step import step_kernel
from detector.level_tail import tail_mismatch
from detector.scaling import Scaler
from detector.scoring import ScorerConfig, make_scorer
from detector.slabs import as_run, rows
from detector.state import StreamState

log = logging.getLogger(__name__)

__all__ = ["EngineConfig", "BatchResult", "Engine", "STATUS"]

# code -> reason, per reading; bad_timestamp (NaN or infinite) shares the decoder's reason name
STATUS = ("scored", "duplicate_timestamp", "out_of_order", "bad_timestamp")
# Values beyond float32 range cannot be kept in the windows; the engine treats them as missing.
_F32_MAX = float(np.finfo(np.float32).max)
# Model inputs are clipped to this many scaled units: every gate is saturated long before, and a
# larger value could overflow float32 in the LSTM's matmuls and leave NaN in the hidden state.
_Z_MAX = 1e6
_OVERLAP_MIN_STREAMS = 256  # below this a wave steps inline: a thread hand-off costs ~50 us
# A wave scores in blocks only from this many readings: each block pays the scorer's fixed
# Python cost (about 0.45 ms a call for 8 targets, on the 2-core machine; 4,096 readings take
# 5 ms), which a block of a few hundred readings would not earn back.
_BLOCK_MIN_READINGS = 4096


def _done() -> None:
    """The wait of a step that already finished."""


@dataclass(frozen=True)
class EngineConfig:
    scorer: ScorerConfig = field(default_factory=ScorerConfig)
    alerts: AlertConfig = field(default_factory=AlertConfig)
    window: int | None = None  # readings kept per stream; None = the model's timesteps + 1
    capacity: int = 256  # initial slots; doubles as streams arrive
    max_streams: int = 1_000_000  # past this the least recently used stream is evicted
    gap_s: float | None = None  # event-time gap that restarts a stream's warm-up
    idle_s: float | None = None  # a stream silent this long (event time) is forgotten
    missing_score: float = 1.0  # score of a primed reading whose targets are all missing
    device: str = "auto"
    # Threads that score a large wave in blocks of streams (the scorer's state is per stream):
    # 0 = auto, which is up to 8 of the host's other cores when the model steps on a GPU and 1
    # on CPU, where the step thread already takes the second core of a small machine.
    score_threads: int = 0


@dataclass
class BatchResult:
    """Per reading, in input order; and the alerts opened and closed by the batch."""

    stream: np.ndarray  # (N,) stream ids
    timestamp: np.ndarray  # (N,) event times
    status: np.ndarray  # (N,) uint8 index into STATUS; 0 = scored
    error: np.ndarray  # (N,) RMS forecast error over present targets, scaled units; NaN in warm-up
    forecast: np.ndarray  # (N, n_targets) the forecast of this reading, original units
    score: np.ndarray  # (N,) in [0, 1]; 0 (neutral) during warm-up
    onset: np.ndarray  # (N,) the score where it starts an anomaly episode, else 0 (see alerts)
    alert_id: np.ndarray  # (N,) id of the alert the reading belongs to, "" if none
    top_features: np.ndarray  # (N,) "a;b" for readings in an alert, "" otherwise
    opened: list[AlertEvent] = field(default_factory=list)
    closed: list[AlertEvent] = field(default_factory=list)

    @property
    def alert(self) -> np.ndarray:
        return self.alert_id != ""


_WHOLE = slice(None)  # the one wave of a batch with one reading per stream


def _score_threads(asked: int, device: torch.device) -> int:
    """Threads that score a wave: ``asked``, or for 0 the default (see EngineConfig)."""
    if asked < 0:
        raise ConfigError(f"score_threads must be >= 0 (0 = auto), got {asked}")
    if asked:
        return asked
    if device.type != "cuda":
        return 1
    return max(1, min(8, len(os.sched_getaffinity(0)) - 1))


def _waves(slots: np.ndarray) -> list[np.ndarray | slice]:
    """Split a batch into waves of distinct slots: wave k holds each stream's k-th reading, in
    arrival order. The common batch (one reading per stream) is one wave, ``_WHOLE``, found
    without a sort."""
    n = len(slots)
    by_slot = np.argsort(slots, kind="stable")  # each stream's readings, in arrival order
    grouped = slots[by_slot]
    first = np.ones(n, bool)
    first[1:] = grouped[1:] != grouped[:-1]
    if first.all():
        return [_WHOLE]
    rank = np.empty(n, np.int64)
    rank[by_slot] = np.arange(n) - np.maximum.accumulate(np.where(first, np.arange(n), 0))
    order = np.lexsort((np.arange(n), rank))  # wave 0 first; arrival order within a wave
    starts = np.searchsorted(rank[order], np.arange(rank.max() + 2))
    return [order[a:b] for a, b in zip(starts[:-1], starts[1:], strict=True)]


def _saturated(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``values`` for a slab of ``dtype``: integers beyond its range saturate at its ends.

    Slabs have narrowed between versions (int64 counters to int32); a plain assignment would
    wrap an old snapshot's large count around to a negative one.
    """
    if dtype.kind not in "iu" or values.dtype.kind not in "iu":
        return values
    info = np.iinfo(dtype)
    return np.clip(values, info.min, info.max)


class Engine:
    """Scores readings of many streams with one model; see the module docstring."""

    native = True  # per-reading scaling in detector.native's C loops where built (False: NumPy)

    def __init__(
        self,
        ckpt: Checkpoint,
        config: EngineConfig | None = None,
        model: torch.nn.Module | None = None,
    ) -> None:
        self.config = config = config or EngineConfig()
        self.ckpt = ckpt
        self.device = resolve_device(config.device)
        self.model = (model or ckpt.model).to(self.device).eval()
        self._kernel = step_kernel(self.model)
        # CPU: one thread that runs the model step while the caller scores (see _launch_step).
        self._step_thread = (
            ThreadPoolExecutor(1, thread_name_prefix="detector-step")
            if self.device.type == "cpu"
            else None
        )
        self._pinned = torch.empty(0)  # CUDA: staging for host-to-device copies
        self.score_threads = _score_threads(config.score_threads, self.device)
        # The calling thread scores one block itself; the pool, the others.
        self._score_pool = (
            ThreadPoolExecutor(self.score_threads - 1, thread_name_prefix="detector-score")
            if self.score_threads > 1
            else None
        )
        self.n_targets = len(ckpt.targets)
        self.timesteps = int(ckpt.train_config["timesteps"])
        a = ckpt.model.args
        # One more than the model reads, so a window is also a training pair (fine-tuning).
        window = max(config.window or self.timesteps + 1, self.timesteps)
        self.state = StreamState(
            self.model.args.layers,
            self.model.args.hidden,
            a.n_inputs,
            a.n_targets,
            window,
            self.device,
            config.capacity,
            config.max_streams,
        )
        error_std = ckpt.metrics.get("validation", {}).get("residual_std_scaled")
        error_std = np.ones(self.n_targets) if error_std is None else np.asarray(error_std)
        repeat_rate = ckpt.metrics.get("training", {}).get("repeat_rate")
        self.scorer = make_scorer(config.scorer, error_std, self.state.capacity, repeat_rate)
        self._tails_checked: object = None  # the level tails last checked against the scorer
        self._level_tails()  # a mismatch is said at start, not at the first stream
        self.alerts = AlertTracker(config.alerts, ckpt.targets, self.state.capacity)
        self.evicted = 0  # streams forgotten so far: over the cap, idle, or handed away

    # -- public --------------------------------------------------------------------------------
    @torch.inference_mode()
    def process(
        self, streams: Sequence[str] | np.ndarray, timestamps: np.ndarray, values: np.ndarray
    ) -> BatchResult:
        """Score a batch: ``streams (N,)``, ``timestamps (N,)`` epoch s, ``values (N, F)`` raw."""
        streams = np.asarray(streams, dtype=object)
        ts = np.asarray(timestamps, np.float64)
        x = np.asarray(values, np.float64)
        width = len(self.ckpt.inputs)  # the data's columns; calendar phases are added below
        if streams.shape != ts.shape or x.shape != (len(ts), width):
            raise ValueError(  # before any state changes; the decoders never let this through
                f"need streams (N,), timestamps (N,), values (N, {width}); got "
                f"{streams.shape}, {ts.shape}, {x.shape}"
            )
        # Two reductions that skip NaN and allocate nothing (wide batches are tens of MB); only
        # a batch that has a value beyond float32 (+-inf included) pays for the mask.
        if x.size and (
            np.fmax.reduce(x, axis=None) > _F32_MAX or np.fmin.reduce(x, axis=None) < -_F32_MAX
        ):
            x = np.where(np.abs(x) > _F32_MAX, np.nan, x)  # a copy: the caller's is left alone
        if self.ckpt.calendar:  # the model reads each reading's calendar phases after its data
            x = np.hstack([x, calendar_features(ts, self.ckpt.calendar)])
        n = len(ts)
        res = BatchResult(
            stream=streams,
            timestamp=ts,
            status=np.zeros(n, np.uint8),
            error=np.full(n, np.nan),
            forecast=np.full((n, self.n_targets), np.nan),
            score=np.zeros(n),
            onset=np.zeros(n),
            alert_id=np.full(n, "", dtype=object),
            top_features=np.full(n, "", dtype=object),
        )
        if n == 0:
            return res
        finite = np.isfinite(ts)
        if self.config.idle_s is not None and finite.any():
            self.forget(self.state.idle_streams(float(ts[finite].max()), self.config.idle_s))
        slots = self._slots(streams)  # (N,)
        waves = _waves(slots)
        if len(waves) == 1 and waves[0] is _WHOLE:  # the batch as it is: no copies
            self._wave(res, np.arange(n), slots, ts, x)
            return res
        for idx in waves:
            self._wave(res, idx, slots[idx], ts[idx], x[idx])
        return res

    # -- model swap ----------------------------------------------------------------------------
    def swap_model(self, ckpt: Checkpoint, model: torch.nn.Module | None = None) -> int:
        """Serve ``ckpt`` from now on, without a restart; returns the streams re-primed.

        Every stream whose window holds the new model's ``timesteps`` readings gets a fresh hidden
        state and forecast by reading that window (as in training); the others finish their
        warm-up under the new model. Streams the new checkpoint was trained on take its scalers
        for the model's input; the scorer keeps reading errors in the units it learnt them in.
        """
        if (
            ckpt.inputs != self.ckpt.inputs
            or ckpt.targets != self.ckpt.targets
            or ckpt.calendar != self.ckpt.calendar
        ):
            raise DetectorError(
                f"new model reads {ckpt.inputs} -> {ckpt.targets} (calendar "
                f"{list(ckpt.calendar)}), the running one {self.ckpt.inputs} -> "
                f"{self.ckpt.targets} (calendar {list(self.ckpt.calendar)}); restart instead"
            )
        timesteps = int(ckpt.train_config["timesteps"])
        st = self.state
        if timesteps > st.window_len:
            raise DetectorError(
                f"new model reads {timesteps} readings, windows keep "
                f"{st.window_len}; raise engine.window and restart"
            )
        self.ckpt, self.timesteps = ckpt, timesteps
        self.model = (model or ckpt.model).to(self.device).eval()
        self._kernel = step_kernel(self.model)
        st.layers, st.hidden = self.model.args.layers, self.model.args.hidden
        st.h = torch.zeros(st.layers, st.capacity, st.hidden, device=self.device)
        st.c = torch.zeros_like(st.h)
        names = list(st.slot_of)
        slots = np.array([st.slot_of[n] for n in names], np.int64)
        self._adopt_scalers(slots, names)
        self._init_tails(slots, names)
        ready = slots[st.seen[slots] >= timesteps] if len(slots) else slots
        if len(ready):
            with torch.inference_mode():
                self._prime(ready)
        return len(ready)

    # -- snapshot ------------------------------------------------------------------------------
    def snapshot(
        self, path: str | os.PathLike[str] | BinaryIO, names: Sequence[str] | None = None
    ) -> Path | None:
        """Save streams' state (model state, window, scorer and alert state): all streams, or
        ``names``; to a path (atomically) or a binary file object."""
        names = sorted(self.state.slot_of if names is None else names)
        slots = np.array([self.state.slot_of[n] for n in names], np.int64)
        extra = {
            f"{prefix}{k}": v[slots]
            for prefix, owner in (("scorer_", self.scorer), ("alerts_", self.alerts))
            for k, v in owner.slabs.items()
            if k not in owner.from_model  # the model's, set again on restore
        }
        return self.state.snapshot(path, extra, names)

    def snapshot_bytes(self, names: Sequence[str] | None = None) -> bytes:
        buf = io.BytesIO()
        self.snapshot(buf, names)
        return buf.getvalue()

    def forget(self, names: Sequence[str]) -> None:
        """Drop these streams (e.g. their partition moved to another worker)."""
        slots = np.array([self.state.slot_of[n] for n in names if n in self.state.slot_of])
        if len(slots):
            self.alerts.reset(slots)
        self.evicted += len(slots)
        self.state.evict(names)

    def restore(self, path: str | os.PathLike[str] | BinaryIO) -> list[str]:
        """Load a snapshot written by :meth:`snapshot`; returns the streams restored."""
        slots, extra = self.state.restore(path)
        self._sync_capacity()
        for prefix, owner in (("scorer_", self.scorer), ("alerts_", self.alerts)):
            later = [
                k
                for k in owner.added_later | owner.from_model
                if k in owner.slabs and prefix + k not in extra
            ]
            if later:  # an older snapshot, or the model's slabs: fresh, or as learnt
                # every slab the snapshot has, those since renamed or reshaped included
                have = {k[len(prefix) :]: v for k, v in extra.items() if k.startswith(prefix)}
                rows = owner.upgraded(later, have, len(slots))
                extra |= {prefix + k: v for k, v in rows.items()}
            for k, slab in owner.slabs.items():
                got = extra.get(prefix + k)
                if got is None or got.shape[1:] != slab.shape[1:]:
                    self.forget([self.state.names[s] for s in slots])  # nothing half-restored
                    raise DataError(
                        f"{path}: snapshot lacks {prefix + k} of shape {slab.shape[1:]}; "
                        "other scorer or version?"
                    )
        for prefix, owner in (("scorer_", self.scorer), ("alerts_", self.alerts)):
            for k, slab in owner.slabs.items():
                slab[slots] = _saturated(extra[prefix + k], slab.dtype)
        names = [self.state.names[s] for s in slots.tolist()]
        self._adopt_scalers(slots, names)  # the snapshot's may be another model's
        self._init_tails(slots, names)
        self.alerts.rebuild_open(slots, self.state.names)
        return [self.state.names[s] for s in slots]

    @property
    def kernel(self) -> str:
        """What runs the model step: ``native step``, ``native cell``, ``eager`` (see
        :class:`detector.fused_step.FusedStep`) or ``module`` (another model's own ``step``)."""
        return getattr(self._kernel, "kernel", "module")

    def bytes_per_stream(self) -> int:
        """Slab memory of one stream: model state, window, scaler, scorer and alert state."""
        slabs = sum(v.nbytes for o in (self.scorer, self.alerts) for v in o.slabs.values())
        return self.state.bytes_per_stream() + slabs // self.scorer.capacity

    def _sync_capacity(self) -> None:
        if self.state.capacity > self.scorer.capacity:
            self.scorer.grow(self.state.capacity)
            self.alerts.grow(self.state.capacity)

    # -- slots ---------------------------------------------------------------------------------
    def _slots(self, streams: np.ndarray) -> np.ndarray:
        slots, fresh, evicted = self.state.slots_for(streams)
        self.evicted += len(evicted)
        self._sync_capacity()
        if len(fresh):
            self.scorer.reset(fresh)
            self.alerts.reset(fresh)
            names = [self.state.names[s] for s in fresh.tolist()]
            self._init_scalers(fresh, names)
            self._init_tails(fresh, names)
        return slots

    def _init_scalers(self, slots: np.ndarray, names: list[str]) -> None:
        ckpt, st = self.ckpt, self.state
        scalers = [ckpt.scaler_for(n) for n in names]
        st.offset[slots] = np.stack([s.offset for s in scalers])
        st.scale[slots] = np.stack([s.scale for s in scalers])
        per_stream = ckpt.scaling_mode == "per_stream"
        st.fit_scaler[slots] = [per_stream and n not in ckpt.stream_scalers for n in names]

    def _adopt_scalers(self, slots: np.ndarray, names: list[str]) -> None:
        """Streams the running checkpoint was trained on take its scalers; the others keep the
        ones they have (fitted on their own readings, or still to be)."""
        ckpt = self.ckpt
        known = [n in ckpt.stream_scalers or ckpt.scaling_mode == "global" for n in names]
        if any(known):
            self._init_scalers(slots[known], [n for n, k in zip(names, known, strict=True) if k])

    def _level_tails(self) -> dict | None:
        """The running checkpoint's level tails, where the scorer reads them (else None); says
        once per checkpoint when they were fitted under other settings than the scorer's."""
        tails = self.ckpt.metrics.get("training", {}).get("level_tail")
        if tails is None or "level_tail_rate" not in self.scorer.slabs:
            return None
        if self._tails_checked is not tails:
            self._tails_checked = tails
            mismatch = tail_mismatch(tails, self.scorer.config)
            if mismatch:
                log.warning("%s", mismatch)
        return tails

    def _init_tails(self, slots: np.ndarray, names: list[str]) -> None:
        """The level test's tail fitted on each stream's training rows, or the pooled one for a
        stream the model was not trained on (see detector.level_tail). It belongs to the model,
        not to what a stream has learnt, so it is set from the running checkpoint on every
        start, swap and restore; a checkpoint without tails leaves the Gaussian's."""
        tails = self._level_tails()
        if tails is None or not len(slots):
            return
        fitted = np.array([tails["streams"].get(n, tails["pooled"]) for n in names])
        self.scorer.slabs["level_tail_rate"][slots] = fitted[:, 0]
        self.scorer.slabs["level_tail_excess"][slots] = fitted[:, 1]

    # -- one wave ------------------------------------------------------------------------------
    def _wave(
        self, res: BatchResult, idx: np.ndarray, slots: np.ndarray, ts: np.ndarray, x: np.ndarray
    ) -> None:
        st = self.state
        last = st.last_ts[slots]
        ok = ts > last
        bad = ~np.isfinite(ts)  # +inf would pass as "later" and block the stream for good
        if bad.any():
            ok &= ~bad
        if not ok.all():
            res.status[idx[ts == last]] = 1
            res.status[idx[ts < last]] = 2
            res.status[idx[bad]] = 3
            idx, slots, ts, x = idx[ok], slots[ok], ts[ok], x[ok]
            if not len(idx):
                return
        if self.config.gap_s is not None:
            gap = (ts - last[ok] > self.config.gap_s) & (st.seen[slots] > 0)
            st.seen[slots[gap]] = 0
        st.last_ts[slots] = ts

        # Steady state (every stream primed) takes the whole wave without masking copies.
        seen = st.seen[slots]
        primed = seen >= self.timesteps
        every = primed.all()
        # The model steps the primed streams while this thread scores the wave: the scores need
        # only the forecasts made one reading earlier, the step only the imputed readings. With
        # nothing to impute the step starts first, so that it overlaps everything below.
        finish_step = None
        # NaN if any value is missing (the values are finite or NaN by now, and their sum cannot
        # overflow float64): one pass, no (B, F) mask.
        if every and not np.isnan(np.add.reduce(x, axis=None)):
            pending = st.forecast[slots]  # a copy: the step overwrites the slab
            finish_step = self._launch_step(slots, x)
            forecast = self._unscale(slots, pending)  # (B, n_targets) original units
            x_in = x
        elif every:
            forecast = self._unscale(slots, st.forecast[slots])
            x_in = self._impute(slots, x, forecast)
            finish_step = self._launch_step(slots, x_in)
        else:
            forecast = np.full((len(idx), self.n_targets), np.nan)
            forecast[primed] = self._unscale(slots[primed], st.forecast[slots[primed]])
            x_in = self._impute(slots, x, forecast)
        st.push(slots, x_in)
        st.seen[slots] = seen + 1
        if every:
            score, contrib = self._score(res, idx, slots, x, forecast)
        else:
            if primed.any():
                finish_step = self._launch_step(slots[primed], x_in[primed])
            score = np.zeros(len(idx))
            contrib = np.zeros((len(idx), self.n_targets))
            if primed.any():
                score[primed], contrib[primed] = self._score(
                    res, idx[primed], slots[primed], x[primed], forecast[primed]
                )
        ids, opened, closed = self.alerts.update(slots, st.names, ts, score, contrib)
        res.score[idx] = score
        res.onset[idx] = self.alerts.slabs["onset"][slots]
        res.alert_id[idx] = ids
        for i in np.flatnonzero(ids != ""):
            top = np.argsort(-contrib[i], kind="stable")[: self.config.alerts.top_k]
            res.top_features[idx[i]] = ";".join(
                self.ckpt.targets[j] for j in top if contrib[i, j] > 0
            )
        res.opened += opened
        res.closed += closed
        if finish_step is not None:
            finish_step()
        just = seen + 1 == self.timesteps
        if just.any():
            self._prime(slots[just])

    def _score(
        self,
        res: BatchResult,
        idx: np.ndarray,
        slots: np.ndarray,
        x: np.ndarray,
        forecast: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        st, t, run = self.state, self.n_targets, rows(slots)  # `run` to read the slabs
        # In the scorer's units, which a model swap leaves alone (see detector.state).
        offset, unit = st.unit_offset, st.unit_scale
        fast = native.errors(x, forecast, offset, unit, run) if self.native else None
        if fast is not None:
            err, level = fast
        else:
            scale = unit[run]
            err = np.subtract(x[:, :t], forecast)
            err /= scale
            level = np.subtract(x[:, :t], offset[run])
            level /= scale
        score, contrib = self._scored(slots, err, level)
        whole = len(idx) == len(res.score)  # the batch's only wave: arange, so no scatter
        if whole:
            res.forecast = forecast
        else:
            res.forecast[idx] = forecast
        # A NaN sum says some error is missing (or infinite): one pass instead of a (B, T) mask.
        if np.isnan(np.add.reduce(err, axis=None)):
            missing = np.isnan(err)
            present = t - missing.sum(axis=1)
            score[present == 0] = self.config.missing_score
            sq = np.nansum(np.square(err), axis=1)
            error = np.where(present > 0, np.sqrt(sq / np.maximum(present, 1)), np.nan)
        else:
            error = np.sqrt(np.einsum("ij,ij->i", err, err) / t)
        if whole:
            res.error = error
        else:
            res.error[idx] = error
        return score, contrib

    def _scored(
        self, slots: np.ndarray, err: np.ndarray, level: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The scorer on the wave, in blocks of streams on the score threads when it is large.

        Every statistic the scorer keeps is a row of its slabs, and a wave's slots are distinct,
        so blocks read and write disjoint rows: the scores are the ones a single call gives. The
        C passes run without the GIL and NumPy releases it for large arrays, so blocks overlap.
        """
        n, pool = len(slots), self._score_pool
        if pool is None or n < _BLOCK_MIN_READINGS:
            return self.scorer.score(slots, err, level)
        cut = np.linspace(0, n, self.score_threads + 1).astype(int)
        blocks = list(zip(cut[:-1], cut[1:], strict=True))

        def block(a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
            return self.scorer.score(slots[a:b], err[a:b], level[a:b])

        others = [pool.submit(block, a, b) for a, b in blocks[1:]]
        parts = [block(*blocks[0])] + [f.result() for f in others]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _impute(self, slots: np.ndarray, x: np.ndarray, forecast: np.ndarray) -> np.ndarray:
        """Missing values: the forecast for primed targets, else the stream's last value, else 0."""
        missing = np.isnan(x)
        if not missing.any():
            return x
        t = self.n_targets
        fill = self.state.recent(slots, 1)[:, 0].astype(np.float64)  # last pushed reading
        fill[self.state.seen[slots] == 0] = 0.0
        fill[:, :t] = np.where(np.isnan(forecast), fill[:, :t], forecast)
        return np.where(missing, fill, x)

    def _scaled(self, slots: np.ndarray, raw: np.ndarray) -> torch.Tensor:
        st, slots = self.state, rows(slots)  # read only
        if raw.ndim == 2 and self.native:
            z = native.scale_rows(raw, st.offset, st.scale, slots, _Z_MAX)
            if z is not None:
                return self._to_device(z)
        if raw.ndim == 3:
            z = np.subtract(raw, st.offset[slots, None])
            z /= st.scale[slots, None]
        else:
            z = np.subtract(raw, st.offset[slots])
            z /= st.scale[slots]
        np.clip(z, -_Z_MAX, _Z_MAX, out=z)
        return self._to_device(z.astype(np.float32))

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        """CPU: a view. CUDA: through a reused pinned buffer with a non-blocking copy; every use
        is followed by reading a forecast back (a sync) before the buffer is written again."""
        t = torch.from_numpy(array)
        if self.device.type != "cuda":
            return t
        if self._pinned.numel() < t.numel():
            self._pinned = torch.empty(max(t.numel(), 2 * self._pinned.numel()), pin_memory=True)
        staged = self._pinned[: t.numel()].view(t.shape)
        staged.copy_(t)
        return staged.to(self.device, non_blocking=True)

    def _unscale(self, slots: np.ndarray, scaled: np.ndarray) -> np.ndarray:
        t, st, slots = self.n_targets, self.state, rows(slots)  # read only
        if self.native:
            out = native.unscale_rows(scaled, st.offset, st.scale, slots)
            if out is not None:
                return out
        out = scaled.astype(np.float64)
        out *= st.scale[slots, :t]
        out += st.offset[slots, :t]
        return out

    def _launch_step(self, slots: np.ndarray, x_raw: np.ndarray) -> Callable[[], None]:
        """Start stepping ``slots`` with readings ``x_raw``; returns the call that waits for it.

        On CUDA the kernels run asynchronously and the wait is the forecast's copy back; on CPU a
        large wave steps on the engine's step thread (torch releases the GIL), a small one at
        once, since handing it over would cost more than it hides.
        """
        x = self._scaled(slots, x_raw)
        if self._step_thread is not None and len(slots) >= _OVERLAP_MIN_STREAMS:
            return self._step_thread.submit(self._step, slots, x).result
        self._step(slots, x)
        return _done

    def _step(self, slots: np.ndarray, x: torch.Tensor) -> None:
        st = self.state
        with torch.inference_mode():  # per thread: the step thread needs its own
            run = as_run(slots)
            if run is not None:  # a fleet in steady state: its slots in order, no gather
                forecast = self._kernel(x, st.h[:, run], st.c[:, run])  # views, in place
                st.forecast[run] = forecast.cpu().numpy()
                return
            idx = torch.as_tensor(slots, device=self.device)
            h, c = st.h.index_select(1, idx), st.c.index_select(1, idx)  # (L, B, H), copies
            forecast = self._kernel(x, h, c)  # updates h, c in place
            st.h.index_copy_(1, idx, h)
            st.c.index_copy_(1, idx, c)
            st.forecast[slots] = forecast.cpu().numpy()

    def _prime(self, slots: np.ndarray) -> None:
        """Read each slot's last ``timesteps`` readings from a zero state (as in training)."""
        st = self.state
        window = st.recent(slots, self.timesteps).astype(np.float64)  # (B, T, F)
        fit = st.fit_scaler[slots]
        if fit.any():
            kind = self.ckpt.default_scaler.kind
            phases = 2 * len(self.ckpt.calendar)  # exact already: a few hours must not stretch them
            for k in np.flatnonzero(fit):  # once per unseen stream, not per reading
                s = pinned(Scaler.fit(window[k], kind), phases)
                st.offset[slots[k]], st.scale[slots[k]] = s.offset, s.scale
            st.fit_scaler[slots[fit]] = False
        st.fix_units(slots)
        forecast, (h, c) = self.model.prime(self._scaled(slots, window))
        idx = torch.as_tensor(slots, device=self.device)
        st.h.index_copy_(1, idx, h)
        st.c.index_copy_(1, idx, c)
        st.forecast[slots] = forecast.cpu().numpy()
