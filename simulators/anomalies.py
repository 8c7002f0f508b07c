"""Labelled anomalies: where they go, what they touched, and how they are recorded.

The injectors themselves live in :mod:`simulators.injectors`; this module places them in a
stream (non-overlapping, clear of the clean start), applies them and labels the rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from detector.errors import ConfigError
from simulators.injectors import INJECTORS, SENSOR_KINDS, VIDEO_KINDS, Injector, Scale

__all__ = [
    "AnomalySpec",
    "Scale",
    "Injector",
    "SENSOR_KINDS",
    "VIDEO_KINDS",
    "INJECTORS",
    "DURATIONS",
    "CLEAN_FRACTION",
    "iso_utc",
    "validate_kinds",
    "place_anomalies",
    "inject_anomalies",
]

# The first 20% of every stream stays clean, so a detector can train on a stream's own start.
CLEAN_FRACTION = 0.2


def iso_utc(t: float) -> str:
    """Format epoch seconds as ISO-8601 UTC with a ``Z`` (the labelled CSV's timestamp form)."""
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class AnomalySpec:
    """One injected anomaly: rows ``[start_index, end_index)`` of ``stream``.

    ``start`` and ``end`` are the epoch times of the first and the last anomalous row (inclusive,
    like NAB windows); ``features`` are the columns it touched.
    """

    stream: str
    kind: str
    start_index: int
    end_index: int
    start: float
    end: float
    features: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form: ISO-8601 times, indices, and the feature list."""
        return {
            "stream": self.stream,
            "kind": self.kind,
            "start_index": self.start_index,
            "end_index": self.end_index,
            "start": iso_utc(self.start),
            "end": iso_utc(self.end),
            "features": list(self.features),
        }


# (shortest, longest) rows per kind; a spike is a glitch, a drift needs time to build up.
DURATIONS: dict[str, tuple[int, int]] = {
    "spike": (1, 3),
    "level_shift": (30, 120),
    "drift": (60, 200),
    "stuck": (30, 120),
    "noise_burst": (20, 80),
    "correlation_break": (60, 200),
    "dropout": (10, 60),
    "scene_cut": (20, 120),
    "occlusion": (20, 120),
    "frozen_frame": (10, 60),
    "unusual_activity": (20, 100),
}

# Video anomalies change the whole frame, so they touch every embedding column.
_WHOLE_ROW = frozenset(VIDEO_KINDS)
# A correlation break is one channel leaving the others; more would just be a new regime.
_ONE_CHANNEL = frozenset({"correlation_break"})


def validate_kinds(kinds: Sequence[str], allowed: Sequence[str]) -> tuple[str, ...]:
    """Return ``kinds`` as a tuple, or raise :class:`ConfigError` listing the valid ones."""
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in allowed]
    if unknown:
        raise ConfigError(f"unknown anomaly kind(s) {unknown}; valid: {', '.join(allowed)}")
    if not kinds:
        raise ConfigError(f"no anomaly kinds given; valid: {', '.join(allowed)}")
    return kinds


def place_anomalies(
    n: int,
    count: int,
    kinds: Sequence[str],
    rng: np.random.Generator,
    durations: dict[str, tuple[int, int]] | None = None,
) -> list[tuple[str, int, int]]:
    """Choose ``count`` non-overlapping ``(kind, start, end)`` intervals in ``n`` rows.

    The rows after the clean start are cut into ``count`` equal slots with one anomaly each,
    kept at least a gap (a tenth of a slot, one row at least) from the slot's edges, so
    anomalies never touch each other, the clean start, or the last row. ``durations`` (default
    :data:`DURATIONS`) gives each kind's (shortest, longest) rows.
    """
    if count <= 0:
        return []
    first = math.ceil(CLEAN_FRACTION * n)
    slot = (n - first) // count
    if slot < 4:
        raise ConfigError(
            f"{n} rows is too short for {count} anomalies per stream "
            f"(need about {math.ceil((4 * count) / (1 - CLEAN_FRACTION))} rows)"
        )
    gap = max(1, slot // 10)
    room = slot - 2 * gap
    chosen = rng.choice(np.asarray(kinds), size=count)
    placed = []
    for i, kind in enumerate(chosen.tolist()):
        shortest, longest = (durations or DURATIONS)[kind]
        length = int(rng.integers(min(shortest, room), min(longest, room) + 1))
        start = first + i * slot + gap + int(rng.integers(0, room - length + 1))
        placed.append((kind, start, start + length))
    return placed


def _pick_columns(kind: str, eligible: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if kind in _WHOLE_ROW:
        return eligible
    width = 1 if kind in _ONE_CHANNEL else int(rng.integers(1, min(2, len(eligible)) + 1))
    return np.sort(rng.choice(eligible, size=width, replace=False))


def inject_anomalies(
    values: np.ndarray,
    timestamps: np.ndarray,
    stream: str,
    columns: Sequence[str],
    eligible: np.ndarray,
    count: int,
    kinds: Sequence[str],
    rng: np.random.Generator,
    scale: Scale,
    durations: dict[str, tuple[int, int]] | None = None,
) -> tuple[np.ndarray, list[AnomalySpec]]:
    """Inject ``count`` anomalies into ``values`` in place; return ``(labels, specs)``.

    ``eligible`` are the column indices anomalies may touch (targets, never inputs); labels are
    1 over each anomaly's rows and 0 elsewhere.
    """
    labels = np.zeros(len(values), dtype=np.uint8)
    specs = []
    for kind, start, end in place_anomalies(len(values), count, kinds, rng, durations):
        cols = _pick_columns(kind, np.asarray(eligible), rng)
        INJECTORS[kind](values, start, end, cols, rng, scale)
        labels[start:end] = 1
        specs.append(
            AnomalySpec(
                stream=stream,
                kind=kind,
                start_index=start,
                end_index=end,
                start=float(timestamps[start]),
                end=float(timestamps[end - 1]),
                features=tuple(columns[c] for c in cols),
            )
        )
    return labels, specs
