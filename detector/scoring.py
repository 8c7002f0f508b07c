"""Prediction error → anomaly score in [0, 1], batched over streams.

**One score scale.** Every scorer turns its evidence into a tail probability ``p`` (how often
normal data would look at least this unusual) and reports ``score = min(1, -log10(p) / 10)``:
a score of 0.5 means "once in 10^5 normal readings", 1.0 means "once in 10^10 or rarer", and 0
is the neutral score given during warm-up. Thresholds, dashboards and alert rules therefore keep
their meaning whichever scorer runs.

Scorers keep their per-stream statistics in slabs indexed by the same slots as
:class:`detector.state.StreamState`; ``score`` reads the statistics from before the reading and
then updates them, so a reading never explains itself away.

* :class:`GaussianScorer` (``gaussian``): each target's error is normalised by that stream's
  running error mean and variance (an EWMA, initialised from the validation residuals), and
  ``p`` is the chi-square tail of the squared normalised errors. Sensitive to single readings.
* :class:`LikelihoodScorer` (``likelihood``): NAB's anomaly likelihood (Ahmad et al., 2017) over
  the Gaussian evidence, as normal quantiles: its moving average over the last ``short`` readings,
  against the distribution of that moving average over the ``long`` readings before them.
  Sensitive to sustained shifts in error; a lone spike counts only ``1/short`` as much.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from detector.slabs import Slabs

__all__ = [
    "ScorerConfig",
    "Scorer",
    "GaussianScorer",
    "LikelihoodScorer",
    "make_scorer",
    "SCORERS",
    "surprise",
]

_P_FLOOR = 1e-10  # p at or below this maps to score 1.0


def surprise(p: np.ndarray) -> np.ndarray:
    """Tail probability → score in [0, 1]: ``min(1, -log10(p) / 10)``."""
    p = np.clip(np.asarray(p, np.float64), _P_FLOOR, 1.0)
    return np.minimum(1.0, -np.log10(p) / 10.0)


def chi2_tail(d2: np.ndarray, dof: np.ndarray) -> np.ndarray:
    """``P[X >= d2]`` for ``X ~ chi2(dof)``; 1 where ``dof == 0``."""
    k = torch.from_numpy(np.maximum(dof, 1).astype(np.float64))
    p = torch.special.gammaincc(k / 2.0, torch.from_numpy(d2.astype(np.float64)) / 2.0).numpy()
    return np.where(dof > 0, p, 1.0)


def probit(p: np.ndarray) -> np.ndarray:
    """The ``z`` with ``P[Z >= z] = p`` (``p`` clipped to [1e-10, 1 - 1e-10])."""
    p = np.clip(np.asarray(p, np.float64), _P_FLOOR, 1.0 - _P_FLOOR)
    return -torch.special.ndtri(torch.from_numpy(p)).numpy()


def normal_tail(z: np.ndarray) -> np.ndarray:
    """``P[Z >= z]`` for a standard normal ``Z``."""
    return 0.5 * torch.special.erfc(torch.from_numpy(z.astype(np.float64)) / np.sqrt(2.0)).numpy()


@dataclass(frozen=True)
class ScorerConfig:
    """Scorer settings; chosen by label-free reasoning, never tuned on test labels."""

    kind: str = "gaussian"  # "gaussian" or "likelihood"
    warmup: int = 10  # errors a stream must show before its scores leave neutral
    horizon: int = 2000  # EWMA memory of the error statistics, in readings
    prior: int = 20  # weight, in readings, of the validation residuals as the initial statistics
    clip: float = 5.0  # an error updates the statistics as if at most this many sigmas off
    short: int = 10  # likelihood: readings in the short window
    long: int = 500  # likelihood: readings in the long window


class Scorer(Slabs):
    """Base: per-slot statistics (see :class:`Slabs`); subclasses implement ``score``."""

    name = "base"

    def __init__(self, config: ScorerConfig, error_std: np.ndarray, capacity: int) -> None:
        self.config = config
        self.error_std = np.maximum(np.asarray(error_std, np.float64), 1e-6)  # (n_targets,)
        self.grow(capacity)

    def score(self, slots: np.ndarray, err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Score ``(B, n_targets)`` scaled forecast errors (NaN = missing) of distinct slots.

        Returns ``score (B,)`` in [0, 1] and ``contrib (B, n_targets)``, each target's share of
        the evidence (rows sum to 1, or 0 when there is none).
        """
        raise NotImplementedError


