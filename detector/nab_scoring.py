"""NAB v1.1 scoring (numenta/NAB ``nab/sweeper.py``), vectorised with numpy.

Each row gets a *sweep score*: inside an anomaly window, a reward that falls from ``tpWeight``
at the window's first row towards 0 at its last; outside, a penalty of ``-fpWeight`` that is
softened just after a window. At a threshold, every window scores its earliest detection (or
``-fnWeight`` when it has none) and every detection outside windows adds its penalty. The
first ``min(floor(0.15 n), 750)`` rows of each file are probationary and not scored.

Example
-------
>>> files = load_nab_results("results/numenta", "labels/combined_windows.json")  # doctest: +SKIP
>>> nab_report(files)["profiles"]["standard"]["normalised"]  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from detector.csvio import _parse_timestamp, load_nab_windows, read_series
from detector.errors import DataError

__all__ = [
    "Profile",
    "PROFILES",
    "PUBLISHED_NAB",
    "NabFile",
    "probation_length",
    "sigma",
    "sweep_scores",
    "sweep_thresholds",
    "nab_report",
    "nab_report_detections",
    "load_nab_results",
]


@dataclass(frozen=True)
class Profile:
    """NAB cost matrix: reward per window found, cost per false positive and per window missed."""

    tp: float
    fp: float
    fn: float


PROFILES: dict[str, Profile] = {
    "standard": Profile(1.0, 0.11, 1.0),
    "reward_low_FP_rate": Profile(1.0, 0.22, 1.0),
    "reward_low_FN_rate": Profile(1.0, 0.11, 2.0),
}

# The NAB scoreboard (standard / low FP / low FN), from ../shared/datasets/README.md.
PUBLISHED_NAB: dict[str, dict[str, float]] = {
    "ARTime": {"standard": 74.9, "reward_low_FP_rate": 65.2, "reward_low_FN_rate": 80.4},
    "Numenta HTM": {"standard": 70.1, "reward_low_FP_rate": 63.1, "reward_low_FN_rate": 74.3},
    "CAD OSE": {"standard": 69.9, "reward_low_FP_rate": 67.0, "reward_low_FN_rate": 73.2},
    "Random Cut Forest": {"standard": 51.7},
    "Windowed Gaussian": {"standard": 39.6},
    "null": {"standard": 0.0, "reward_low_FP_rate": 0.0, "reward_low_FN_rate": 0.0},
}

PROBATION_PERCENT = 0.15


@dataclass(eq=False)
class NabFile:
    """One scored stream: row times (epoch s, in file order), anomaly scores, NAB windows."""

    name: str
    timestamps: np.ndarray
    scores: np.ndarray
    windows: list[tuple[float, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.timestamps = np.asarray(self.timestamps, dtype=np.float64)
        self.scores = np.asarray(self.scores, dtype=np.float64)
        if self.timestamps.ndim != 1 or self.scores.shape != self.timestamps.shape:
            raise DataError(
                f"{self.name}: {self.scores.shape} scores for {self.timestamps.shape} timestamps"
            )
        if np.isnan(self.scores).any():
            raise DataError(f"{self.name}: anomaly scores contain NaN")


def probation_length(n: int) -> float:
    """NAB's probationary length: rows ``i < probation_length(n)`` are not scored."""
    return min(math.floor(PROBATION_PERCENT * n), PROBATION_PERCENT * 5000)


def sigma(p: np.ndarray | float) -> np.ndarray:
    """NAB's scaled sigmoid ``2 / (1 + exp(5 p)) - 1``, and ``-1`` for ``p >= 3``."""
    p = np.asarray(p, dtype=np.float64)
    # Clipping first keeps exp from overflowing; the clipped values are replaced anyway.
    out = 2.0 / (1.0 + np.exp(5.0 * np.minimum(p, 3.0))) - 1.0
    return np.where(p >= 3.0, -1.0, out)


