"""Per-stream state in preallocated slabs indexed by slot, and the stream-id → slot table.

Every per-stream quantity is one row of a slab: ``h, c (layers, slots, hidden)`` on the model's
device, and on the CPU the ring-buffer windows ``(slots, W, F)`` of raw readings, the stream's
scaler, the scorer's units, its pending forecast, its reading count and last timestamp. The hot
path gathers and scatters rows by slot index; no per-stream Python object exists.

The scaler feeds the model and belongs to it: a model swap or a restart under a new model
replaces it. The scorer's units (``unit_offset``, ``unit_scale`` over the targets) are the
scaler its statistics were learnt in: fixed when the stream is first primed, they stay through
model swaps, so that another model's scalers do not shift the errors the scorer has learnt.

Slabs grow by doubling (amortised, never a copy per step) up to ``max_streams``; past that the
least recently used stream is evicted, streams still in warm-up before primed ones. Snapshots
are ``.npz`` archives of plain arrays, read with ``allow_pickle=False``: a hostile snapshot
cannot run code.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from itertools import repeat
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from detector.errors import DataError

__all__ = ["StreamState", "SNAPSHOT_VERSION"]

SNAPSHOT_VERSION = 1
_CPU_SLABS = (
    "window",
    "pos",
    "seen",
    "offset",
    "scale",
    "forecast",
    "last_ts",
    "last_used",
    "fit_scaler",
    "unit_offset",
    "unit_scale",
    "units_fixed",
)
# Snapshots written before the scorer kept its own units lack these: their streams take their
# scaler as their units (see StreamState.restore).
_UNIT_SLABS = ("unit_offset", "unit_scale", "units_fixed")


class StreamState:
    """Slabs for up to ``max_streams`` streams of one model group.

    Parameters
    ----------
    layers, hidden:
        The LSTM's shape, for ``h`` and ``c``.
    n_inputs, n_targets:
        Features per reading (targets first) and how many are forecast.
    window:
        Readings kept per stream (the ring buffer), at least the model's timesteps.
    """

    def __init__(
        self,
        layers: int,
        hidden: int,
        n_inputs: int,
        n_targets: int,
        window: int,
        device: torch.device,
        capacity: int = 256,
        max_streams: int = 1_000_000,
    ) -> None:
        if not 1 <= capacity <= max_streams:
            raise ValueError(f"need 1 <= capacity ({capacity}) <= max_streams ({max_streams})")
        self.layers, self.hidden, self._ring_len = layers, hidden, window
        self.n_inputs, self.n_targets = n_inputs, n_targets
        self.device, self.max_streams = device, max_streams
        self.slot_of: dict[str, int] = {}
        self.names: list[str | None] = []
        self.free: list[int] = []
        self.capacity = 0
        self.tick = 0  # advances once per batch; orders streams by recency for LRU eviction
        self._allocate(capacity)

    # -- slabs -------------------------------------------------------------------------------
    def _allocate(self, capacity: int) -> None:
        """Grow every slab to ``capacity`` rows, keeping existing rows."""
        old = self.capacity
        grow = capacity - old
        W, F, T = self._ring_len, self.n_inputs, self.n_targets
        fresh = {
            "window": np.zeros((grow, W, F), np.float32),  # raw readings, ring buffer
            "pos": np.zeros(grow, np.int64),  # next write position in the ring
            "seen": np.zeros(grow, np.int64),  # readings consumed since (re)start
            "offset": np.zeros((grow, F), np.float64),  # scaler: scaled = (x - offset) / scale
            "scale": np.ones((grow, F), np.float64),
            "forecast": np.zeros((grow, T), np.float32),  # scaled forecast of the next reading
            "last_ts": np.full(grow, -np.inf),  # event time of the last accepted reading
            "last_used": np.zeros(grow, np.int64),  # batch tick, for LRU eviction
            "fit_scaler": np.zeros(grow, bool),  # unseen stream: fit its scaler when primed
            "unit_offset": np.zeros((grow, T), np.float64),  # the scorer's units: see above
            "unit_scale": np.ones((grow, T), np.float64),
            "units_fixed": np.zeros(grow, bool),  # set at the first prime
        }
        for name, rows in fresh.items():
            setattr(self, name, rows if old == 0 else np.concatenate([getattr(self, name), rows]))
        zeros = torch.zeros(self.layers, grow, self.hidden, device=self.device)
        self.h = zeros if old == 0 else torch.cat([self.h, zeros], dim=1)  # (L, S, H)
        self.c = zeros.clone() if old == 0 else torch.cat([self.c, zeros], dim=1)  # (L, S, H)
        self.names.extend([None] * grow)
        self.free.extend(range(capacity - 1, old - 1, -1))  # pop() hands out low slots first
        self.capacity = capacity

    def reset(self, slots: np.ndarray) -> None:
        """Return ``slots`` to the state of a stream never seen."""
        self.window[slots] = 0.0
        self.pos[slots] = 0
        self.seen[slots] = 0
        self.forecast[slots] = 0.0
        self.last_ts[slots] = -np.inf
        self.units_fixed[slots] = False
        idx = torch.as_tensor(slots, device=self.device)
        self.h[:, idx] = 0.0
        self.c[:, idx] = 0.0

    # -- slot table --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.slot_of)

    def slots_for(self, streams: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """The slot of each reading's stream ``(N,)``, assigning slots to unseen streams.

        ``streams`` may repeat. Returns the slots, the slots given to unseen streams (reset) and
        the ids evicted to make room for them. Every stream of the batch counts as just used.
        """
        self.tick += 1
        # map() runs the lookups in C: ~10x a generator's speed at thousands of readings.
        slots = np.fromiter(
            map(self.slot_of.get, streams, repeat(-1, len(streams))), np.int64, len(streams)
        )
        unseen = slots < 0
        self.last_used[slots[~unseen]] = self.tick  # protects them from eviction below
        if not unseen.any():
            return slots, slots[:0], []
        names = list(dict.fromkeys(streams[unseen].tolist()))  # distinct, first-seen order
        fresh, evicted = self._take_slots(len(names))
        for name, slot in zip(names, fresh.tolist(), strict=True):
            self.slot_of[name], self.names[slot] = slot, name
        self.last_used[fresh] = self.tick
        self.reset(fresh)
        slots[unseen] = np.fromiter(
            map(self.slot_of.__getitem__, streams[unseen]), np.int64, unseen.sum()
        )
        return slots, fresh, evicted

    def assign(self, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Slots for distinct ``names``; returns them, a mask of the new ones and the evicted."""
        slots, fresh, evicted = self.slots_for(np.array(names, dtype=object))
        return slots, np.isin(slots, fresh), evicted

    def _take_slots(self, n: int) -> tuple[np.ndarray, list[str]]:
        """``n`` free slots: growing the slabs while under ``max_streams``, then evicting the
        least recently used streams, never one the current batch touches. One pass over the
        recency slab per batch, not per stream, so a flood of new ids stays linear."""
        short = n - len(self.free)
        if short > 0 and self.capacity < self.max_streams:
            size = self.capacity
            while size - self.capacity + len(self.free) < n and size < self.max_streams:
                size = min(2 * size, self.max_streams)
            self._allocate(size)
            short = n - len(self.free)
        evicted: list[str] = []
        if short > 0:
            if short > self.capacity:
                raise DataError(f"one batch holds more than max_streams={self.max_streams} streams")
            # Streams still warming up go before primed ones, so a flood of new ids (a
            # cardinality attack) churns through itself instead of evicting established streams.
            recency = self.last_used + (self.seen >= self._ring_len) * (self.tick + 1)
            recency[self.last_used >= self.tick] = np.iinfo(np.int64).max  # this batch's
            recency[self.free] = np.iinfo(np.int64).max  # already free: not a victim
            victims = np.argpartition(recency, short - 1)[:short]
            if (recency[victims] == np.iinfo(np.int64).max).any():  # only this batch's left
                raise DataError(f"one batch holds more than max_streams={self.max_streams} streams")
            for slot in victims.tolist():
                name = self.names[slot]
                del self.slot_of[name]
                self.names[slot] = None
                evicted.append(name)
                self.free.append(slot)
        taken = [self.free.pop() for _ in range(n)]
        return np.array(taken, np.int64), evicted

    def evict(self, names: Sequence[str]) -> None:
        """Forget these streams and free their slots."""
        for name in names:
            slot = self.slot_of.pop(name, None)
            if slot is not None:
                self.names[slot] = None
                self.free.append(slot)

    def idle_streams(self, now: float, idle_s: float) -> list[str]:
        """Streams whose last reading is older than ``now - idle_s`` (event time)."""
        slots = np.fromiter(self.slot_of.values(), np.int64, len(self.slot_of))
        old = slots[self.last_ts[slots] < now - idle_s]
        return [self.names[s] for s in old]

    # -- window ------------------------------------------------------------------------------
    def push(self, slots: np.ndarray, x: np.ndarray) -> None:
        """Append one raw reading ``(B, F)`` to each slot's ring (slots distinct)."""
        self.window[slots, self.pos[slots] % self.window_len] = x
        self.pos[slots] += 1

    @property
    def window_len(self) -> int:
        return self._ring_len

    def recent(self, slots: np.ndarray, n: int) -> np.ndarray:
        """The last ``n`` readings of each slot, oldest first: ``(B, n, F)``."""
        steps = self.pos[slots, None] - n + np.arange(n)  # (B, n)
        return self.window[slots[:, None], steps % self.window_len]

    def fix_units(self, slots: np.ndarray) -> None:
        """Streams primed for the first time learn in their scaler's units from now on."""
        new = slots[~self.units_fixed[slots]]
        t = self.n_targets
        self.unit_offset[new] = self.offset[new, :t]
        self.unit_scale[new] = self.scale[new, :t]
        self.units_fixed[new] = True

    def bytes_per_stream(self) -> int:
        """Memory of one stream's state, all slabs included."""
        cpu = sum(getattr(self, k).nbytes for k in _CPU_SLABS) // self.capacity
        gpu = 2 * self.layers * self.hidden * self.h.element_size()
        return cpu + gpu

    # -- snapshot ----------------------------------------------------------------------------
    def snapshot(
        self,
        path: str | os.PathLike[str] | BinaryIO,
        extra: dict[str, np.ndarray] | None = None,
        names: Sequence[str] | None = None,
    ) -> Path | None:
        """Write the streams ``names`` (default: all) to ``path`` as ``.npz``.

        A path is written atomically (temp file + rename); a binary file object is written
        as is. ``extra`` adds arrays, one row per stream in sorted-name order.
        """
        names = sorted(self.slot_of if names is None else names)
        slots = np.array([self.slot_of[n] for n in names], np.int64)
        idx = torch.as_tensor(slots, device=self.device)
        arrays = {k: getattr(self, k)[slots] for k in _CPU_SLABS}
        arrays |= {
            "h": self.h[:, idx].cpu().numpy(),
            "c": self.c[:, idx].cpu().numpy(),
            "names": np.array(names, dtype=np.str_),
            "version": np.array(SNAPSHOT_VERSION),
            "shape": np.array(
                [self.layers, self.hidden, self.n_inputs, self.n_targets, self._ring_len]
            ),
        }
        arrays |= {f"extra_{k}": v for k, v in (extra or {}).items()}
        if hasattr(path, "write"):
            np.savez(path, **arrays)
            return None
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
        return path

    def restore(
        self, path: str | os.PathLike[str] | BinaryIO
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Load a snapshot (path or binary file object) into this state; returns the slots of
        the restored streams, in the snapshot's order, and its ``extra`` arrays."""
        arrays = _read_snapshot(path)
        expect = [self.layers, self.hidden, self.n_inputs, self.n_targets, self._ring_len]
        if arrays["shape"].tolist() != expect:
            raise DataError(f"{path}: snapshot shape {arrays['shape'].tolist()} != state {expect}")
        names = [str(n) for n in arrays["names"]]
        if len(names) > self.max_streams:  # assign() would fail half-way through
            raise DataError(
                f"{path}: {len(names)} streams, more than max_streams={self.max_streams}"
            )
        slots, _, _ = self.assign(names)
        if "units_fixed" not in arrays:  # older: the statistics were learnt in the scaler's units
            t = self.n_targets
            arrays |= {"unit_offset": arrays["offset"][:, :t], "unit_scale": arrays["scale"][:, :t]}
            arrays["units_fixed"] = ~arrays["fit_scaler"].astype(bool)
        for k in _CPU_SLABS:
            getattr(self, k)[slots] = arrays[k]
        # Recency is counted in this process's batches: the snapshot's ticks came from another.
        self.last_used[slots] = self.tick
        idx = torch.as_tensor(slots, device=self.device)
        self.h[:, idx] = torch.from_numpy(arrays["h"]).to(self.device)
        self.c[:, idx] = torch.from_numpy(arrays["c"]).to(self.device)
        extra = {k[len("extra_") :]: v for k, v in arrays.items() if k.startswith("extra_")}
        return slots, extra


def _read_snapshot(path: str | os.PathLike[str] | BinaryIO) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise DataError(f"{path}: no such snapshot") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable state snapshot ({type(exc).__name__})") from None
    required = [k for k in _CPU_SLABS if k not in _UNIT_SLABS]
    missing = [k for k in (*required, "h", "c", "names", "version", "shape") if k not in arrays]
    if any(k in arrays for k in _UNIT_SLABS) and not all(k in arrays for k in _UNIT_SLABS):
        missing += [k for k in _UNIT_SLABS if k not in arrays]
    if missing:
        raise DataError(f"{path}: not a state snapshot (missing {missing})")
    version = arrays["version"]
    if version.shape != () or version.dtype.kind not in "iu" or int(version) != SNAPSHOT_VERSION:
        raise DataError(
            f"{path}: snapshot version {version.tolist()!r:.40}, expected {SNAPSHOT_VERSION}"
        )
    if arrays["shape"].shape != (5,) or arrays["shape"].dtype.kind not in "iu":
        raise DataError(f"{path}: not a state snapshot (bad shape record)")
    if problem := _damage(arrays):
        raise DataError(f"{path}: damaged state snapshot ({problem})")
    return arrays


def _damage(a: dict[str, np.ndarray]) -> str | None:
    """What is wrong with a snapshot's arrays, checked before any of them is applied."""
    L, H, F, T, W = (int(v) for v in a["shape"])
    names = a["names"]
    if names.ndim != 1 or names.dtype.kind != "U":
        return "names must be a 1-D array of strings"
    n = len(names)
    if len(set(names.tolist())) != n or any(not s for s in names.tolist()):
        return "stream names must be distinct and non-empty"
    want = {"window": (n, W, F), "pos": (n,), "seen": (n,), "offset": (n, F), "scale": (n, F)}
    want |= {"forecast": (n, T), "last_ts": (n,), "last_used": (n,), "fit_scaler": (n,)}
    want |= {"h": (L, n, H), "c": (L, n, H)}
    if "units_fixed" in a:
        want |= {"unit_offset": (n, T), "unit_scale": (n, T), "units_fixed": (n,)}
    for k, shape in want.items():
        if a[k].shape != shape or a[k].dtype.kind not in "biuf":
            return f"{k} is {a[k].dtype} {a[k].shape}, expected numbers of shape {shape}"
    for k in ("window", "offset", "scale", "forecast", "h", "c", *_UNIT_SLABS[:2]):
        if k in a and not np.isfinite(a[k]).all():
            return f"{k} holds NaN or infinity"
    if not (a["scale"] > 0).all() or not (a.get("unit_scale", a["scale"]) > 0).all():
        return "scale or unit_scale not positive"
    if np.isnan(a["last_ts"]).any() or (a["pos"] < 0).any():
        return "last_ts or pos out of range"
    for k, v in a.items():
        if k.startswith("extra_") and (v.dtype.kind not in "biuf" or v.ndim < 1 or len(v) != n):
            return f"{k} is {v.dtype} {v.shape}, expected {n} rows of numbers"
    return None
