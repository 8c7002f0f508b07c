"""Calendar phases as inputs: chosen from the training data, the same in training and serving."""

import dataclasses

import numpy as np
import pytest
import torch

from detector.calendar import (
    calendar_columns,
    calendar_features,
    choose_periods,
    parse_calendar,
    pinned,
)
from detector.checkpoint import load_checkpoint, save_checkpoint
from detector.engine import Engine, EngineConfig
from detector.errors import CheckpointError, ConfigError, DataError
from detector.scaling import Scaler
from detector.series import Series
from detector.training import TrainConfig, train

DAY = 86_400.0
T = 8
TINY = TrainConfig(timesteps=T, hidden=8, layers=1, epochs=1, batch_size=64, device="cpu")


def _office(name: str = "hvac", days: float = 4.5, step: float = 300.0, seed: int = 0) -> Series:
    """A load that steps up from 08:00 to 18:00 UTC every day, with noise."""
    rng = np.random.default_rng(seed)
    ts = 1.7e9 - 1.7e9 % DAY + np.arange(0.0, days * DAY, step)
    hour = (ts % DAY) / 3600.0
    value = 10.0 + 5.0 * ((hour >= 8) & (hour < 18)) + rng.normal(0, 0.5, len(ts))
    return Series(name, ts, value[:, None], ("load",))


