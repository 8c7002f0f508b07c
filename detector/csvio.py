"""Read and write the labelled CSV format, and load NAB and SKAB through the same reader.

The labelled CSV format, used everywhere detector reads a file:

* one file per stream, named ``<stream>.csv``;
* a timestamp column (ISO-8601, naive times read as UTC, or epoch seconds);
* numeric feature columns (an empty cell or ``nan`` is a missing reading);
* optionally a ``label`` column of 0/1.

Other layouts are described by a :class:`CsvLayout`; the presets ``nab`` and ``skab`` are the
layouts of the two benchmarks in ``../shared/datasets``.

Example
-------
>>> from detector.csvio import read_dataset
>>> runs = read_dataset("../shared/datasets/skab/data/valve1", preset="skab")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from detector.errors import DataError
from detector.series import Series

__all__ = [
    "CsvLayout",
    "PRESETS",
    "read_series",
    "read_dataset",
    "write_series",
    "load_nab_windows",
    "label_from_windows",
]


@dataclass(frozen=True)
class CsvLayout:
    """How a CSV file lays out a stream.

    ``delimiter=None`` sniffs ``,`` / ``;`` / tab from the header line.
    """

    delimiter: str | None = None
    timestamp_column: str = "timestamp"
    label_column: str = "label"
    ignore_columns: tuple[str, ...] = ()


PRESETS: dict[str, CsvLayout] = {
    "labelled": CsvLayout(),
    "nab": CsvLayout(delimiter=","),
    # SKAB's `changepoint` marks the start of each anomaly; it is a second label, not a feature.
    "skab": CsvLayout(
        delimiter=";",
        timestamp_column="datetime",
        label_column="anomaly",
        ignore_columns=("changepoint",),
    ),
}

_MISSING = {"", "nan", "NaN", "NAN", "null", "NULL", "None", "NA"}


def _layout(preset: str | CsvLayout) -> CsvLayout:
    if isinstance(preset, CsvLayout):
        return preset
    try:
        return PRESETS[preset]
    except KeyError:
        raise DataError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}") from None


def _sniff_delimiter(header: str) -> str:
    counts = {d: header.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else ","


def _parse_timestamp(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    when = datetime.fromisoformat(text.strip())
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _parse_float(text: str) -> float:
    text = text.strip()
    return math.nan if text in _MISSING else float(text)


def read_series(
    path: str | os.PathLike[str],
    preset: str | CsvLayout = "labelled",
    name: str | None = None,
) -> Series:
    """Read one stream from a CSV file.

    Raises :class:`DataError` naming the file, row and column of the first problem: a missing
    timestamp column, an unparsable timestamp or number, a label that is not 0/1, or no rows.
    """
    path = Path(path)
    layout = _layout(preset)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    lines = text.splitlines()
    if not lines:
        raise DataError(f"{path}: empty file, expected a header line")
    delimiter = layout.delimiter or _sniff_delimiter(lines[0])
    rows = list(csv.reader(lines, delimiter=delimiter))
    header = [h.strip() for h in rows[0]]
    if layout.timestamp_column not in header:
        raise DataError(
            f"{path}: no timestamp column {layout.timestamp_column!r}; header is {header} "
            f"(delimiter {delimiter!r}; for NAB or SKAB pass preset='nab' or 'skab')"
        )
    data = [r for r in rows[1:] if r and any(cell.strip() for cell in r)]
    if not data:
        raise DataError(f"{path}: header but no data rows")
    t_col = header.index(layout.timestamp_column)
    l_col = header.index(layout.label_column) if layout.label_column in header else None
    skip = {t_col, l_col, *(header.index(c) for c in layout.ignore_columns if c in header)}
    f_cols = [i for i in range(len(header)) if i not in skip]
    if not f_cols:
        raise DataError(f"{path}: no feature columns besides the timestamp and label")

    n = len(data)
    timestamps = np.empty(n, dtype=np.float64)
    values = np.empty((n, len(f_cols)), dtype=np.float64)
    labels = np.zeros(n, dtype=np.uint8) if l_col is not None else None
    for r, row in enumerate(data):
        line_no = r + 2
        if len(row) != len(header):
            raise DataError(f"{path}:{line_no}: {len(row)} fields, header has {len(header)}")
        try:
            timestamps[r] = _parse_timestamp(row[t_col])
        except ValueError:
            raise DataError(f"{path}:{line_no}: bad timestamp {row[t_col]!r}") from None
        for j, c in enumerate(f_cols):
            try:
                values[r, j] = _parse_float(row[c])
            except ValueError:
                raise DataError(
                    f"{path}:{line_no}: column {header[c]!r} is not a number: {row[c]!r}"
                ) from None
        if labels is not None:
            cell = row[l_col].strip()
            if cell not in ("0", "1", "0.0", "1.0"):
                raise DataError(f"{path}:{line_no}: label must be 0 or 1, got {cell!r}")
            labels[r] = cell.startswith("1")
    return Series(
        name=name if name is not None else path.stem,
        timestamps=timestamps,
        values=values,
        columns=tuple(header[c] for c in f_cols),
        labels=labels,
    )


def _csv_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.csv") if p.is_file())


def read_dataset(
    path: str | os.PathLike[str],
    preset: str | CsvLayout = "labelled",
    nab_windows: str | os.PathLike[str] | None = None,
) -> list[Series]:
    """Read a file or every ``*.csv`` below a directory, sorted by stream name.

    Streams below a directory are named by their path relative to it without ``.csv``
    (``realTweets/Twitter_volume_AAPL`` for NAB). With ``preset="nab"``, labels come from NAB's
    ``combined_windows.json``: found next to the data (``<nab>/labels``) unless ``nab_windows``
    names it. Every row inside a window is labelled 1.
    """
    root = Path(path)
    if root.is_file():
        files, base = [root], root.parent
    elif root.is_dir():
        files, base = _csv_files(root), root
        if not files:
            raise DataError(f"{root}: no .csv files below it")
    else:
        raise DataError(f"{root}: no such file or directory")
    out = [
        read_series(f, preset, name=f.relative_to(base).with_suffix("").as_posix()) for f in files
    ]
    if preset == "nab":
        out = _attach_nab_labels(out, files, nab_windows)
    return out


def _find_nab_windows(file: Path) -> Path | None:
    for parent in file.parents:
        candidate = parent / "labels" / "combined_windows.json"
        if candidate.is_file():
            return candidate
    return None


def _attach_nab_labels(
    series: list[Series], files: list[Path], windows_path: str | os.PathLike[str] | None
) -> list[Series]:
    wpath = Path(windows_path) if windows_path else _find_nab_windows(files[0])
    if wpath is None:
        raise DataError(f"{files[0]}: cannot find NAB labels/combined_windows.json above it")
    windows = load_nab_windows(wpath)
    labelled = []
    for s, f in zip(series, files, strict=True):
        key = f"{f.parent.name}/{f.name}"
        if key not in windows:
            raise DataError(f"{wpath}: no windows for {key}")
        labels = label_from_windows(s.timestamps, windows[key])
        labelled.append(replace(s, labels=labels))
    return labelled


def load_nab_windows(path: str | os.PathLike[str]) -> dict[str, list[tuple[float, float]]]:
    """Load NAB's ``combined_windows.json`` as ``{"category/file.csv": [(start, end), ...]}``.

    Times are epoch seconds (UTC), inclusive at both ends.
    """
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read NAB windows: {exc}") from None
    return {
        key: [(_parse_timestamp(a), _parse_timestamp(b)) for a, b in spans]
        for key, spans in raw.items()
    }


def label_from_windows(
    timestamps: np.ndarray, windows: Iterable[tuple[float, float]]
) -> np.ndarray:
    """``(n,)`` uint8 labels: 1 where a timestamp falls inside any ``[start, end]`` window."""
    labels = np.zeros(len(timestamps), dtype=np.uint8)
    for start, end in windows:
        labels[(timestamps >= start) & (timestamps <= end)] = 1
    return labels


def _format_timestamp(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_series(series: Series, path: str | os.PathLike[str], precision: int = 7) -> Path:
    """Write ``series`` in the labelled CSV format (ISO-8601 UTC timestamps, empty = missing).

    Numbers keep ``precision`` significant digits, so the same arrays always give the same bytes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    has_labels = series.labels is not None
    header = ["timestamp", *series.columns] + (["label"] if has_labels else [])
    fmt = f"{{:.{precision}g}}"
    lines = [",".join(header)]
    for i in range(len(series)):
        cells = [_format_timestamp(series.timestamps[i])]
        cells += ["" if math.isnan(v) else fmt.format(v) for v in series.values[i]]
        if has_labels:
            cells.append(str(int(series.labels[i])))
        lines.append(",".join(cells))
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path
