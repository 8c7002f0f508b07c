"""Turn labelled streams into scaled training and validation windows for one shared model.

Each stream is split in time: the first ``1 - val_fraction`` of its rows train, the rest
validate. Scalers are fitted on training rows only. A validation sample forecasts a validation
row; its input window may reach back into training rows, which leaks no target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detector import calendar
from detector.errors import DataError
from detector.forecast_metrics import mape_floor
from detector.scaling import Scaler
from detector.series import Series
from detector.windows import WindowSamples, usable_starts

__all__ = [
    "FeatureSpec",
    "Windows",
    "TrainSet",
    "distinct_counts",
    "repeat_rates",
    "resolve_features",
    "build_trainset",
    "train_rows",
]

SCALING_MODES = ("per_stream", "global")


@dataclass(frozen=True)
class FeatureSpec:
    """Which columns the model forecasts (targets) and which it only reads (covariates)."""

    targets: tuple[str, ...]
    covariates: tuple[str, ...] = ()
    indicators: tuple[str, ...] = ()  # covariates the default rule chose (two values)
    ignored: tuple[str, ...] = ()  # constant columns the default rule left out (not inputs)

    @property
    def inputs(self) -> tuple[str, ...]:
        """Model input order: targets first, then covariates."""
        return self.targets + self.covariates


@dataclass(frozen=True, eq=False)
class Windows:
    """Samples of one split: ``X (S, T, F)`` (windows into the scaled rows, gathered when
    indexed), ``y (S, n_targets)`` in scaled units, and for each sample the index of its stream
    (into ``TrainSet.names``) and of its target row."""

    X: WindowSamples
    y: np.ndarray
    stream: np.ndarray
    row: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True, eq=False)
class TrainSet:
    """Everything training needs, ready as arrays."""

    features: FeatureSpec
    names: tuple[str, ...]
    scalers: tuple[Scaler, ...]  # one per stream (the same object for every stream if global)
    pooled_scaler: Scaler  # fitted on every stream's training rows together
    mape_floors: np.ndarray  # (streams, n_targets) MAPE denominator floors, original units
    train: Windows
    val: Windows


def repeat_rates(
    series: Sequence[Series], columns: Sequence[str], skip_labelled: bool = True
) -> np.ndarray:
    """Per column, how often a reading equals the one before it (at float32 precision, the
    engine's), over every pair of consecutive present readings of every stream: NaN where a
    column has no such pair. With ``skip_labelled`` a pair that touches a labelled row is left
    out, as training leaves such rows out."""
    same = np.zeros(len(columns))
    pairs = np.zeros(len(columns))
    for s in series:
        with np.errstate(over="ignore"):  # beyond float32: inf, not a reading the engine keeps
            x = s.select(list(columns)).astype(np.float32)
        ok = np.isfinite(x)
        if skip_labelled and s.labels is not None:
            ok &= (s.labels == 0)[:, None]
        both = ok[1:] & ok[:-1]
        same += (both & (x[1:] == x[:-1])).sum(axis=0)
        pairs += both.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, same / np.maximum(pairs, 1), np.nan)


def distinct_counts(series: Sequence[Series], columns: Sequence[str]) -> dict[str, int]:
    """Per column, how many distinct values its readings take over every stream, counted up to
    three (missing readings are not a value)."""
    counts = {}
    for c in columns:
        seen: set[float] = set()
        for s in series:
            v = s.values[:, s.columns.index(c)]
            seen.update(np.unique(v[np.isfinite(v)]).tolist())
            if len(seen) > 2:
                break
        counts[c] = min(len(seen), 3)
    return counts


def resolve_features(
    series: Sequence[Series], targets: Sequence[str] | None, covariates: Sequence[str] = ()
) -> FeatureSpec:
    """Check every stream has the named columns.

    ``targets=None`` means every column but the covariates, less two kinds the model cannot
    forecast, unless every column is of those kinds:

    * an indicator, two distinct values in training (a command sent, a mode, a flag): its
      changes cannot be forecast from its past, so scoring it alerts on every routine command.
      It is read as a covariate.
    * a constant, one value in training (or none): it tells the model nothing, and its input
      weights are never trained (their gradient is zero), so a first change at run time would
      move the forecast at random. It is not read at all.

    Name columns in ``targets`` or ``covariates`` to use them anyway.
    """
    if not series:
        raise DataError("no streams to train on")
    columns = series[0].columns
    indicators: list[str] = []
    ignored: list[str] = []
    if targets is None:
        targets = [c for c in columns if c not in covariates]
        if all(c in s.columns for s in series for c in targets):
            counts = distinct_counts(series, targets)
            if any(n > 2 for n in counts.values()):
                indicators = [c for c in targets if counts[c] == 2]
                covariates = (*covariates, *indicators)
                ignored = [c for c in targets if counts[c] < 2]
                targets = [c for c in targets if counts[c] > 2]
    overlap = set(targets) & set(covariates)
    if overlap:
        raise DataError(f"column(s) {sorted(overlap)} named both target and covariate")
    if not targets:
        raise DataError("no target columns left to forecast")
    wanted = list(targets) + list(covariates)
    for s in series:
        missing = [c for c in wanted if c not in s.columns]
        if missing:
            raise DataError(
                f"stream {s.name!r} has no column(s) {missing}; it has {list(s.columns)}"
            )
    return FeatureSpec(tuple(targets), tuple(covariates), tuple(indicators), tuple(ignored))


def train_rows(n: int, val_fraction: float) -> int:
    """How many of a stream's ``n`` first rows are its training split; the rest validate."""
    return int(n * (1.0 - val_fraction))


def build_trainset(
    series: Sequence[Series],
    features: FeatureSpec,
    timesteps: int,
    val_fraction: float = 0.2,
    scaler_kind: str = "standard",
    scaling: str = "per_stream",
    skip_labelled: bool = True,
    pinned: int = 0,
) -> TrainSet:
    """Split, scale and window every stream.

    ``skip_labelled`` keeps samples that touch a row labelled anomalous out of both splits, so the
    model learns what normal looks like; it reads only the labels of the data it trains on. The
    last ``pinned`` inputs are already in model units (calendar phases): no scaler moves them.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if scaling not in SCALING_MODES:
        raise ValueError(f"scaling must be one of {SCALING_MODES}, got {scaling!r}")
    inputs = [s.select(features.inputs) for s in series]
    keeps = [
        s.labels == 0 if (skip_labelled and s.labels is not None) else np.ones(len(s), bool)
        for s in series
    ]
    cuts = [train_rows(len(s), val_fraction) for s in series]
    fit_rows = [x[:cut][keep[:cut]] for x, cut, keep in zip(inputs, cuts, keeps, strict=True)]
    pooled = calendar.pinned(Scaler.fit(np.concatenate(fit_rows), scaler_kind), pinned)
    if scaling == "global":
        scalers = tuple(pooled for _ in series)
    else:
        scalers = tuple(calendar.pinned(Scaler.fit(rows, scaler_kind), pinned) for rows in fit_rows)

    n_t = len(features.targets)
    # Every stream's scaled rows, end to end; the samples of both splits are windows into them
    # (WindowSamples), so memory grows with the rows, not T times the rows.
    pairs = zip(inputs, scalers, strict=True)
    scaled = [scaler.transform(x).astype(np.float32) for x, scaler in pairs]
    first = np.concatenate([[0], np.cumsum([len(x) for x in scaled])])
    rows = np.concatenate(scaled)  # resolve_features has refused an empty list of streams
    starts, streams = [], []
    for k, (x, keep) in enumerate(zip(scaled, keeps, strict=True)):
        s = usable_starts(x, timesteps, keep) + first[k]
        starts.append(s)
        streams.append(np.full(len(s), k, np.int64))
    start, stream = np.concatenate(starts), np.concatenate(streams)
    row = start + timesteps - first[stream]  # each sample's target row within its stream
    is_train = row < np.asarray(cuts, np.int64)[stream]

    def split(mask: np.ndarray) -> Windows:
        at = start[mask]
        return Windows(
            WindowSamples(rows, at, timesteps),
            rows[at + timesteps, :n_t],
            stream[mask],
            row[mask],
        )

    train, val = split(is_train), split(~is_train)
    if len(train) == 0 or len(val) == 0:
        shortest = min(len(s) for s in series)
        raise DataError(
            f"too little usable data: {len(train)} training and {len(val)} validation windows "
            f"(timesteps={timesteps}, val_fraction={val_fraction}, "
            f"shortest stream {shortest} rows); "
            "use longer streams, fewer timesteps, or check for missing values"
        )
    floors = np.stack(
        [mape_floor(rows[:, :n_t]) if len(rows) else np.ones(n_t) for rows in fit_rows]
    )
    names = tuple(s.name for s in series)
    return TrainSet(features, names, scalers, pooled, floors, train, val)
