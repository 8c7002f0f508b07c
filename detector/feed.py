"""Turn streams read from files into the arrival-ordered readings the engine consumes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from detector.errors import DataError
from detector.series import Series

__all__ = ["Feed", "interleave"]


@dataclass(frozen=True, eq=False)
class Feed:
    """Readings of many streams in event-time order (ties: stream order), as from Kafka."""

    stream: np.ndarray  # (N,) stream ids
    timestamp: np.ndarray  # (N,) epoch seconds
    values: np.ndarray  # (N, F) the model's input columns, raw units
    label: np.ndarray  # (N,) ground truth, -1 where the file has none
    origin: np.ndarray  # (N, 2) (index of the series, row within it)

    def __len__(self) -> int:
        return len(self.timestamp)

    def batches(self, size: int) -> Iterator[slice]:
        """Consecutive slices of at most ``size`` readings."""
        for start in range(0, len(self), size):
            yield slice(start, min(start + size, len(self)))


def interleave(series: Sequence[Series], columns: Sequence[str]) -> Feed:
    """Merge streams into one event-time-ordered feed of the named ``columns``."""
    if not series:
        raise DataError("no streams to score")
    for s in series:
        missing = [c for c in columns if c not in s.columns]
        if missing:
            raise DataError(f"stream {s.name!r} lacks column(s) {missing} the model reads")
    values = np.concatenate([s.select(list(columns)) for s in series])
    ts = np.concatenate([s.timestamps for s in series])
    which = np.concatenate([np.full(len(s), k) for k, s in enumerate(series)])
    rows = np.concatenate([np.arange(len(s)) for s in series])
    label = np.concatenate(
        [
            s.labels.astype(np.int8) if s.labels is not None else np.full(len(s), -1, np.int8)
            for s in series
        ]
    )
    order = np.lexsort((rows, which, ts))
    names = np.array([s.name for s in series], dtype=object)
    return Feed(
        names[which[order]],
        ts[order],
        values[order],
        label[order],
        np.stack([which[order], rows[order]], axis=1),
    )
