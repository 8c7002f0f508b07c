"""A subsequence discord: a shape baseline for ``detector evaluate``, no model and no forecast.

At each reading, the last ``length`` readings (each column standardised by rows the protocol
allows fitting on) are compared with every earlier subsequence of the last ``history``
readings that does not overlap them; the distance to the nearest is the statistic. A reading
that continues a pattern the stream has shown before has a close neighbour; one that makes a
shape the stream has not shown has none. It is the nearest-neighbour idea behind matrix-profile
discords and NAB's KNN-CAD detector, run online: each distance reads only earlier readings.

The distance becomes a tail probability through the stream's own past distances, peaks over a
threshold: below the ``1 - tail_fraction`` quantile of the last ``history`` distances the
empirical share of distances at least as large; above it an exponential tail whose mean is the
mean excess over that quantile. No constant here was tuned on a benchmark; each was set by
reasoning (see :class:`DiscordConfig`) before the first run (docs/accuracy.md, stage 25).

Cost: ``O(history x length x columns)`` multiply-adds a reading, as block matrix products.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["DiscordConfig", "standardise", "nearest_distance", "tail_log10_p", "discord_log10_p"]


@dataclass(frozen=True)
class DiscordConfig:
    """Set by reasoning, not tuned: ``length`` is the LSTM's window (``EvalSpec``'s timesteps);
    ``history`` holds about two weeks of NAB's 5-minute readings; a distance needs
    ``min_candidates`` neighbours and the tail ``min_past`` distances before they mean anything;
    the tail's mean excess is at least ``beta_floor`` standard deviations, so a stream that
    repeats itself exactly (distances of 0) does not read float noise as evidence."""

    length: int = 32
    history: int = 4000
    min_candidates: int = 64
    min_past: int = 128
    tail_fraction: float = 0.1
    beta_floor: float = 0.05
    refit_every: int = 16  # readings between refits of the tail (its cost, not its meaning)

    def __post_init__(self) -> None:
        if self.length < 1 or self.min_candidates < 1 or self.min_past < 2:
            raise ValueError("length, min_candidates >= 1 and min_past >= 2 needed")
        if self.history < self.length + self.min_candidates:
            raise ValueError(
                f"history ({self.history}) must hold length + min_candidates "
                f"({self.length + self.min_candidates}) readings"
            )
        if not 0 < self.tail_fraction < 1 or self.beta_floor <= 0 or self.refit_every < 1:
            raise ValueError("need 0 < tail_fraction < 1, beta_floor > 0 and refit_every >= 1")


def standardise(values: np.ndarray, center: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """``(n, F)`` values as ``(x - center) / spread`` per column.

    A missing reading takes the last present one of its column (the first present one before
    any), so a gap reads as "no change"; a column never present reads 0. A column whose
    ``spread`` is 0 or unknown is left unscaled, one whose ``center`` is unknown uncentred."""
    x = np.array(values, np.float64, ndmin=2)
    for j in range(x.shape[1]):
        present = np.isfinite(x[:, j])
        if not present.any():
            x[:, j] = 0.0
            continue
        last = np.where(present, np.arange(len(x)), 0)
        np.maximum.accumulate(last, out=last)
        last[: np.argmax(present)] = np.argmax(present)
        x[:, j] = x[last, j]
    center = np.nan_to_num(np.asarray(center, np.float64))
    spread = np.asarray(spread, np.float64)
    return (x - center) / np.where(np.isfinite(spread) & (spread > 0), spread, 1.0)


def nearest_distance(z: np.ndarray, config: DiscordConfig = DiscordConfig()) -> np.ndarray:
    """``(n,)`` Euclidean distance from the subsequence ending at each reading of ``z``
    (``(n, F)``, no NaN) to its nearest neighbour among the subsequences that end at least
    ``length`` and at most ``history`` readings earlier; NaN where fewer than
    ``min_candidates`` exist."""
    m, h = config.length, config.history
    n, f = z.shape
    out = np.full(n, np.nan)
    if n < 2 * m + config.min_candidates - 1:
        return out
    win = sliding_window_view(z, m, axis=0).reshape(n - m + 1, f * m)  # row k ends at k + m - 1
    norms = np.einsum("ij,ij->i", win, win)
    block = 512
    for a in range(m - 1, n, block):
        ends = np.arange(a, min(n, a + block))
        lo, hi = max(m - 1, a - h), ends[-1] - m  # every candidate end any of them may use
        if hi < lo:
            continue
        cand = np.arange(lo, hi + 1)
        q, c = ends - (m - 1), cand - (m - 1)
        d2 = norms[q][:, None] + norms[c][None, :] - 2.0 * (win[q] @ win[c].T)
        usable = (cand[None, :] <= ends[:, None] - m) & (cand[None, :] >= ends[:, None] - h)
        nearest = np.where(usable, d2, np.inf).min(axis=1)
        enough = usable.sum(axis=1) >= config.min_candidates
        out[ends] = np.where(enough, np.sqrt(np.maximum(nearest, 0.0)), np.nan)
    return out


def tail_log10_p(d: np.ndarray, config: DiscordConfig = DiscordConfig()) -> np.ndarray:
    """``log10`` of each distance's tail probability among the stream's earlier distances
    (peaks over a threshold, refit every ``refit_every`` readings on the last ``history``);
    0 where the distance is NaN or fewer than ``min_past`` earlier distances exist."""
    n, q = len(d), config.tail_fraction
    out = np.zeros(n)
    for a in range(0, n, config.refit_every):
        past = d[max(0, a - config.history) : a]
        past = np.sort(past[np.isfinite(past)])
        if len(past) < config.min_past:
            continue
        u = np.quantile(past, 1.0 - q)
        excess = past[past > u] - u
        beta = max(float(excess.mean()) if len(excess) else 0.0, config.beta_floor)
        cur = d[a : a + config.refit_every]
        at_least = len(past) - np.searchsorted(past, cur, side="left")
        with np.errstate(invalid="ignore"):
            body = np.log10(np.minimum((at_least + 1.0) / (len(past) + 1.0), 1.0))
            tail = np.log10(q) - (cur - u) / (beta * np.log(10.0))
            lp = np.where(cur > u, tail, body)
        out[a : a + len(cur)] = np.where(np.isfinite(cur), np.minimum(lp, 0.0), 0.0)
    return out


def discord_log10_p(
    values: np.ndarray,
    center: np.ndarray,
    spread: np.ndarray,
    config: DiscordConfig = DiscordConfig(),
) -> np.ndarray:
    """``(n,)`` ``log10 p`` of each reading of ``values`` (``(n, F)``) as a discord, its
    columns standardised (:func:`standardise`); 0 until the stream has enough history."""
    z = standardise(values, center, spread)
    return tail_log10_p(nearest_distance(z, config), config)