class GaussianScorer(Scorer):
    name = "gaussian"

    def _fresh(self, n: int) -> dict[str, np.ndarray]:
        t = len(self.error_std)
        return {
            "mean": np.zeros((n, t)),
            "var": np.tile(self.error_std**2, (n, 1)),
            "count": np.zeros(n, np.int64),
        }

    def evidence(
        self, slots: np.ndarray, err: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Tail probability, per-target squared z and degrees of freedom; updates the stats.

        Written with in-place operations on a few ``(B, n_targets)`` buffers: for wide vectors
        (video embeddings) these passes are most of a wave's cost.
        """
        s, cfg = self.slabs, self.config
        mean, var = s["mean"][slots], s["var"][slots]  # (B, T), gathered copies
        missing = np.isnan(err)
        sd = np.sqrt(var)
        z = np.subtract(err, mean)
        z /= sd
        if missing.any():
            z[missing] = 0.0
            dof = err.shape[1] - missing.sum(axis=1)
        else:
            dof = np.full(len(err), err.shape[1])
        z2 = np.square(z)
        p = chi2_tail(z2.sum(axis=1), dof)
        # Update with the error clipped at `clip` sigmas, so one anomaly cannot inflate the
        # variance enough to hide the next. A missing target's z is 0: no update.
        count = s["count"][slots] + 1
        alpha = (1.0 / np.minimum(count + cfg.prior, cfg.horizon))[:, None]
        delta = np.clip(z, -cfg.clip, cfg.clip, out=z)
        delta *= sd  # the clipped error minus the mean
        mean += alpha * delta
        np.square(delta, out=delta)
        delta *= alpha
        var += delta
        var *= 1.0 - alpha
        np.maximum(var, 1e-12, out=var)
        s["mean"][slots], s["var"][slots], s["count"][slots] = mean, var, count
        warm = (count > cfg.warmup) & (dof > 0)
        return np.where(warm, p, 1.0), z2, dof

    def score(self, slots: np.ndarray, err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p, z2, _ = self.evidence(slots, err)
        return surprise(p), _shares(z2)


class LikelihoodScorer(GaussianScorer):
    name = "likelihood"

    def _fresh(self, n: int) -> dict[str, np.ndarray]:
        return super()._fresh(n) | {
            "recent": np.zeros((n, self.config.short)),  # last `short` Gaussian scores
            "averages": np.zeros((n, self.config.long)),  # their moving averages, a ring
            "steps": np.zeros(n, np.int64),
        }

    def score(self, slots: np.ndarray, err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p, z2, _ = self.evidence(slots, err)
        s, cfg = self.slabs, self.config
        steps = s["steps"][slots]
        # As a standard normal quantile the per-reading evidence is N(0, 1) on normal data, so
        # its moving average is Gaussian and the tail below is honest.
        s["recent"][slots, steps % cfg.short] = probit(p)
        average = s["recent"][slots].sum(axis=1) / np.minimum(steps + 1, cfg.short)
        # The reference distribution: averages at least `short` readings old, so the current
        # run of errors is never part of what it is compared with.
        age = (steps[:, None] - 1 - np.arange(cfg.long)[None, :]) % cfg.long  # (B, long)
        usable = (age >= cfg.short) & (age < np.minimum(steps, cfg.long)[:, None])
        n = usable.sum(axis=1)
        ring = s["averages"][slots]
        mu = (ring * usable).sum(axis=1) / np.maximum(n, 1)
        sd = np.sqrt((((ring - mu[:, None]) ** 2) * usable).sum(axis=1) / np.maximum(n, 1))
        s["averages"][slots, steps % cfg.long] = average
        s["steps"][slots] = steps + 1
        tail = normal_tail((average - mu) / np.maximum(sd, 1e-3))
        warm = n >= max(cfg.warmup, cfg.short)
        return np.where(warm, surprise(tail), 0.0), _shares(z2)


def _shares(z2: np.ndarray) -> np.ndarray:
    total = z2.sum(axis=1, keepdims=True)
    return np.divide(z2, total, out=np.zeros_like(z2), where=total > 0)


SCORERS: dict[str, type[Scorer]] = {"gaussian": GaussianScorer, "likelihood": LikelihoodScorer}


def make_scorer(config: ScorerConfig, error_std: np.ndarray, capacity: int) -> Scorer:
    """The scorer ``config.kind`` names."""
    try:
        cls = SCORERS[config.kind]
    except KeyError:
        raise ValueError(f"scorer must be one of {sorted(SCORERS)}, got {config.kind!r}") from None
    return cls(config, error_std, capacity)
