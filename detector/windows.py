"""Sliding windows shaped ``[samples, timesteps, features]`` for one-step-ahead forecasting."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["make_windows", "usable_starts", "WindowSamples", "TorchWindows"]


def usable_starts(values: np.ndarray, timesteps: int, keep: np.ndarray | None = None) -> np.ndarray:
    """First rows of the usable samples of ``(n, F)`` values: a sample reads rows ``[i, i + T)``
    and forecasts row ``i + T``; it is usable when none of those ``T + 1`` rows holds a NaN or
    is False in ``keep``."""
    if timesteps < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps}")
    n = len(values)
    if n <= timesteps:
        return np.empty(0, np.int64)
    ok_row = ~np.isnan(values).any(axis=1)
    if keep is not None:
        ok_row &= keep
    # A sample is usable when all T + 1 rows it touches are usable: a rolling AND via cumsum.
    bad = np.concatenate([[0], np.cumsum(~ok_row)])
    span = timesteps + 1
    return np.flatnonzero((bad[span:] - bad[:-span]) == 0).astype(np.int64)


class WindowSamples:
    """Samples ``(S, T, F)`` read from one array of rows, without copying them out: sample ``s``
    is ``rows[start[s] : start[s] + T]``. Windows overlap in all but one row, so holding them
    whole would take ``T`` times the memory of the rows; indexing gathers only what is asked.

    Indexing by an int, a slice or an index array gives an ndarray, as the whole ``(S, T, F)``
    array would (a tuple indexes that result further); ``np.asarray`` gives the whole array.
    """

    def __init__(self, rows: np.ndarray, start: np.ndarray, timesteps: int) -> None:
        self.rows = rows
        self.start = np.asarray(start, np.int64)
        self.timesteps = timesteps
        self._steps = np.arange(timesteps)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.start), self.timesteps, self.rows.shape[1])

    def __len__(self) -> int:
        return len(self.start)

    def __getitem__(self, key):
        if isinstance(key, tuple):
            first, rest = key[0], key[1:]
            picked = self[first]
            return picked[rest] if np.ndim(self.start[first]) == 0 else picked[(slice(None), *rest)]
        return self.rows[self.start[key][..., None] + self._steps]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype)

    def latest(self) -> np.ndarray:
        """Each sample's last input row, ``(S, F)``: the reading a persistence forecast repeats."""
        return self.rows[self.start + self.timesteps - 1]


class TorchWindows:
    """:class:`WindowSamples` on a torch device: the rows and starts moved once, each batch
    gathered there (``windows[idx]`` is ``(len(idx), T, F)``)."""

    def __init__(self, samples: WindowSamples, device: torch.device) -> None:
        self.rows = torch.from_numpy(samples.rows).to(device)
        self.start = torch.from_numpy(samples.start).to(device)
        self.steps = torch.arange(samples.timesteps, device=device)

    def __len__(self) -> int:
        return len(self.start)

    def __getitem__(self, idx: torch.Tensor) -> torch.Tensor:
        idx = idx.to(self.start.device)
        return self.rows[self.start[idx].unsqueeze(1) + self.steps]


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
    starts = usable_starts(values, timesteps, keep)
    X = WindowSamples(values, starts, timesteps)[:]  # every sample, copied out
    y = values[starts + timesteps, :n_targets]
    return X, y, starts + timesteps
