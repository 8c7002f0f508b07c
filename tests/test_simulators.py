"""Tests for the simulators package: determinism, labels, anomaly kinds, generators and CLI."""

from __future__ import annotations

import argparse
import json
from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from detector.csvio import read_dataset
from detector.errors import ConfigError
from simulators import (
    INJECTORS,
    SENSOR_KINDS,
    VIDEO_KINDS,
    SensorFleetConfig,
    VideoConfig,
    iter_readings,
    sensor_chunks,
    simulate_sensors,
    simulate_video,
    stream_sensor_readings,
    stream_video_readings,
)
from simulators.anomalies import CLEAN_FRACTION, iso_utc
from simulators.cli import register
from simulators.injectors import Scale

SMALL = SensorFleetConfig(streams=3, features=3, covariates=1, length=400, seed=7)


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = _files(simulate_sensors(SMALL).write(tmp_path / "a"))
    b = _files(simulate_sensors(SMALL).write(tmp_path / "b"))
    other = SensorFleetConfig(streams=3, features=3, covariates=1, length=400, seed=8)
    c = _files(simulate_sensors(other).write(tmp_path / "c"))
    assert set(a) == {"manifest.json", "sensor-0000.csv", "sensor-0001.csv", "sensor-0002.csv"}
    assert a == b
    assert a["sensor-0000.csv"] != c["sensor-0000.csv"]
    assert a["manifest.json"] != c["manifest.json"]


def test_video_same_seed_same_bytes(tmp_path: Path) -> None:
    config = VideoConfig(cameras=2, dim=8, length=300, seed=3)
    a = _files(simulate_video(config).write(tmp_path / "a"))
    b = _files(simulate_video(config).write(tmp_path / "b"))
    assert a == b and "camera-0001.csv" in a


@pytest.mark.parametrize(
    "config",
    [
        SensorFleetConfig(streams=4, features=2, length=500, seed=1, anomalies_per_stream=3),
        VideoConfig(cameras=3, dim=4, length=500, seed=2, anomalies_per_stream=2),
    ],
    ids=["sensors", "video"],
)
def test_manifest_intervals_are_exactly_the_labelled_rows(tmp_path: Path, config) -> None:
    sim = (
        simulate_sensors(config)
        if isinstance(config, SensorFleetConfig)
        else simulate_video(config)
    )
    out = sim.write(tmp_path)
    manifest = json.loads((out / "manifest.json").read_text())
    series = {s.name: s for s in read_dataset(out)}
    assert sorted(series) == manifest["streams"]
    assert len(manifest["anomalies"]) == len(series) * config.anomalies_per_stream
    expected = {name: np.zeros(config.length, dtype=np.uint8) for name in series}
    for a in manifest["anomalies"]:
        lo, hi = a["start_index"], a["end_index"]
        s = series[a["stream"]]
        assert lo >= CLEAN_FRACTION * config.length and hi <= config.length
        assert expected[a["stream"]][lo:hi].sum() == 0, "anomalies overlap"
        expected[a["stream"]][lo:hi] = 1
        assert a["start"] == iso_utc(s.timestamps[lo]) and a["end"] == iso_utc(s.timestamps[hi - 1])
        assert set(a["features"]) <= set(manifest["target_columns"])
    for name, s in series.items():
        np.testing.assert_array_equal(s.labels, expected[name])


def _scaled_stream(rng: np.random.Generator, n: int = 60, f: int = 4) -> np.ndarray:
    return 100.0 + rng.standard_normal((n, f)).cumsum(axis=0)


@pytest.mark.parametrize("kind", sorted(INJECTORS))
def test_every_kind_changes_only_its_interval(kind: str) -> None:
    rng = np.random.default_rng(0)
    clean = _scaled_stream(rng)
    values = clean.copy()
    cols = np.array([1, 2])
    scale = Scale(sigma=np.full(4, 3.0), noise=np.full(4, 0.5))
    INJECTORS[kind](values, 20, 30, cols, np.random.default_rng(1), scale)
    changed = ~((values == clean) | (np.isnan(values) & np.isnan(clean)))
    assert not changed[:20].any() and not changed[30:].any()
    assert not changed[:, [0, 3]].any()
    assert changed[20:30, 1:3].all()


