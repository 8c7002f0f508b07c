import dataclasses

import numpy as np
import pytest
import torch

from detector.errors import ConfigError, DataError
from detector.forecast_metrics import forecast_errors
from detector.series import Series
from detector.training import TrainConfig, _jittered, predict_windows, train
from detector.trainset import distinct_counts, repeat_rates, resolve_features
from tests.conftest import sine_fleet

FAST = TrainConfig(
    timesteps=16, hidden=16, layers=2, epochs=40, patience=2, batch_size=64, device="cpu"
)


@pytest.fixture(scope="module")
def trained():
    return train(sine_fleet(), FAST)


def test_early_stopping_triggers_and_restores_best_weights(trained) -> None:
    assert trained.stopped_early and len(trained.history) < FAST.epochs
    best = min(trained.history, key=lambda e: e.val_loss)
    assert trained.best_epoch == best.epoch
    assert len(trained.history) == trained.best_epoch + FAST.patience
    val = trained.trainset.val
    pred = predict_windows(trained.model, val.X, torch.device("cpu"))
    assert float(np.mean((pred - val.y) ** 2)) == pytest.approx(best.val_loss, rel=1e-5)


def test_forecast_beats_persistence_on_validation(trained) -> None:
    val = trained.metrics["validation"]
    assert val["model"]["mae"] < val["persistence"]["mae"]
    for target in ("a", "b"):
        m = val["per_target"][target]
        assert m["model"]["mae"] < m["persistence"]["mae"]
    assert set(val["per_stream"]) == {"s0", "s1", "s2"}


def test_same_seed_gives_identical_weights_and_metrics() -> None:
    cfg = dataclasses.replace(FAST, epochs=2)
    a, b = train(sine_fleet(), cfg), train(sine_fleet(), cfg)
    for (name, wa), wb in zip(
        a.model.state_dict().items(), b.model.state_dict().values(), strict=True
    ):
        assert torch.equal(wa, wb), name
    assert a.metrics == b.metrics
    c = train(sine_fleet(), dataclasses.replace(cfg, seed=1))
    assert not torch.equal(a.model.head.weight, c.model.head.weight)


def test_metrics_are_in_original_units() -> None:
    cfg = dataclasses.replace(FAST, epochs=3)
    base = train(sine_fleet(), cfg).metrics["validation"]["model"]
    big = train(sine_fleet(scale=1000.0, offset=5.0), cfg).metrics["validation"]["model"]
    # Per-stream standard scaling makes the scaled problem the same, so errors scale with units.
    assert big["mae"] / base["mae"] == pytest.approx(1000.0, rel=0.02)
    assert big["mse"] / base["mse"] == pytest.approx(1e6, rel=0.04)


def test_validation_split_is_the_end_of_each_stream(trained) -> None:
    ts = trained.trainset
    cut = int(600 * (1 - FAST.val_fraction))
    assert ts.train.row.max() < cut <= ts.val.row.min()
    assert set(np.unique(ts.val.stream)) == {0, 1, 2}


def test_scalers_fit_on_training_rows_only() -> None:
    fleet = sine_fleet(streams=1)
    s = fleet[0]
    s.values[-50:] += 1e6  # a huge shift inside the validation part only
    ts = train(fleet, dataclasses.replace(FAST, epochs=1)).trainset
    assert abs(ts.scalers[0].offset[0]) < 10


def test_labelled_rows_are_kept_out_when_asked() -> None:
    s = sine_fleet(streams=1)[0]
    labels = np.zeros(len(s), np.uint8)
    labels[100:110] = 1
    s = dataclasses.replace(s, labels=labels)
    cfg = dataclasses.replace(FAST, epochs=1)
    rows = train([s], cfg).trainset.train.row
    assert not np.any((rows >= 100) & (rows < 110 + cfg.timesteps))
    rows = train([s], dataclasses.replace(cfg, skip_labelled=False)).trainset.train.row
    assert np.any((rows >= 100) & (rows < 110))


def test_targets_and_covariates() -> None:
    cfg = dataclasses.replace(FAST, epochs=1, targets=("a",), covariates=("b",))
    r = train(sine_fleet(), cfg)
    assert r.model.args.n_inputs == 2 and r.model.args.n_targets == 1
    assert list(r.metrics["validation"]["per_target"]) == ["a"]
    with pytest.raises(DataError, match="no column"):
        train(sine_fleet(), dataclasses.replace(cfg, covariates=("c",)))
    with pytest.raises(DataError, match="both target and covariate"):
        train(sine_fleet(), dataclasses.replace(cfg, targets=("a", "b")))


