from pathlib import Path

import numpy as np
import pytest

from detector.csvio import read_dataset, read_series, write_series
from detector.errors import DataError
from detector.series import Series


def test_round_trip_keeps_values_labels_and_missing(tmp_path: Path) -> None:
    values = np.array([[1.5, 1e-4], [np.nan, 2e5], [3.25, -7.0]])
    s = Series(
        "pump-1",
        np.array([1.7e9, 1.7e9 + 60, 1.7e9 + 120]),
        values,
        ("p", "q"),
        np.array([0, 1, 0], np.uint8),
    )
    back = read_series(write_series(s, tmp_path / "pump-1.csv"))
    assert back.name == "pump-1" and back.columns == ("p", "q")
    np.testing.assert_allclose(back.values, values, rtol=1e-6)
    assert np.isnan(back.values[1, 0])
    np.testing.assert_array_equal(back.labels, [0, 1, 0])
    np.testing.assert_array_equal(back.timestamps, s.timestamps)


def test_iso_and_epoch_timestamps_agree(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("timestamp,x\n2026-01-01T00:00:00Z,1\n2026-01-01 00:01:00,2\n")
    (tmp_path / "b.csv").write_text("timestamp,x\n1767225600,1\n1767225660,2\n")
    a, b = read_dataset(tmp_path)
    np.testing.assert_array_equal(a.timestamps, b.timestamps)
    assert a.labels is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("time,x\n1,2\n", "no timestamp column 'timestamp'"),
        ("timestamp,x\n", "no data rows"),
        ("timestamp,x\nyesterday,1\n", "bad timestamp 'yesterday'"),
        ("timestamp,x\n1,abc\n", "column 'x' is not a number: 'abc'"),
        ("timestamp,x,label\n1,2,5\n", "label must be 0 or 1"),
        ("timestamp,x\n1,2,3\n", "3 fields, header has 2"),
        ("timestamp,label\n1,0\n", "no feature columns"),
    ],
)
def test_bad_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        read_series(path)


def test_missing_path_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_dataset(tmp_path / "nope")
    with pytest.raises(DataError, match="no .csv files"):
        read_dataset(tmp_path)


def test_nab_preset_reads_every_series_with_window_labels(datasets: Path) -> None:
    series = read_dataset(datasets / "nab" / "data", preset="nab")
    assert len(series) == 58
    by_name = {s.name: s for s in series}
    s = by_name["realKnownCause/machine_temperature_system_failure"]
    assert s.columns == ("value",) and len(s) == 22695
    # NAB marks four windows in this file; every window contributes labelled rows.
    runs = np.flatnonzero(np.diff(np.concatenate([[0], s.labels, [0]])) == 1)
    assert len(runs) == 4
    assert by_name["artificialNoAnomaly/art_daily_no_noise"].labels.sum() == 0


def test_skab_preset_reads_runs_and_anomaly_free_data(datasets: Path) -> None:
    runs = read_dataset(datasets / "skab" / "data" / "valve1", preset="skab")
    assert len(runs) == 16
    first = runs[0]
    assert first.columns[0] == "Accelerometer1RMS" and len(first.columns) == 8
    assert "changepoint" not in first.columns and first.labels.sum() > 0
    free = read_series(datasets / "skab" / "data" / "anomaly-free" / "anomaly-free.csv", "skab")
    assert free.labels is None and len(free) > 9000
    assert np.all(np.diff(free.timestamps) > 0)
