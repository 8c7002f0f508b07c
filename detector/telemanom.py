"""Telemanom's nonparametric dynamic threshold, on a forecaster's errors: a published baseline.

Hundman et al. (2018), "Detecting Spacecraft Anomalies Using LSTMs and Nonparametric Dynamic
Thresholding" (the method behind the SMAP / MSL benchmark), threshold an LSTM's forecast errors
without labels and without a Gaussian model:

* the absolute errors of one channel are smoothed by an EWMA (span: ``smoothing`` of
  ``batch * window`` readings, 105 by default);
* every ``batch`` readings, a threshold ``mean + z sd`` of the last ``window`` batches of
  smoothed errors is chosen among ``z = 2.5, 3, ..., 11.5``: the one whose removal of the
  errors above it lowers their mean and spread the most, per flagged reading and per squared
  count of flagged sequences (each exceedance widened by ``buffer`` readings), with at most 5
  sequences and under half the window flagged;
* the new batch's readings above it (and above 5% of the window's 5-95 percentile range of the
  channel's values) are flagged, each with the ``buffer`` readings after it;
* pruning: the flagged sequences' peaks, sorted, with the highest unflagged error after them,
  must each fall by at least ``prune`` (13%) to the next, else the smaller ones are dropped;
* the same is done on the errors mirrored about their mean, since an error that falls far
  below normal is anomalous too.

Defaults are the paper's published configuration (``config.yaml`` of its code). Two changes
make it a streaming detector rather than a batch one, so that it is measured as ours is:
a sequence's ``buffer`` extends only forward (a stream cannot flag readings it has passed), and
the window starts at the stream's first error and grows to ``window`` batches. Telemanom's
absolute floor (a peak of at least 0.05 on channels scaled to [-1, 1]) is read as 2.5% of the
window's range of the channel's values, which is the same on its scaling and needs none.
A batch's threshold reads the whole batch: up to ``batch - 1`` readings of look-ahead, as the
paper's method has. :mod:`detector.evaluation` reports it beside our scorer on the same LSTM
forecasts (``telemanom``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detector.detection_metrics import events

__all__ = ["TelemanomConfig", "choose_z", "prune_sequences", "smooth_errors", "telemanom_flags"]


@dataclass(frozen=True)
class TelemanomConfig:
    """The paper's published settings (not tuned here)."""

    batch: int = 70  # readings per step of the threshold
    window: int = 30  # batches of history the threshold reads
    smoothing: float = 0.05  # EWMA span, as a share of batch * window readings
    buffer: int = 100  # readings after an exceedance that join its sequence
    prune: float = 0.13  # least relative fall between successive sequence peaks
    z_low: float = 2.5
    z_high: float = 12.0  # also the threshold when no z qualifies
    z_step: float = 0.5
    max_sequences: int = 5

    def __post_init__(self) -> None:
        if self.batch < 1 or self.window < 1 or self.buffer < 1:
            raise ValueError("batch, window and buffer must be at least 1")
        if not (self.smoothing > 0.0 and 0.0 <= self.prune < 1.0):
            raise ValueError("smoothing must be > 0 and prune in [0, 1)")

    @property
    def span(self) -> int:
        return max(1, int(self.batch * self.window * self.smoothing))


def smooth_errors(errors: np.ndarray, span: int) -> np.ndarray:
    """EWMA of ``errors (n,)`` with ``alpha = 2 / (span + 1)``, started at the first error (as
    pandas' ``ewm(span).mean()`` with ``adjust=False``; the paper's code keeps pandas' default,
    ``adjust=True``, which differs over the first few spans only); a missing error repeats the
    last value (NaN before the first)."""
    a = 2.0 / (span + 1.0)
    out = np.full(len(errors), np.nan)
    m = np.nan
    for i, e in enumerate(errors.tolist()):
        if e == e:  # not NaN
            m = e if m != m else m + a * (e - m)
        out[i] = m
    return out


def _widened(mask: np.ndarray, buffer: int, both: bool) -> np.ndarray:
    """``mask`` with each True spread ``buffer - 1`` readings forward (and back with ``both``)."""
    c = np.concatenate([[0], np.cumsum(mask)])
    i = np.arange(len(mask))
    hi = i + 1
    lo = np.maximum(i - buffer + 1, 0)
    if both:
        hi = np.minimum(i + buffer, len(mask))
    return c[hi] - c[lo] > 0


