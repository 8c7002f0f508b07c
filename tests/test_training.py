import dataclasses

import numpy as np
import pytest
import torch

from detector.errors import ConfigError, DataError
from detector.forecast_metrics import forecast_errors
from detector.training import TrainConfig, predict_windows, train
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