def test_phases_are_exact_and_continuous_across_midnight() -> None:
    ts = np.array([0.0, 6 * 3600.0, DAY - 1.0, DAY, 1.7e9 - 1.7e9 % DAY + 6 * 3600.0, np.nan])
    f = calendar_features(ts, ("day",))
    np.testing.assert_allclose(f[0], [0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(f[1], [1.0, 0.0], atol=1e-12)  # 06:00 is a quarter turn
    np.testing.assert_allclose(f[2], f[3], atol=1e-4)  # a second before midnight ~ midnight
    np.testing.assert_allclose(f[4], [1.0, 0.0], atol=1e-9)  # epoch seconds keep the phase
    assert np.isnan(f[5]).all()
    assert calendar_columns(("day", "week")) == (
        "calendar_day_sin",
        "calendar_day_cos",
        "calendar_week_sin",
        "calendar_week_cos",
    )


def test_periods_need_three_cycles_at_24_readings_each() -> None:
    five_min = np.arange(0.0, 3.2 * DAY, 300.0)
    assert choose_periods([five_min]) == ("day",)
    assert choose_periods([five_min[: int(2.9 * 288)]]) == ()  # under three days
    hourly = np.arange(0.0, 22 * DAY, 3600.0)
    assert choose_periods([hourly]) == ("day", "week")
    assert choose_periods([np.arange(0.0, 3.5 * DAY, 7200.0)]) == ()  # 12 readings a day
    assert choose_periods([np.arange(10_000.0)]) == ()  # row numbers, not times
    # most streams must qualify: one long stream among three short ones does not decide
    assert choose_periods([five_min] + [five_min[:300]] * 3) == ()
    assert choose_periods([five_min, five_min, five_min[:300]]) == ("day",)
    assert choose_periods([]) == ()


def test_calendar_setting_is_parsed_and_checked() -> None:
    assert parse_calendar("auto") == "auto"
    assert parse_calendar("off") == ()
    assert parse_calendar("week, day,week") == ("week", "day")
    with pytest.raises(ValueError, match="month"):
        parse_calendar("day,month")
    with pytest.raises(ConfigError, match="calendar"):
        TrainConfig(calendar="hourly")


def test_pinned_scaler_passes_the_phases_through() -> None:
    s = pinned(Scaler.fit(np.array([[1.0, 0.1, 0.2], [3.0, 0.3, 0.1]]), "standard"), 2)
    np.testing.assert_array_equal(s.offset[1:], [0.0, 0.0])
    np.testing.assert_array_equal(s.scale[1:], [1.0, 1.0])
    assert s.scale[0] == 1.0 and s.offset[0] == 2.0


def test_training_reads_the_phases_and_the_checkpoint_keeps_them(tmp_path) -> None:
    result = train([_office()], TINY)
    ckpt = result.to_checkpoint()
    assert ckpt.calendar == ("day",) and ckpt.inputs == ("load",)
    assert ckpt.model.args.n_inputs == 3
    scaler = ckpt.scaler_for("hvac")
    np.testing.assert_array_equal(scaler.offset[1:], 0.0)
    np.testing.assert_array_equal(scaler.scale[1:], 1.0)
    loaded = load_checkpoint(save_checkpoint(tmp_path / "m.pt", ckpt))
    assert loaded.calendar == ("day",) and loaded.inputs == ("load",)
    off = train([_office()], dataclasses.replace(TINY, calendar="off")).to_checkpoint()
    assert off.calendar == () and off.model.args.n_inputs == 1
    # event times that are row numbers: no calendar, whatever the length
    rows = dataclasses.replace(_office(), timestamps=np.arange(len(_office()), dtype=float))
    assert train([rows], TINY).to_checkpoint().calendar == ()


def test_engine_appends_the_phases_training_saw() -> None:
    """The first forecast after warm-up is the model's forecast of the scaled window, phases
    included: serving computes the same inputs as training."""
    ckpt = train([_office()], TINY).to_checkpoint()
    engine = Engine(ckpt, EngineConfig(device="cpu"))
    for s in (_office(seed=1), _office("annex", seed=2)):  # a training stream, an unseen one
        res = engine.process([s.name] * len(s), s.timestamps, s.values)
        x = np.hstack([s.values[:T], calendar_features(s.timestamps[:T], ckpt.calendar)])
        scaler = ckpt.stream_scalers.get(s.name)
        if scaler is None:  # an unseen stream fits its own on its first window, phases pinned
            scaler = pinned(Scaler.fit(x, ckpt.default_scaler.kind), 2)
            slot = engine.state.slot_of[s.name]
            np.testing.assert_allclose(engine.state.scale[slot], scaler.scale)
        with torch.no_grad():
            want = ckpt.model(torch.tensor(scaler.transform(x)[None], dtype=torch.float32))
        got = (res.forecast[T, 0] - scaler.offset[0]) / scaler.scale[0]
        assert got == pytest.approx(float(want[0, 0]), rel=1e-4, abs=1e-5)
        assert np.isnan(res.forecast[:T]).all() and np.isfinite(res.score).all()


def test_a_column_named_like_a_phase_is_refused() -> None:
    s = _office()
    clash = dataclasses.replace(
        s, values=np.hstack([s.values, s.values]), columns=("load", "calendar_day_sin")
    )
    with pytest.raises(DataError, match="calendar"):
        train([clash], dataclasses.replace(TINY, targets=("load",)))


def test_a_checkpoint_from_before_calendars_loads_without_them(tmp_path) -> None:
    ckpt = train([_office()], dataclasses.replace(TINY, calendar="off")).to_checkpoint()
    path = save_checkpoint(tmp_path / "m.pt", ckpt)
    payload = torch.load(path, weights_only=True)
    del payload["features"]["calendar"]
    torch.save(payload, path)
    assert load_checkpoint(path).calendar == ()


def test_a_checkpoint_with_an_unknown_period_is_refused(tmp_path) -> None:
    ckpt = train([_office()], TINY).to_checkpoint()
    path = save_checkpoint(tmp_path / "m.pt", ckpt)
    payload = torch.load(path, weights_only=True)
    payload["features"]["calendar"] = ["fortnight"]
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="calendar"):
        load_checkpoint(path)
    payload["features"]["calendar"] = []  # one calendar fewer than the model reads
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="calendar phases"):
        load_checkpoint(path)


def test_a_calendar_model_restores_and_continues_identically(tmp_path) -> None:
    """The windows a snapshot keeps hold the phases too: a restored engine goes on exactly."""
    ckpt = train([_office()], TINY).to_checkpoint()
    s = _office("annex", days=1.0, seed=3)
    half = len(s) // 2
    names = [s.name] * len(s)
    ref = Engine(ckpt, EngineConfig(device="cpu")).process(names, s.timestamps, s.values)
    first = Engine(ckpt, EngineConfig(device="cpu"))
    first.process(names[:half], s.timestamps[:half], s.values[:half])
    first.snapshot(tmp_path / "state.npz")
    second = Engine(ckpt, EngineConfig(device="cpu"))
    assert second.restore(tmp_path / "state.npz") == ["annex"]
    rest = second.process(names[half:], s.timestamps[half:], s.values[half:])
    np.testing.assert_allclose(rest.forecast, ref.forecast[half:], rtol=1e-6)
    np.testing.assert_allclose(rest.score, ref.score[half:], atol=1e-6)