def _window_rows(file: NabFile) -> list[tuple[int, int]]:
    """``(first, last)`` row of each window, walking rows in file order as NAB does.

    NAB enters a window at the row whose timestamp equals its start and leaves it at the row
    equal to its end; rows need not be sorted (NAB's machine_temperature file steps back once).
    Here a window starts at the first row at or after the previous window with timestamp >=
    start and ends at the last row before the first one > end, the same rows on aligned labels.
    """
    ts, rows, pos = file.timestamps, [], 0
    for start, end in sorted(file.windows):
        first = pos + int(np.argmax(ts[pos:] >= start)) if pos < len(ts) else len(ts)
        if first >= len(ts) or ts[first] < start or ts[first] > end:
            continue  # no row falls inside: NAB would never enter it either
        past = ts[first:] >= end
        last = first + int(np.argmax(past)) if past.any() else len(ts) - 1
        if ts[last] > end:
            last -= 1
        rows.append((first, last))
        pos = last + 1
    return rows


def sweep_scores(file: NabFile, profile: Profile) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: scorable mask (after probation), sweep score, window id (-1 outside windows)."""
    n = len(file.timestamps)
    idx = np.arange(n)
    sweep = np.empty(n)
    window_id = np.full(n, -1, dtype=np.int64)
    rows = _window_rows(file)
    max_tp = float(sigma(-1.0))
    for k, (first, last) in enumerate(rows):
        width = last - first + 1
        i = idx[first : last + 1]
        window_id[first : last + 1] = k
        sweep[first : last + 1] = sigma(-(last - i + 1) / width) * profile.tp / max_tp
    outside = window_id < 0
    ends = np.array([r for _, r in rows], dtype=np.int64)
    widths = np.array([r - f + 1 for f, r in rows], dtype=np.float64)
    prev = np.searchsorted(ends, idx[outside], "left") - 1  # last window ending before the row
    # Before any window NAB uses position 3 (sigma = -1); a 1-row window (NAB would divide by
    # zero) gives position +inf, i.e. the full FP cost.
    pos = np.full(prev.shape, 3.0)
    after = prev >= 0
    dist = idx[outside][after] - ends[prev[after]]
    w1 = widths[prev[after]] - 1.0
    with np.errstate(divide="ignore"):
        pos[after] = np.where(w1 > 0, dist / np.where(w1 > 0, w1, 1.0), np.inf)
    sweep[outside] = sigma(pos) * profile.fp
    scorable = idx >= probation_length(n)
    return scorable, sweep, window_id


def _corpus(files: list[NabFile], profile: Profile) -> tuple[np.ndarray, ...]:
    """Scorable rows of all files concatenated: scores, sweep scores, corpus-wide window ids."""
    scores, sweeps, wins = [], [], []
    offset = 0
    for f in files:
        scorable, sweep, win = sweep_scores(f, profile)
        scores.append(f.scores[scorable])
        sweeps.append(sweep[scorable])
        w = win[scorable]
        wins.append(np.where(w >= 0, w + offset, -1))
        offset += int(win.max(initial=-1)) + 1
    cat = [np.concatenate(a) if a else np.empty(0) for a in (scores, sweeps, wins)]
    return cat[0], cat[1], cat[2].astype(np.int64)


def sweep_thresholds(files: list[NabFile], profile: Profile) -> dict[str, np.ndarray]:
    """Corpus raw score at every distinct anomaly score, as NAB's ``calcScoreByThreshold``.

    Returns arrays ``threshold`` (descending; the first is above every score, i.e. the null
    detector), ``raw``, ``tp``, ``fp``, ``windows_detected``, and ints ``windows``, ``rows``
    (scorable rows) and ``in_window`` (scorable rows inside windows).
    """
    scores, sweep, win = _corpus(files, profile)
    order = np.argsort(-scores, kind="stable")
    s, w = scores[order], win[order]
    inwin = w >= 0
    contrib = np.where(inwin, 0.0, sweep[order])  # each detected FP row adds its penalty
    # A window's part is its earliest detected row's weight (weights fall through a window), so
    # track the running minimum row index per window in threshold order; the change in that
    # row's weight is what the window adds at that step. Windows are contiguous row ranges, so
    # offsetting by window id makes one global running minimum restart at every window.
    pos = np.flatnonzero(inwin)
    grp = np.argsort(w[pos], kind="stable")
    pos, wk = pos[grp], w[pos][grp]
    big = len(scores) + 1
    runmin = np.minimum.accumulate(order[pos] - wk * big) + wk * big
    best = np.maximum(sweep[runmin], -profile.fn)
    first = np.r_[True, wk[1:] != wk[:-1]] if len(wk) else np.empty(0, dtype=bool)
    prev = np.where(first, -profile.fn, np.r_[0.0, best[:-1]])
    contrib[pos] = best - prev
    new_window = np.zeros(len(s))
    new_window[pos[first]] = 1.0
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True]) if len(s) else np.empty(0, int)
    windows = len(np.unique(win[win >= 0]))  # those with scorable rows, as NAB's null counts
    top = max(1.1, float(np.nextafter(s[0], np.inf))) if len(s) else 1.1
    return {
        "threshold": np.r_[top, s[ends]],
        "raw": -profile.fn * windows + np.r_[0.0, np.cumsum(contrib)[ends]],
        "tp": np.r_[0, np.cumsum(inwin)[ends]],
        "fp": np.r_[0, np.cumsum(~inwin)[ends]],
        "windows_detected": np.r_[0, np.cumsum(new_window)[ends]].astype(np.int64),
        "windows": windows,
        "rows": len(s),
        "in_window": int(inwin.sum()),
    }


def _profile_report(files: list[NabFile], profile: Profile, threshold: float | None) -> dict:
    sw = sweep_thresholds(files, profile)
    if threshold is None:
        # First index within rounding of the maximum: ties go to the highest threshold, as NAB's
        # stable sort of its threshold list does.
        k = int(np.flatnonzero(sw["raw"] >= sw["raw"].max() - 1e-7)[0])
    else:
        # The lowest swept score still >= threshold flags exactly the rows >= threshold (entry 0,
        # above every score, flags none), as NAB's scoreDataSet picks its row.
        k = int(np.flatnonzero(sw["threshold"][1:] >= threshold).max(initial=-1)) + 1
    windows, rows, inwin = sw["windows"], sw["rows"], sw["in_window"]
    raw, tp, fp = float(sw["raw"][k]), int(sw["tp"][k]), int(sw["fp"][k])
    null, perfect = -profile.fn * windows, profile.tp * windows
    return {
        "threshold": float(sw["threshold"][k] if threshold is None else threshold),
        "raw": raw,
        "null": null,
        "perfect": perfect,
        "normalised": 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0,
        "tp": tp,
        "fp": fp,
        "fn": inwin - tp,
        "tn": rows - inwin - fp,
        "windows_detected": int(sw["windows_detected"][k]),
        "windows": windows,
    }


def nab_report(
    files: list[NabFile],
    threshold: float | None = None,
    profiles: dict[str, Profile] | None = None,
) -> dict:
    """NAB scores per profile at the corpus-optimal threshold, or at ``threshold`` if given.

    Returns ``{"files", "rows", "windows", "threshold_mode", "profiles": {name: {threshold, raw,
    null, perfect, normalised, tp, fp, fn, tn, windows_detected, windows}}}`` (plain types).
    """
    if not files:
        raise DataError("no result files to score")
    profiles = PROFILES if profiles is None else profiles
    out = {name: _profile_report(files, p, threshold) for name, p in profiles.items()}
    any_profile = next(iter(out.values()))
    return {
        "files": len(files),
        "rows": any_profile["tp"] + any_profile["fp"] + any_profile["fn"] + any_profile["tn"],
        "windows": any_profile["windows"],
        "threshold_mode": "optimal" if threshold is None else "fixed",
        "profiles": out,
    }


def nab_report_detections(files: list[NabFile], profiles: dict[str, Profile] | None = None) -> dict:
    """NAB scores of binary decisions (``scores`` of 0/1, e.g. a detector's own alerts)."""
    for f in files:
        if not np.isin(f.scores, (0.0, 1.0)).all():
            raise DataError(f"{f.name}: detections must be 0 or 1")
    return nab_report(files, threshold=1.0, profiles=profiles)


def _read_results(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps and ``anomaly_score`` of one NAB results file; other columns are ignored."""
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    if not rows:
        raise DataError(f"{path}: empty file, expected a header line")
    header = [h.strip() for h in rows[0]]
    for col in ("timestamp", "anomaly_score"):
        if col not in header:
            raise DataError(f"{path}: no {col!r} column; header is {header}")
    t_col, s_col = header.index("timestamp"), header.index("anomaly_score")
    data = [r for r in rows[1:] if r and any(c.strip() for c in r)]
    if not data:
        raise DataError(f"{path}: header but no data rows")
    ts, scores = np.empty(len(data)), np.empty(len(data))
    for r, row in enumerate(data):
        try:
            ts[r] = _parse_timestamp(row[t_col])
            scores[r] = float(row[s_col])
        except (ValueError, IndexError):
            raise DataError(f"{path}:{r + 2}: bad timestamp or anomaly_score in {row}") from None
    return ts, scores


def _windows_key(detector: str, category: str, filename: str, windows: dict) -> str | None:
    """The ``category/file.csv`` key of ``<detector>_<file>.csv``."""
    if filename.startswith(detector + "_"):
        key = f"{category}/{filename[len(detector) + 1 :]}"
        if key in windows:
            return key
    # The directory may be renamed: fall back to the longest data-file name the file ends with.
    matches = [
        k
        for k in windows
        if k.startswith(category + "/")
        and (filename == k.split("/", 1)[1] or filename.endswith("_" + k.split("/", 1)[1]))
    ]
    return max(matches, key=len) if matches else None


def _check_against_data(files: list[NabFile], data_dir: Path) -> None:
    """Every data file has results, on the same rows."""
    expected = {p.relative_to(data_dir).as_posix() for p in data_dir.glob("*/*.csv")}
    missing = sorted(expected - {f.name for f in files})
    if missing:
        raise DataError(f"no results for {len(missing)} data file(s), e.g. {missing[:3]}")
    for f in files:
        data = read_series(data_dir / f.name, preset="nab")
        if not np.array_equal(data.timestamps, f.timestamps):
            raise DataError(f"{f.name}: results rows do not match the data file's timestamps")


def load_nab_results(
    results_dir: str | os.PathLike[str],
    windows_json: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
) -> list[NabFile]:
    """Read one detector's NAB results: ``results_dir/<category>/<detector>_<file>.csv``.

    ``results_dir`` is NAB's ``results/<detector>``; its name is the detector's prefix. Files
    outside category directories (NAB's ``*_scores.csv`` summaries) are skipped. With
    ``data_dir`` (NAB's ``data``), every data file must have results on the same timestamps.
    """
    root = Path(results_dir)
    if not root.is_dir():
        raise DataError(f"{root}: no such results directory")
    windows = load_nab_windows(windows_json)
    categories = {k.split("/", 1)[0] for k in windows}
    cat_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not any(d.name in categories for d in cat_dirs):
        nested = [d.name for d in cat_dirs if any((d / c).is_dir() for c in categories)]
        hint = f"; it holds detectors {nested}: pass {root}/<detector>" if nested else ""
        raise DataError(f"{root}: no NAB category directories (e.g. realTweets/){hint}")
    files = []
    for cat in cat_dirs:
        for path in sorted(cat.glob("*.csv")):
            key = _windows_key(root.name, cat.name, path.name, windows)
            if key is None:
                raise DataError(f"{path}: no entry for it in {windows_json}")
            ts, scores = _read_results(path)
            files.append(NabFile(key, ts, scores, windows[key]))
    if not files:
        raise DataError(f"{root}: no results .csv files in its category directories")
    if data_dir is not None:
        _check_against_data(files, Path(data_dir))
    return files
