"""Calendar phases as model inputs: where in its day and week a reading falls.

A forecaster that reads the last ``timesteps`` readings cannot tell 9:00 from 21:00 on a flat
stretch, so it cannot forecast a daily step before it happens, nor notice one that does not come
(a holiday in a taxi fleet, a store that stays shut). Given the phase of the reading's event time
within each calendar period, as ``sin`` and ``cos`` (continuous across midnight), it can.

A period is used only when training can learn it: the training split of most training streams
spans at least ``MIN_CYCLES`` periods, sampled at least ``MIN_READINGS`` times per period. With
fewer cycles the model fits the phase to the few days it saw: on NAB's probationary rows, a
two-cycle rule changed validation MSE by more than 2% on 31 of 54 files, 13 of them for the
worse; the three-cycle rule reads phases on 11 files, lowers it on 8 and raises it on none (see
docs/accuracy.md, stage 12). Event times are
seconds since the Unix epoch (UTC), so the phases are UTC's; a fixed local offset is just a
phase the model learns.

The phases are exact inputs in [-1, 1]: scalers pass them through unchanged (see
:func:`pinned`), so a stream's first window, fitted on a few hours, cannot stretch them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detector.scaling import Scaler

__all__ = [
    "PERIODS",
    "MIN_CYCLES",
    "MIN_READINGS",
    "check_periods",
    "choose_periods",
    "calendar_columns",
    "calendar_features",
    "parse_calendar",
    "pinned",
]

PERIODS: dict[str, float] = {"day": 86_400.0, "week": 604_800.0}
MIN_CYCLES = 3  # periods the training split must span (with two, 13 of 54 NAB files got worse)
MIN_READINGS = 24  # readings per period at least (hourly for a day): the phase is resolved


def parse_calendar(text: str) -> str | tuple[str, ...]:
    """``auto``, ``off`` or a comma list of periods (``day,week``) → ``"auto"`` or the names."""
    text = text.strip()
    if text in ("auto", "off", ""):
        return "auto" if text == "auto" else ()
    return check_periods(tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip())))


def check_periods(names: Sequence[object]) -> tuple[str, ...]:
    """``names`` as a tuple of distinct known periods; ``ValueError`` says what is wrong."""
    unknown = [n for n in names if not isinstance(n, str) or n not in PERIODS]
    if unknown:
        raise ValueError(f"calendar periods must be among {sorted(PERIODS)}, got {unknown}")
    if len(set(names)) != len(names):
        raise ValueError(f"calendar periods must be distinct, got {list(names)}")
    return tuple(names)


def _spans(timestamps: np.ndarray, period: float) -> bool:
    ts = np.asarray(timestamps, np.float64)
    ts = ts[np.isfinite(ts)]
    if len(ts) < 2:
        return False
    step = float(np.median(np.diff(ts)))
    return ts[-1] - ts[0] >= MIN_CYCLES * period and 0 < step <= period / MIN_READINGS


def choose_periods(train_timestamps: Sequence[np.ndarray]) -> tuple[str, ...]:
    """The periods that at least half of the streams' training splits (their event times, in
    order) span ``MIN_CYCLES`` times with ``MIN_READINGS`` readings per period or more."""
    if not len(train_timestamps):
        return ()
    chosen = []
    for name, period in PERIODS.items():
        ok = sum(_spans(ts, period) for ts in train_timestamps)
        if 2 * ok >= len(train_timestamps):
            chosen.append(name)
    return tuple(chosen)


def calendar_columns(periods: Sequence[str]) -> tuple[str, ...]:
    """Input names of the phases: ``calendar_day_sin``, ``calendar_day_cos``, ..."""
    return tuple(f"calendar_{p}_{f}" for p in periods for f in ("sin", "cos"))


def calendar_features(timestamps: np.ndarray, periods: Sequence[str]) -> np.ndarray:
    """``(N, 2 len(periods))`` phases of event times ``(N,)`` (epoch s); NaN where a time is
    not finite."""
    ts = np.asarray(timestamps, np.float64)
    out = np.empty((len(ts), 2 * len(periods)))
    for k, p in enumerate(periods):
        # The remainder first: epoch seconds are ~1.7e9, and their sine in float64 would lose
        # the phase's low digits; the remainder is exact.
        angle = np.fmod(ts, PERIODS[p]) * (2.0 * np.pi / PERIODS[p])
        out[:, 2 * k] = np.sin(angle)
        out[:, 2 * k + 1] = np.cos(angle)
    return out


def pinned(scaler: Scaler, n: int) -> Scaler:
    """``scaler`` with its last ``n`` features passed through unchanged (offset 0, scale 1)."""
    if n == 0:
        return scaler
    offset, scale = scaler.offset.copy(), scaler.scale.copy()
    offset[-n:], scale[-n:] = 0.0, 1.0
    return Scaler(scaler.kind, offset, scale)
