"""The in-memory form of one labelled stream: what every reader returns and every writer takes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Series"]


@dataclass(frozen=True, eq=False)
class Series:
    """One stream's readings in time order.

    Attributes
    ----------
    name:
        Stream id (the CSV file name without ``.csv``; ``category/name`` for NAB).
    timestamps:
        ``(n,)`` float64 event times in seconds since the Unix epoch (UTC).
    values:
        ``(n, F)`` float64 readings in original units; NaN marks a missing reading.
    columns:
        The ``F`` feature names, in column order.
    labels:
        ``(n,)`` uint8 ground truth (1 = anomalous), or ``None`` when the file has none.
    """

    name: str
    timestamps: np.ndarray
    values: np.ndarray
    columns: tuple[str, ...]
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.timestamps)
        if self.values.ndim != 2 or self.values.shape != (n, len(self.columns)):
            raise ValueError(
                f"{self.name}: values shape {self.values.shape} does not match "
                f"{n} timestamps x {len(self.columns)} columns"
            )
        if self.labels is not None and self.labels.shape != (n,):
            raise ValueError(f"{self.name}: labels shape {self.labels.shape}, expected ({n},)")

    def __len__(self) -> int:
        return len(self.timestamps)

    def select(self, columns: list[str] | tuple[str, ...]) -> np.ndarray:
        """Return the ``(n, len(columns))`` values of the named columns, in the order given."""
        missing = [c for c in columns if c not in self.columns]
        if missing:
            raise KeyError(f"{self.name}: no column(s) {missing}; it has {list(self.columns)}")
        return self.values[:, [self.columns.index(c) for c in columns]]