def choose_z(e_s: np.ndarray, config: TelemanomConfig = TelemanomConfig()) -> float:
    """The paper's threshold choice on a window of smoothed errors: the ``z`` maximising
    ``(dmean / mean + dsd / sd) / (sequences^2 + flagged)``, or ``z_high`` if none qualifies."""
    mean, sd = float(e_s.mean()), float(e_s.std())
    best, chosen = 0.0, config.z_high
    if not (mean > 0.0 and sd > 0.0):
        return chosen
    ordered = np.sort(e_s)
    csum, csum2 = np.cumsum(ordered), np.cumsum(ordered**2)
    for z in np.arange(config.z_low, config.z_high, config.z_step):
        eps = mean + z * sd
        k = int(np.searchsorted(ordered, eps, side="left"))  # errors below eps, the rest flagged
        if k == len(e_s) or k == 0:
            continue
        below_mean = csum[k - 1] / k
        below_sd = np.sqrt(max(csum2[k - 1] / k - below_mean**2, 0.0))
        flagged = _widened(e_s >= eps, config.buffer, both=True)  # as the paper's code
        n_flagged = int(flagged.sum())
        sequences = sum(1 for a, b in events(flagged) if b - a > 1)
        score = ((mean - below_mean) / mean + (sd - below_sd) / sd) / (sequences**2 + n_flagged)
        if score >= best and sequences <= config.max_sequences and n_flagged < len(e_s) / 2:
            best, chosen = score, float(z)
    return chosen


def _batch_flags(
    e_s: np.ndarray,
    values: np.ndarray,
    new: int,
    flagged_before: np.ndarray,
    config: TelemanomConfig,
) -> np.ndarray:
    """Flags over a window of smoothed errors for its readings from ``new`` on (the batch)."""
    out = np.zeros(len(e_s), bool)
    known = values[~np.isnan(values)]
    if len(known) == 0:
        return out
    low, high = np.percentile(known, [5, 95])
    floor = 0.05 * (high - low)
    mean, sd = float(e_s.mean()), float(e_s.std())
    # the paper's "errors too small to matter" checks, its absolute 0.05 read on the window's
    # range of values (see the module docstring)
    if not (sd > 0.05 * np.std(known) or e_s.max() > floor):
        return out
    if not e_s.max() > 0.025 * (known.max() - known.min()):
        return out
    eps = mean + choose_z(e_s, config) * sd
    over = (e_s >= eps) & (e_s > floor)  # the paper's code: at or above the threshold
    out = _widened(over, config.buffer, both=False)
    out[:new] = False
    return prune_sequences(e_s, out, flagged_before, config.prune) if out.any() else out


def prune_sequences(
    e_s: np.ndarray, flagged: np.ndarray, flagged_before: np.ndarray, prune: float
) -> np.ndarray:
    """The paper's pruning. The flagged sequences' peaks, highest first, then the highest error
    that neither mask flags, make a ladder; a step down by at least ``prune`` (relative) is a
    clear fall. The sequences whose peaks lie below the ladder's last clear fall are not clearly
    above the calm errors, and are dropped; so are one-reading sequences, as the paper's grouping
    drops them."""
    unflagged = ~flagged & ~flagged_before
    below = float(e_s[unflagged].max()) if unflagged.any() else 0.0
    sequences = [(a, b) for a, b in events(flagged) if b - a > 1]
    peaks = [float(e_s[a:b].max()) for a, b in sequences]
    ladder = sorted(peaks, reverse=True) + ([below] if below > 0.0 else [])
    drop: list[int] = []
    for i in range(len(ladder) - 1):
        if (ladder[i] - ladder[i + 1]) / ladder[i] < prune:
            drop.append(peaks.index(ladder[i]))
        else:
            drop = []  # a clear fall: everything above it stands
    kept = np.zeros(len(e_s), bool)
    for j, (a, b) in enumerate(sequences):
        if j not in drop:
            kept[a:b] = True
    return kept


def telemanom_flags(
    values: np.ndarray, forecast: np.ndarray, config: TelemanomConfig = TelemanomConfig()
) -> np.ndarray:
    """Flags ``(n,)`` for one channel's readings ``values (n,)`` and their forecasts ``(n,)``
    (NaN where there is none, as in a forecaster's warm-up), batch by batch."""
    if values.shape != forecast.shape or values.ndim != 1:
        raise ValueError("values and forecast must be two (n,) arrays")
    e_s = smooth_errors(np.abs(values - forecast), config.span)
    n = len(e_s)
    flags = np.zeros(n, bool)
    known = np.flatnonzero(~np.isnan(e_s))
    if len(known) == 0:
        return flags
    first = int(known[0])
    for end in range(first + config.batch, n + config.batch, config.batch):
        end = min(end, n)
        start = max(first, end - config.window * config.batch)
        new = max(start, end - config.batch) - start
        window, seen = e_s[start:end], values[start:end]
        before = flags[start:end]
        mirrored = 2.0 * window.mean() - window  # errors far below normal are anomalous too
        flags[start:end] = (
            before
            | _batch_flags(window, seen, new, before, config)
            | _batch_flags(mirrored, seen, new, before, config)
        )
    return flags
