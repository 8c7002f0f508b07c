"""Label-based detection metrics on small hand-made arrays."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detector.detection_metrics import (
    detection_delays,
    evaluate,
    evaluate_streams,
    event_counts,
    events,
    point_adjust,
    point_counts,
    random_baseline_point_adjusted_f1,
)
from detector.errors import DataError

LABELS = [0, 1, 1, 0, 0, 1, 1, 1, 0]


def test_events_runs_of_ones():
    assert events(LABELS) == [(1, 3), (5, 8)]
    assert events([1, 1, 0, 1]) == [(0, 2), (3, 4)]
    assert events([0, 0]) == [] and events([]) == []


def test_point_and_event_counts():
    flags = [0, 0, 1, 0, 1, 0, 0, 0, 1]
    assert point_counts(np.array(LABELS), np.array(flags)) == {"tp": 1, "fp": 2, "fn": 4, "tn": 2}
    c = event_counts(np.array(LABELS), np.array(flags))
    assert c == {"ranges": 2, "ranges_detected": 1, "alerts": 3, "alerts_true": 1}
    r = evaluate(LABELS, flags)
    assert r["event"]["precision"] == pytest.approx(1 / 3)
    assert r["event"]["recall"] == 0.5
    assert r["event"]["f1"] == pytest.approx(0.4)
    assert r["point"]["f1"] == pytest.approx(2 * 1 / (2 + 2 + 4))


def test_alert_spanning_two_ranges_is_one_true_alert():
    flags = [0, 1, 1, 1, 1, 1, 0, 0, 0]
    r = evaluate(LABELS, flags)["event"]
    assert (r["alerts"], r["alerts_true"], r["ranges_detected"]) == (1, 1, 2)
    assert r["precision"] == 1.0 and r["recall"] == 1.0


def test_composite_f1_charges_long_alerts_by_the_row():
    everything = evaluate(LABELS, [1] * 9)
    assert everything["event"]["f1"] == 1.0  # one alert over the whole stream: event P = R = 1
    c = everything["composite"]
    assert c["precision"] == pytest.approx(5 / 9) and c["recall"] == 1.0
    assert c["f1"] == pytest.approx(2 * (5 / 9) / (5 / 9 + 1))
    tight = evaluate(LABELS, [0, 1, 0, 0, 0, 0, 1, 0, 0])["composite"]
    assert (tight["precision"], tight["recall"], tight["f1"]) == (1.0, 1.0, 1.0)
    missed = evaluate(LABELS, [0] * 9)["composite"]
    assert missed["precision"] is None and missed["f1"] == 0.0


def test_no_anomalies_and_no_alerts():
    r = evaluate([0, 0, 0], [0, 0, 0])
    assert r["point"]["precision"] is None and r["point"]["recall"] is None
    assert r["point"]["f1"] is None and r["event"]["f1"] is None
    assert r["delay"] == {"detected_ranges": 0, "mean_rows": None, "mean_seconds": None}
    r = evaluate([0, 0, 0], [0, 1, 0])  # alerts with nothing to find: all false positives
    assert r["point"]["precision"] == 0.0 and r["point"]["f1"] == 0.0
    assert r["event"]["precision"] == 0.0 and r["event"]["f1"] == 0.0
    r = evaluate(LABELS, [0] * 9)  # anomalies and no alerts: missed everything
    assert r["point"]["precision"] is None and r["point"]["f1"] == 0.0
    assert r["event"]["recall"] == 0.0 and r["event"]["f1"] == 0.0


def test_point_adjust_fills_detected_ranges():
    flags = np.array([0, 0, 1, 0, 0, 0, 0, 0, 1])
    assert point_adjust(np.array(LABELS), flags).astype(int).tolist() == [
        0, 1, 1, 0, 0, 0, 0, 0, 1,
    ]  # fmt: skip
    r = evaluate(LABELS, flags)["point_adjusted"]
    assert (r["tp"], r["fp"], r["fn"]) == (2, 1, 3)
    assert "random_baseline_f1" in r


def test_detection_delay_rows_and_seconds():
    flags = np.array([0, 0, 1, 0, 0, 0, 0, 1, 1])
    ts = np.arange(9) * 10.0
    rows, seconds = detection_delays(np.array(LABELS), flags, ts)
    assert rows == [1, 2] and seconds == [10.0, 20.0]
    r = evaluate(LABELS, flags, ts)["delay"]
    assert r == {"detected_ranges": 2, "mean_rows": 1.5, "mean_seconds": 15.0}
    assert evaluate(LABELS, flags)["delay"]["mean_seconds"] is None


def test_random_baseline_matches_flag_rate_and_is_seeded():
    labels = np.zeros(1000, dtype=int)
    labels[100:300] = 1
    labels[600:700] = 1
    a = random_baseline_point_adjusted_f1(labels, 0.05, seed=3)
    assert a == random_baseline_point_adjusted_f1(labels, 0.05, seed=3)
    # PA-F1 flatters random flags: 5% of rows flagged at random catches both long ranges.
    assert a > 0.9
    assert random_baseline_point_adjusted_f1(labels, 0.0) == 0.0
    flags = np.zeros(1000, dtype=int)
    flags[:50] = 1  # the detector's rate, 5%
    assert evaluate(labels, flags, seed=3)["point_adjusted"]["random_baseline_f1"] == a
    with pytest.raises(DataError):
        random_baseline_point_adjusted_f1(labels, 1.5)


def test_streams_pool_counts_and_serialise():
    s1 = (np.array(LABELS), np.array([0, 0, 1, 0, 1, 0, 0, 0, 1]), np.arange(9.0))
    s2 = (np.array([0, 0, 1, 1]), np.array([0, 0, 0, 1]), np.arange(4.0))
    r = evaluate_streams([s1, s2])
    assert r["streams"] == 2 and r["rows"] == 13
    assert r["point"]["tp"] == 2 and r["point"]["fn"] == 5
    assert r["event"]["ranges"] == 3 and r["event"]["ranges_detected"] == 2
    assert r["delay"]["mean_rows"] == 1.0 and r["delay"]["mean_seconds"] == 1.0
    json.dumps(r)  # plain types only
    assert evaluate_streams([s1, s2[:2]])["delay"]["mean_seconds"] is None


def test_bad_inputs_raise_data_error():
    with pytest.raises(DataError, match="0/1"):
        evaluate([0, 2], [0, 1])
    with pytest.raises(DataError, match="length"):
        evaluate([0, 1], [0, 1, 0])
    with pytest.raises(DataError, match="expected"):
        evaluate_streams([(np.zeros(2),)])
