"""The level test's tail, fitted once on the training rows.

The level test (:class:`detector.scoring.GaussianScorer`) reads how far a reading is from its
stream's slowly drifting level under a Gaussian tail, and learns no tail of its own while it
runs: an online tail would learn a lasting fault as it goes and fade it. But a stream whose
normal includes excursions (request bursts, a spiky sensor) then reads each routine one as
``p = 1e-9`` or less. This module gives the test the tail its training data showed instead,
fixed, so it knows the stream's routine excursions and still cannot learn a fault away:

* replay the level test over each training stream's scaled targets, as the scorer computes it
  from its N(0, 1) prior (the same code, :meth:`GaussianScorer._gaussian`);
* fit the rate at which its ``-log10 p`` passes 2 and an exponential excess beyond that (the
  median excess over ``ln 2``, so one training glitch cannot set it), each shrunk to the
  Gaussian's by the scorer's tail priors (``tail_prior`` readings, ``tail_events``
  exceedances), and never lighter than the Gaussian's: a short training set is no evidence
  that a stream is calmer than Gaussian.

The scorer then reads the level test's ``p`` as :func:`detector.scoring.calibrate_tail` reads
a learnt tail. Training stores one tail per training stream and one pooled over them, for
streams the model has not seen.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detector.scaling import Scaler
from detector.scoring import _LOG10_E, _TAIL_AT, GaussianScorer, ScorerConfig
from detector.series import Series

__all__ = ["fit_tail", "level_surprise", "level_tails", "check_level_tails", "tail_mismatch"]

# Tails written before the settings were recorded (session 20) were fitted under these.
_FITTED_BEFORE = {"horizon": 2000, "clip": 5.0}
_BLOCK = 256  # training streams replayed side by side
_CHUNK = 1024  # and their rows copied in this many at a time


def level_surprise(scaled: Sequence[np.ndarray], config: ScorerConfig) -> list[np.ndarray]:
    """The level test's ``-log10 p`` at each row of each stream's scaled targets ``(n_i, T)``
    (NaN where no target is present), from the scorer's N(0, 1) prior."""
    out = []
    for lo in range(0, len(scaled), _BLOCK):
        block = scaled[lo : lo + _BLOCK]
        b, t = len(block), block[0].shape[1]
        scorer = GaussianScorer(config, np.ones(t), b)
        slots = np.arange(b)
        alpha = np.full(b, 1.0 / config.horizon)
        longest = max(len(x) for x in block)
        y = np.full((b, longest), np.nan)
        for start in range(0, longest, _CHUNK):
            # Rows start.. of every stream, row-major so each step is one contiguous (b, T);
            # a stream that has ended reads NaN: no update.
            rows = np.full((min(_CHUNK, longest - start), b, t), np.nan)
            for k, x in enumerate(block):
                part = x[start : start + _CHUNK]
                rows[: len(part), k] = part
            for i, step in enumerate(rows):
                log10_p, _, dof = scorer._gaussian(slots, step, "level_", alpha)
                y[:, start + i] = np.where(dof > 0, -log10_p, np.nan)
        out += [y[k, : len(x)] for k, x in enumerate(block)]
    return out


def fit_tail(y: np.ndarray, config: ScorerConfig) -> tuple[float, float]:
    """``(rate, excess)``: how often ``y = -log10 p`` passes 2, and the excess beyond it in
    decades (an exponential's mean, read off the median excess as ``median / ln 2``), shrunk to
    the Gaussian's (1e-2, ``log10 e``) and never below them."""
    y = y[np.isfinite(y)]
    over = y[y > _TAIL_AT] - _TAIL_AT
    rate = (len(over) + config.tail_prior * 1e-2) / (len(y) + config.tail_prior)
    m = max(float(np.median(over)) / np.log(2.0), _LOG10_E) if len(over) else _LOG10_E
    excess = (len(over) * m + config.tail_events * _LOG10_E) / (len(over) + config.tail_events)
    return float(max(rate, 1e-2)), float(excess)


def level_tails(
    series: Sequence[Series],
    scalers: Sequence[Scaler],
    targets: Sequence[str],
    config: ScorerConfig | None = None,
    skip_labelled: bool = True,
) -> dict[str, object]:
    """``{"pooled": [rate, excess], "streams": {name: [rate, excess]}, "fitted_with": {...}}``
    of the level test over the training streams (each scaled by its scaler; labelled rows left
    out with ``skip_labelled``, as training leaves them out), and the level test's settings
    they were fitted under (``horizon``, ``clip``; see :func:`tail_mismatch`)."""
    config = config or ScorerConfig()
    t = len(targets)
    scaled = []
    for s, scaler in zip(series, scalers, strict=True):
        x = s.select(list(targets))
        if skip_labelled and s.labels is not None:
            x = np.where((s.labels == 0)[:, None], x, np.nan)
        scaled.append((x - scaler.offset[:t]) / scaler.scale[:t])  # targets come first
    ys = level_surprise(scaled, config) if scaled else []
    return {
        "pooled": list(fit_tail(np.concatenate(ys) if ys else np.zeros(0), config)),
        "streams": {s.name: list(fit_tail(y, config)) for s, y in zip(series, ys, strict=True)},
        "fitted_with": {"horizon": config.horizon, "clip": config.clip},
    }


def tail_mismatch(tails: dict, config: ScorerConfig) -> str | None:
    """Why ``tails`` do not describe ``config``'s level test (it follows the level at
    ``horizon``'s pace and clips at ``clip``: other settings give other excursions, so another
    tail), or None."""
    fitted = tails.get("fitted_with", _FITTED_BEFORE)
    differ = [
        f"{k} {fitted[k]:g} (scorer: {getattr(config, k):g})"
        for k in ("horizon", "clip")
        if float(fitted[k]) != float(getattr(config, k))
    ]
    if not differ:
        return None
    return (
        "the level test's tails were fitted with " + ", ".join(differ) + " (`detector train` "
        "fits them under the scorer's defaults); they are read as they are. --no-level-tail "
        "(scorer.level_tail: false) reads the Gaussian's instead"
    )


def check_level_tails(tails: object) -> None:
    """Raise ``ValueError`` unless ``tails`` is what :func:`level_tails` returns."""

    def ok(pair: object) -> bool:
        return (
            isinstance(pair, list)
            and len(pair) == 2
            and all(type(v) in (int, float) for v in pair)
            and 0 < pair[0] <= 1
            and pair[1] > 0
        )

    def settings(fitted: object) -> bool:
        return isinstance(fitted, dict) and all(
            type(fitted.get(k)) in (int, float) and fitted[k] > 0 for k in ("horizon", "clip")
        )

    if (
        not isinstance(tails, dict)
        or not ok(tails.get("pooled"))
        or ("fitted_with" in tails and not settings(tails["fitted_with"]))
        or not isinstance(tails.get("streams"), dict)
        or not all(ok(v) for v in tails["streams"].values())
    ):
        raise ValueError(
            "metrics.training.level_tail must hold a pooled [rate, excess] and one per stream, "
            "rates in (0, 1] and excesses above 0, and may say the positive horizon and clip "
            "they were fitted with"
        )