def test_bad_settings_and_too_little_data_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="timesteps=0.*scaler='robust'"):
        TrainConfig(timesteps=0, scaler="robust")
    with pytest.raises(DataError, match="too little usable data"):
        train(sine_fleet(n=20), FAST)


def test_mape_is_finite_near_zero() -> None:
    actual = np.array([[0.0], [1e-9], [2.0]])
    m = forecast_errors(actual, actual + 0.01, floor=np.array([0.1]))
    assert np.isfinite(m["mape"]) and m["mape"] == pytest.approx(100 * (0.1 + 0.1 + 0.005) / 3)


def test_level_jitter_moves_each_windows_targets_and_forecast_together() -> None:
    X = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)  # 2 targets + 1 covariate
    y = torch.ones(2, 2)
    gen = torch.Generator().manual_seed(0)
    assert _jittered(X, y, 0.0, gen) == (X, y)
    Xj, yj = _jittered(X, y, 1.0, gen)
    shift = yj - y  # (2, 2): one level per window and target
    assert torch.allclose(Xj[:, :, :2] - X[:, :, :2], shift[:, None, :].expand(2, 4, 2))
    assert torch.equal(Xj[:, :, 2], X[:, :, 2])  # covariates stay
    assert shift[0, 0] != shift[1, 0] and shift[0, 0] != shift[0, 1]
    assert torch.equal(X, torch.arange(24, dtype=torch.float32).reshape(2, 4, 3))  # a copy
    with pytest.raises(ConfigError, match="level_jitter"):
        TrainConfig(level_jitter=-1.0)


