"""The level test's tail, read off the training rows (EXPLORATION)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detector.scaling import Scaler
from detector.series import Series

_TAIL_AT = 2.0
_LOG10_E = float(np.log10(np.e))
_PRIOR_READINGS = 200  # as ScorerConfig.tail_prior
_PRIOR_EVENTS = 5  # as ScorerConfig.tail_events


def level_surprise(scaled: np.ndarray, horizon: int, clip: float) -> np.ndarray:
    """The level test's ``-log10 p`` at each row of one stream's scaled targets ``(n, T)``, as
    the scorer computes it from its N(0, 1) prior (EWMA at ``1 / horizon``, updates clipped)."""
    from detector.scoring import log10_chi2_tail

    n, t = scaled.shape
    mean, var = np.zeros(t), np.ones(t)
    a = 1.0 / horizon
    d2 = np.zeros(n)
    dof = np.zeros(n, np.int64)
    for i in range(n):
        x = scaled[i]
        ok = ~np.isnan(x)
        sd = np.sqrt(var)
        z = np.where(ok, (x - mean) / sd, 0.0)
        d2[i], dof[i] = float(np.square(z).sum()), int(ok.sum())
        delta = np.clip(z, -clip, clip) * sd
        mean = mean + a * delta
        var = np.maximum((var + a * np.square(delta)) * (1.0 - a), 1e-12)
    y = -log10_chi2_tail(d2, dof)
    return np.where(dof > 0, y, np.nan)


def fit_tail(y: np.ndarray) -> tuple[float, float]:
    """Rate of ``y > 2`` and the mean excess beyond it (an exponential tail: median / ln 2,
    robust to a training glitch), each shrunk to the Gaussian's by a prior."""
    y = y[np.isfinite(y)]
    over = y[y > _TAIL_AT] - _TAIL_AT
    rate = (len(over) + _PRIOR_READINGS * 1e-2) / (len(y) + _PRIOR_READINGS)
    rate = max(rate, 1e-2)  # never lighter than the Gaussian's: a short training set is no evidence
    m = float(np.median(over)) / np.log(2.0) if len(over) else _LOG10_E
    m = max(m, _LOG10_E)  # never lighter than the Gaussian's
    excess = (len(over) * m + _PRIOR_EVENTS * _LOG10_E) / (len(over) + _PRIOR_EVENTS)
    return float(rate), float(excess)


def level_tails(
    series: Sequence[Series],
    scalers: Sequence[Scaler],
    targets: Sequence[str],
    horizon: int,
    clip: float,
) -> dict[str, object]:
    """``{"pooled": [rate, excess], "streams": {name: [rate, excess]}}`` over training streams."""
    ys, per = [], {}
    for s, sc in zip(series, scalers, strict=True):
        x = s.select(list(targets))
        if s.labels is not None:
            x = np.where((s.labels == 0)[:, None], x, np.nan)
        t = x.shape[1]  # targets come first among the scaler's features
        y = level_surprise((x - sc.offset[:t]) / sc.scale[:t], horizon, clip)
        ys.append(y)
        per[s.name] = list(fit_tail(y))
    return {"pooled": list(fit_tail(np.concatenate(ys))), "streams": per}