def _one_anomaly(kind: str, **overrides):
    """A one-stream run with a single ``kind`` anomaly, and the same run without it."""
    if kind in VIDEO_KINDS:
        base = {"cameras": 1, "dim": 6, "length": 300, "seed": 5} | overrides
        make, cfg = simulate_video, VideoConfig
    else:
        base = {"streams": 1, "features": 3, "length": 300, "seed": 5} | overrides
        make, cfg = simulate_sensors, SensorFleetConfig
    sim = make(cfg(**base, anomalies_per_stream=1, anomaly_kinds=(kind,)))
    clean = make(cfg(**base, anomalies_per_stream=0))
    return sim, clean.series[0].values


@pytest.mark.parametrize("kind", SENSOR_KINDS + VIDEO_KINDS)
def test_simulated_kind_touches_its_rows_and_features_only(kind: str) -> None:
    sim, clean = _one_anomaly(kind)
    (a,) = sim.anomalies
    assert a.kind == kind
    values, columns = sim.series[0].values, sim.series[0].columns
    lo, hi, cols = a.start_index, a.end_index, [columns.index(c) for c in a.features]
    changed = ~((values == clean) | (np.isnan(values) & np.isnan(clean)))
    outside = np.ones_like(changed)
    outside[lo:hi, cols] = False
    assert not changed[outside].any()
    assert changed[lo:hi, cols].all()
    block = values[lo:hi, cols]
    if kind == "dropout":
        assert np.isnan(block).all()
    if kind in ("stuck", "frozen_frame"):
        assert (block == values[lo - 1, cols]).all()
    if kind in ("frozen_frame", "scene_cut", "occlusion", "unusual_activity"):
        assert len(cols) == len(columns)


def test_correlation_break_touches_one_channel_and_sensor_inputs_never() -> None:
    sim, _ = _one_anomaly("correlation_break", covariates=2)
    assert len(sim.anomalies[0].features) == 1
    for kind in ("spike", "dropout", "level_shift"):
        sim, clean = _one_anomaly(kind, covariates=2)
        np.testing.assert_array_equal(sim.series[0].values[:, 3:], clean[:, 3:])


def test_spike_is_several_sigma_of_its_channel() -> None:
    sim, clean = _one_anomaly("spike")
    (a,) = sim.anomalies
    for name in a.features:
        j = sim.series[0].columns.index(name)
        jump = np.abs(sim.series[0].values[a.start_index, j] - clean[a.start_index, j])
        assert 3.0 * np.std(clean[:, j]) < jump < 20.0 * np.std(clean[:, j])


def test_ranges_differ_by_orders_of_magnitude() -> None:
    config = SensorFleetConfig(streams=20, features=4, length=200, anomalies_per_stream=0)
    sim = simulate_sensors(config)
    levels = np.array([np.median(np.abs(s.values), axis=0) for s in sim.series])
    spreads = np.array([np.std(s.values, axis=0) for s in sim.series])
    assert levels.max() / levels.min() > 1e3
    assert spreads.max() / spreads.min() > 1e3
    assert sim.units["sensor-0000"]["temperature"] == "degC"
    assert sim.target_columns == ("temperature", "pressure", "vibration", "current")


def test_covariates_drive_targets() -> None:
    config = SensorFleetConfig(
        streams=3, features=3, covariates=1, length=2000, seed=4, anomalies_per_stream=0
    )
    sim = simulate_sensors(config)
    assert sim.covariate_columns == ("setpoint_0",)
    for s in sim.series:
        setpoint = s.select(["setpoint_0"])[:, 0]
        assert len(np.unique(setpoint)) > 1, "setpoints never changed"
        for target in sim.target_columns:
            y = s.select([target])[:, 0]
            best = max(
                abs(np.corrcoef(y[lag:], setpoint[: len(y) - lag])[0, 1]) for lag in range(0, 40, 4)
            )
            assert best > 0.8, (s.name, target, best)


def test_video_dimensions() -> None:
    assert VideoConfig().dim == 128
    sim = simulate_video(VideoConfig(cameras=1, dim=512, length=100, anomalies_per_stream=1))
    assert sim.series[0].values.shape == (100, 512)
    assert sim.series[0].columns[0] == "e000" and sim.series[0].columns[-1] == "e511"
    for bad in (0, 513):
        with pytest.raises(ValueError, match="dim"):
            VideoConfig(dim=bad)


