"""Label-based metrics for any detector's binary decisions (flags) against 0/1 labels.

Four views, pooled over streams by summing counts (micro-average):

* point-wise precision / recall / F1 over rows;
* event-level: an anomaly range is detected when any flag overlaps it; an alert event (a run
  of flags) overlapping no range is a false positive;
* composite F1 (Garg et al., 2021): point-wise precision with event-level recall. Event
  precision counts alerts, so one alert spanning a whole stream scores 1; the composite charges
  every flagged normal row instead, so long alerts cannot buy it;
* point-adjusted F1 (a range counts as wholly detected once any of its rows is flagged). It is
  known to flatter random detectors, so it is always reported beside the same metric for random
  flags at the detector's own flag rate.

Undefined ratios (0/0, e.g. precision with no alerts) are ``None``.

Example
-------
>>> evaluate([0, 1, 1, 0, 0], [0, 0, 1, 0, 1])["event"]["recall"]
1.0
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detector.errors import DataError

__all__ = [
    "events",
    "point_counts",
    "event_counts",
    "point_adjust",
    "detection_delays",
    "random_baseline_point_adjusted_f1",
    "evaluate",
    "evaluate_streams",
]


def _binary(a: Sequence[int] | np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise DataError(f"{what} must be one-dimensional, got shape {arr.shape}")
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise DataError(f"{what} must be 0/1")
    return arr.astype(bool)


def events(labels: Sequence[int] | np.ndarray) -> list[tuple[int, int]]:
    """Runs of 1s as ``(start, end_exclusive)`` row ranges."""
    x = np.r_[False, _binary(labels, "labels"), False].astype(np.int8)
    edges = np.flatnonzero(np.diff(x))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _f1(precision: float | None, recall: float | None) -> float | None:
    # An undefined side counts as 0 when the other is defined: flagging nothing while anomalies
    # exist (or flagging where there are none) is a failure, not "no information".
    if precision is None and recall is None:
        return None
    p, r = precision or 0.0, recall or 0.0
    return 2 * p * r / (p + r) if p + r else 0.0


def point_counts(labels: np.ndarray, flags: np.ndarray) -> dict[str, int]:
    """Row counts ``tp``, ``fp``, ``fn``, ``tn``."""
    y, f = _binary(labels, "labels"), _binary(flags, "flags")
    return {
        "tp": int((y & f).sum()),
        "fp": int((~y & f).sum()),
        "fn": int((y & ~f).sum()),
        "tn": int((~y & ~f).sum()),
    }


def event_counts(labels: np.ndarray, flags: np.ndarray) -> dict[str, int]:
    """``ranges``, ``ranges_detected``, ``alerts`` (alert events), ``alerts_true`` (overlapping)."""
    y, f = _binary(labels, "labels"), _binary(flags, "flags")
    ranges, alerts = events(y), events(f)
    return {
        "ranges": len(ranges),
        "ranges_detected": sum(bool(f[a:b].any()) for a, b in ranges),
        "alerts": len(alerts),
        "alerts_true": sum(bool(y[a:b].any()) for a, b in alerts),
    }


def point_adjust(labels: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """Flags with every anomaly range that has any flag filled in completely."""
    y, f = _binary(labels, "labels"), _binary(flags, "flags").copy()
    for a, b in events(y):
        if f[a:b].any():
            f[a:b] = True
    return f


def detection_delays(
    labels: np.ndarray, flags: np.ndarray, timestamps: np.ndarray | None = None
) -> tuple[list[int], list[float] | None]:
    """Rows (and seconds, given timestamps) from each detected range's start to its first flag."""
    y, f = _binary(labels, "labels"), _binary(flags, "flags")
    rows, seconds = [], []
    for a, b in events(y):
        hits = np.flatnonzero(f[a:b])
        if hits.size:
            rows.append(int(hits[0]))
            if timestamps is not None:
                seconds.append(float(timestamps[a + hits[0]] - timestamps[a]))
    return rows, (seconds if timestamps is not None else None)