def _ar1(n: int, level: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros(n)
    for i in range(1, n):
        x[i] = 0.5 * x[i - 1] + rng.normal(0, 1.0)
    return x + level


def test_level_jitter_keeps_a_drifted_stream_near_persistence() -> None:
    # A mean-reverting stream: a model that learnt its training level forecasts a stream that
    # has drifted 4 sd away as snapping back; one trained with shifted windows does not, and
    # still beats persistence in range.
    rows = _ar1(3000, 0.0, 0)
    series = [Series("s", 60.0 * np.arange(3000), rows[:, None], ("v",), None)]
    cfg = dataclasses.replace(FAST, timesteps=8, hidden=8, epochs=4, patience=4)
    plain = train(series, cfg)
    jittered = train(series, dataclasses.replace(cfg, level_jitter=1.0))

    def mse_vs_persistence(result, level: float) -> float:
        w = np.lib.stride_tricks.sliding_window_view(_ar1(600, level, 1), 9)  # (S, 9)
        sc = result.trainset.scalers[0]
        X = sc.transform(w[:, :8, None]).astype(np.float32)
        pred = sc.inverse(predict_windows(result.model, X, torch.device("cpu")))[:, 0]
        return float(np.mean((pred - w[:, 8]) ** 2) / np.mean((w[:, 7] - w[:, 8]) ** 2))

    drift = 4.0 * float(np.std(rows))
    assert mse_vs_persistence(plain, drift) > 1.3  # the failure the jitter is for
    assert mse_vs_persistence(jittered, drift) < 1.15
    assert mse_vs_persistence(jittered, 0.0) < 1.0


def _with_flags(n: int, seed: int, new_command: bool) -> Series:
    """A seasonal reading, a command flag pulsing at random, a mode that is 2 or 7, a constant,
    and a second command that fires only when ``new_command`` (never in training)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    value = np.sin(2 * np.pi * t / 48) + rng.normal(0, 0.05, n)
    cmd = (rng.random(n) < 0.01).astype(float)
    mode = np.where((t // 300) % 2 == 0, 2.0, 7.0)
    new = np.zeros(n)
    if new_command:
        new[rng.choice(n, 5, replace=False)] = 1.0
    values = np.stack([value, cmd, mode, np.full(n, 5.0), new], axis=1)
    return Series(f"f{seed}", 1.7e9 + 60.0 * t, values, ("value", "cmd", "mode", "on", "new"), None)


def test_indicators_are_read_as_inputs_and_constants_not_at_all_by_default() -> None:
    fleet = [_with_flags(400, k, False) for k in range(2)]
    columns = ("value", "cmd", "mode", "on", "new")
    assert distinct_counts(fleet, columns) == {"value": 3, "cmd": 2, "mode": 2, "on": 1, "new": 1}
    spec = resolve_features(fleet, None, ("mode",))
    assert spec.targets == ("value",) and spec.covariates == ("mode", "cmd")
    assert spec.ignored == ("on", "new")
    # Named columns are used as asked; a column with a third value anywhere is a reading.
    named = resolve_features(fleet, ("value", "cmd"), ("on",))
    assert named.targets == ("value", "cmd") and named.covariates == ("on",) and not named.ignored
    fleet[1].values[10, 1] = 0.5
    assert resolve_features(fleet, None, ()).targets == ("value", "cmd")
    # Missing readings are not a value; if no column is a reading, all are forecast.
    fleet[1].values[10, 1] = np.nan
    assert resolve_features(fleet, None, ()).targets == ("value",)
    only_flags = [
        Series(s.name, s.timestamps, s.select(("cmd", "on")), ("cmd", "on"), None) for s in fleet
    ]
    assert resolve_features(only_flags, None, ()).targets == ("cmd", "on")


def test_forecasting_command_flags_alerts_on_routine_commands_and_reading_them_does_not() -> None:
    """Why the rule exists: a command pulse cannot be forecast, and one that training never saw
    is infinitely surprising, so scoring flags turns every command into an alert."""
    from detector.engine import EngineConfig
    from detector.evaluation import score_streams

    fleet = [_with_flags(1000, k, False) for k in range(2)]
    test = [_with_flags(1000, 10 + k, True) for k in range(2)]
    cfg = dataclasses.replace(FAST, epochs=5)
    default = train(fleet, cfg)
    assert default.metrics["training"]["indicator_inputs"] == ["cmd", "mode"]
    assert default.metrics["training"]["constant_columns_ignored"] == ["on", "new"]
    flags = train(fleet, dataclasses.replace(cfg, targets=("value", "cmd", "mode", "on", "new")))
    assert flags.metrics["training"]["indicator_inputs"] == []

    def alerts_on_commands(result) -> int:
        """Alerts that open within three readings of a command or a mode switch."""
        out = score_streams(result.to_checkpoint(), test, EngineConfig())
        count = 0
        for s, o in zip(test, out, strict=True):
            opened = np.flatnonzero(np.diff(o.flag.astype(int)) == 1) + 1
            changes = np.flatnonzero(np.any(np.diff(s.values[:, 1:], axis=0) != 0, axis=1)) + 1
            count += sum(bool(np.any((a >= changes) & (a <= changes + 3))) for a in opened)
        return count

    assert alerts_on_commands(flags) >= 6  # most of the 10 unseen commands, and mode switches
    assert alerts_on_commands(default) == 0


def test_repeat_rates_count_equal_neighbours_of_present_normal_readings() -> None:
    ts = np.arange(8.0)
    x = np.array([[1, 5], [1, 6], [1, np.nan], [2, 6], [2, 6], [3, 7], [3, 7 + 1e-12], [4, 8]])
    a = Series("a", ts, x, ("u", "v"), np.array([0, 0, 0, 0, 0, 0, 0, 1]))
    # u: pairs 0-1 to 5-6 (6-7 touches a labelled row), 4 of 6 equal.
    # v: a missing reading makes no pair; 7 and 7 + 1e-12 are equal in float32: 2 of 4.
    np.testing.assert_allclose(repeat_rates([a], ("u", "v")), [4 / 6, 0.5])
    np.testing.assert_allclose(repeat_rates([a], ("u",), skip_labelled=False), [4 / 7])
    # Pooled over streams; no pair at all is NaN.
    b = Series("b", ts[:2], np.array([[9.0, np.nan], [9.0, 1.0]]), ("u", "v"), None)
    np.testing.assert_allclose(repeat_rates([a, b], ("u",)), [5 / 7])
    assert np.isnan(repeat_rates([b], ("v",))[0])


def test_training_records_each_targets_repeat_rate(trained) -> None:
    rates = trained.metrics["training"]["repeat_rate"]
    assert len(rates) == len(trained.trainset.features.targets)
    assert all(0.0 <= r < 0.05 for r in rates)  # sines in noise rarely repeat a reading