def test_bad_configs_raise_clear_errors() -> None:
    with pytest.raises(ConfigError, match="valid"):
        SensorFleetConfig(anomaly_kinds=("spike", "meteor"))
    with pytest.raises(ConfigError, match="too short"):
        simulate_sensors(SensorFleetConfig(streams=1, length=10, anomalies_per_stream=5))
    with pytest.raises(ConfigError, match="whole"):
        VideoConfig(interval_s=0.5)


def test_iter_readings_is_time_ordered_over_all_streams() -> None:
    sim = simulate_sensors(SMALL)
    readings = list(iter_readings(sim))
    assert len(readings) == SMALL.streams * SMALL.length
    times = np.array([r.timestamp for r in readings])
    assert (np.diff(times) >= 0).all()
    first = readings[: SMALL.streams]
    assert [r.stream for r in first] == sim.streams and len({r.timestamp for r in first}) == 1
    assert sum(r.label for r in readings) == sum(int(s.labels.sum()) for s in sim.series)
    assert readings[0].values.shape == (len(sim.series[0].columns),)


@pytest.mark.parametrize("kind", ["sensors", "video"])
def test_unbounded_readings_continue_and_repeat(kind: str) -> None:
    if kind == "sensors":
        config = SensorFleetConfig(streams=2, features=2, length=50, seed=3)
        make = stream_sensor_readings
    else:
        config = VideoConfig(cameras=2, dim=4, length=50, seed=3)
        make = stream_video_readings
    n = 2 * 3 * 40 + 2  # past two chunk boundaries (chunk_length 40, 2 streams)
    a = list(islice(make(config, chunk_length=40), n))
    b = list(islice(make(config, chunk_length=40), n))
    times = np.array([r.timestamp for r in a])
    expected = config.start + config.interval_s * np.repeat(np.arange(121), 2)[:n]
    np.testing.assert_array_equal(times, expected)
    assert [r.stream for r in a[:4]] == [r.stream for r in a[80:84]]
    for x, y in zip(a, b, strict=True):
        assert x.stream == y.stream and x.label == y.label
        np.testing.assert_array_equal(x.values, y.values)
    chunk0 = np.array([r.values for r in a[:80]])
    chunk1 = np.array([r.values for r in a[80:160]])
    assert not np.allclose(chunk0, chunk1, equal_nan=True)


def test_chunks_start_like_a_batch_run_and_carry_setpoints() -> None:
    config = SensorFleetConfig(streams=2, features=2, covariates=1, length=300, seed=9)
    chunks = sensor_chunks(config)
    first, second = next(chunks), next(chunks)
    batch = simulate_sensors(config)
    for s, b in zip(first.series, batch.series, strict=True):
        np.testing.assert_array_equal(s.values, b.values)
    for s0, s1 in zip(first.series, second.series, strict=True):
        assert s1.timestamps[0] == s0.timestamps[-1] + config.interval_s
        assert s1.select(["setpoint_0"])[0, 0] == s0.select(["setpoint_0"])[-1, 0]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detector")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_writes_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sim"
    args = _parser().parse_args(
        ["simulate", "sensors", "--streams", "2", "--length", "200", "--seed", "7"]
        + ["--covariates", "1", "--kinds", "spike,dropout", "--out", str(out)]
    )
    assert args.func(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["streams"] == ["sensor-0000", "sensor-0001"]
    assert manifest["config"]["seed"] == 7 and manifest["config"]["covariates"] == 1
    assert {a["kind"] for a in manifest["anomalies"]} <= {"spike", "dropout"}
    assert (out / "sensor-0001.csv").is_file()
    assert str(out) in capsys.readouterr().out

    video = tmp_path / "video"
    args = _parser().parse_args(
        [
            "simulate",
            "video",
            "--streams",
            "2",
            "--dim",
            "8",
            "--length",
            "100",
            "--out",
            str(video),
        ]
    )
    assert args.func(args) == 0
    assert json.loads((video / "manifest.json").read_text())["columns"][-1] == "e007"


def test_cli_rejects_unknown_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args(
            ["simulate", "video", "--kinds", "scene_cut,spike", "--out", str(tmp_path)]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "spike" in err and all(k in err for k in VIDEO_KINDS)
