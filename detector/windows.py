"""Sliding windows shaped ``[samples, timesteps, features]`` for one-step-ahead forecasting."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["make_windows"]


def make_windows(
    values: np.ndarray,
    timesteps: int,
    n_targets: int,
    keep: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut ``(n, F)`` values into inputs ``X (S, T, F)`` and next-step targets ``y (S, n_targets)``.

    Sample ``s`` reads rows ``[i, i + T)`` and forecasts row ``i + T`` (targets are the first
    ``n_targets`` columns). A sample is dropped when any value it touches is NaN (a missing
    reading) or when ``keep`` (``(n,)`` bool) is False on any row it touches.

    Returns ``X``, ``y`` and ``index``: for each sample, the row index of its target.

    >>> X, y, idx = make_windows(np.arange(10.0).reshape(5, 2), timesteps=3, n_targets=1)
    >>> X.shape, y.ravel().tolist(), idx.tolist()
    ((2, 3, 2), [6.0, 8.0], [3, 4])
    """
    values = np.asarray(values, dtype=np.float32)
    n, f = values.shape
    if timesteps < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps}")
    if n <= timesteps:
        return (
            np.empty((0, timesteps, f), np.float32),
            np.empty((0, n_targets), np.float32),
            np.empty(0, np.int64),
        )
    ok_row = ~np.isnan(values).any(axis=1)
    if keep is not None:
        ok_row &= keep
    # A sample is usable when all T + 1 rows it touches are usable: a rolling AND via cumsum.
    bad = np.concatenate([[0], np.cumsum(~ok_row)])
    span = timesteps + 1
    usable = (bad[span:] - bad[:-span]) == 0  # (n - T,)
    starts = np.flatnonzero(usable)
    views = sliding_window_view(values, (timesteps, f))[:, 0]  # (n - T + 1, T, F), no copy
    X = np.ascontiguousarray(views[starts])
    y = values[starts + timesteps, :n_targets]
    return X, y, starts + timesteps