def _random_flags(n: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    # Exactly round(rate * n) flags, so the baseline flags as much as the detector did.
    flags = np.zeros(n, dtype=bool)
    flags[rng.choice(n, size=round(rate * n), replace=False)] = True
    return flags


def _pa_counts(labels: np.ndarray, flags: np.ndarray) -> dict[str, int]:
    return point_counts(labels, point_adjust(labels, flags))


def _count_f1(c: dict[str, int]) -> float | None:
    den = 2 * c["tp"] + c["fp"] + c["fn"]
    return 2 * c["tp"] / den if den else None


def random_baseline_point_adjusted_f1(
    labels: Sequence[int] | np.ndarray, rate: float, seed: int = 0
) -> float | None:
    """Point-adjusted F1 of random flags at ``rate`` (fraction of rows flagged)."""
    y = _binary(labels, "labels")
    if not 0.0 <= rate <= 1.0:
        raise DataError(f"flag rate must be in [0, 1], got {rate}")
    rng = np.random.default_rng(seed)
    return _count_f1(_pa_counts(y, _random_flags(len(y), rate, rng)))


def _add(total: dict[str, int], part: dict[str, int]) -> None:
    for k, v in part.items():
        total[k] = total.get(k, 0) + v


def _point_block(c: dict[str, int]) -> dict:
    return {
        **c,
        "precision": _ratio(c["tp"], c["tp"] + c["fp"]),
        "recall": _ratio(c["tp"], c["tp"] + c["fn"]),
        "f1": _count_f1(c),
    }


def _event_block(c: dict[str, int]) -> dict:
    precision = _ratio(c["alerts_true"], c["alerts"])
    recall = _ratio(c["ranges_detected"], c["ranges"])
    return {**c, "precision": precision, "recall": recall, "f1": _f1(precision, recall)}


def _composite_block(point: dict, event: dict) -> dict:
    """From the point and event blocks: the point precision with the event recall."""
    precision, recall = point["precision"], event["recall"]
    return {"precision": precision, "recall": recall, "f1": _f1(precision, recall)}


def _mean(xs: list[float]) -> float | None:
    return float(np.mean(xs)) if xs else None


def evaluate_streams(streams: Sequence[tuple[np.ndarray, ...]], seed: int = 0) -> dict:
    """Pooled metrics over streams given as ``(labels, flags)`` or ``(labels, flags, timestamps)``.

    Counts are summed over streams (micro-average). The random baseline flags each stream at
    its own flag rate, drawing from one generator seeded with ``seed``. Returns a plain dict.
    """
    point, event, pa, pa_rand = {}, {}, {}, {}
    delay_rows, delay_s, all_timed, flagged, rows = [], [], True, 0, 0
    rng = np.random.default_rng(seed)  # one generator in stream order: 1 stream = the helper
    for k, stream in enumerate(streams):
        if len(stream) not in (2, 3):
            raise DataError(f"stream {k}: expected (labels, flags[, timestamps])")
        y, f = _binary(stream[0], f"stream {k} labels"), _binary(stream[1], f"stream {k} flags")
        ts = np.asarray(stream[2], dtype=np.float64) if len(stream) == 3 else None
        if len(f) != len(y) or (ts is not None and len(ts) != len(y)):
            raise DataError(f"stream {k}: labels, flags and timestamps differ in length")
        _add(point, point_counts(y, f))
        _add(event, event_counts(y, f))
        _add(pa, _pa_counts(y, f))
        rate = float(f.mean()) if len(f) else 0.0
        _add(pa_rand, _pa_counts(y, _random_flags(len(y), rate, rng)))
        d_rows, d_s = detection_delays(y, f, ts)
        delay_rows += d_rows
        all_timed = all_timed and d_s is not None
        delay_s += d_s or []
        flagged, rows = flagged + int(f.sum()), rows + len(f)
    point_block, event_block = _point_block(point), _event_block(event)
    return {
        "streams": len(streams),
        "rows": rows,
        "flag_rate": flagged / rows if rows else 0.0,
        "point": point_block,
        "event": event_block,
        "composite": _composite_block(point_block, event_block),
        "point_adjusted": {
            **_point_block(pa),
            "random_baseline_f1": _count_f1(pa_rand),
        },
        "delay": {
            "detected_ranges": len(delay_rows),
            "mean_rows": _mean(delay_rows),
            "mean_seconds": _mean(delay_s) if all_timed else None,
        },
    }


def evaluate(
    labels: Sequence[int] | np.ndarray,
    flags: Sequence[int] | np.ndarray,
    timestamps: Sequence[float] | np.ndarray | None = None,
    seed: int = 0,
) -> dict:
    """Metrics of one stream; see :func:`evaluate_streams`."""
    stream = (labels, flags) if timestamps is None else (labels, flags, timestamps)
    return evaluate_streams([stream], seed=seed)
