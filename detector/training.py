"""Train the LSTM forecaster the classic way: BPTT with Adam and MSE, early stopping, fixed seeds.

>>> result = train(series, TrainConfig(epochs=20))           # doctest: +SKIP
>>> result.metrics["validation"]["model"]["mae"]               # doctest: +SKIP

Two runs with the same seed, data and config give identical weights on CPU.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from detector.calendar import calendar_columns, calendar_features, choose_periods, parse_calendar
from detector.checkpoint import Checkpoint
from detector.device import resolve_device
from detector.errors import ConfigError, DataError
from detector.forecast_metrics import forecast_errors
from detector.level_tail import level_tails
from detector.model import LSTMForecaster, ModelArgs
from detector.scaling import SCALER_KINDS
from detector.series import Series
from detector.trainset import (
    SCALING_MODES,
    FeatureSpec,
    TrainSet,
    Windows,
    build_trainset,
    repeat_rates,
    resolve_features,
    train_rows,
)
from detector.windows import TorchWindows, WindowSamples

__all__ = ["TrainConfig", "EpochStats", "TrainResult", "train", "predict_windows"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Every training choice; stored in the checkpoint."""

    targets: tuple[str, ...] | None = None  # None: see trainset.resolve_features
    covariates: tuple[str, ...] = ()  # input-only columns (setpoints, commands)
    timesteps: int = 32  # window length T: readings the LSTM reads before each forecast
    hidden: int = 64  # LSTM units per layer
    layers: int = 2  # stacked LSTM layers
    dropout: float = 0.2  # between layers and before the dense head
    scaler: str = "standard"  # "standard" (mean/std) or "minmax" ([0, 1]); fitted on train rows
    scaling: str = "per_stream"  # "per_stream": one scaler per stream; "global": one for all
    val_fraction: float = 0.2  # last fraction of every stream held out for validation
    skip_labelled: bool = True  # keep windows touching labelled anomalies out of both splits
    batch_size: int = 128  # windows per Adam step
    epochs: int = 50  # upper bound; early stopping usually ends sooner
    patience: int = 5  # epochs without validation improvement before stopping
    min_delta: float = 1e-4  # relative validation-loss improvement that counts as better
    lr: float = 1e-3  # Adam learning rate
    grad_clip: float = 1.0  # max gradient norm; LSTMs otherwise blow up on spikes
    # Each training window's targets are shifted by a random level, N(0, this^2) in scaled units,
    # its forecast target with them: the model learns dynamics that do not hang on the absolute
    # level, so a stream that drifts past its training range is not forecast as if it must
    # snap back. 0 = off. Validation windows are never shifted.
    level_jitter: float = 0.0
    # Calendar phases as inputs (detector.calendar): "auto" uses each period (day, week) that the
    # training split spans 3 times or more; "off"; or a comma list ("day,week") to force them.
    calendar: str = "auto"
    seed: int = 0  # seeds weights, dropout and shuffling
    device: str = "auto"  # "auto", "cpu" or "cuda"

    def __post_init__(self) -> None:
        checks = {
            "timesteps": self.timesteps >= 1,
            "batch_size": self.batch_size >= 1,
            "epochs": self.epochs >= 1,
            "patience": self.patience >= 1,
            "lr": self.lr > 0,
            "min_delta": self.min_delta >= 0,
            "level_jitter": self.level_jitter >= 0,
            "val_fraction": 0 < self.val_fraction < 1,
        }
        try:
            parse_calendar(self.calendar)
            checks["calendar"] = True
        except ValueError:
            checks["calendar"] = False
        checks["scaler"] = self.scaler in SCALER_KINDS
        checks["scaling"] = self.scaling in SCALING_MODES
        bad = [f"{k}={getattr(self, k)!r}" for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"invalid training setting(s): {', '.join(bad)}")

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["targets"] = list(self.targets) if self.targets is not None else None
        d["covariates"] = list(self.covariates)
        return d


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    train_loss: float  # mean MSE over the epoch's batches, scaled units
    val_loss: float  # MSE on the validation split, scaled units
    seconds: float


@dataclass
class TrainResult:
    """A trained model and what it takes to save, report and plot it."""

    model: LSTMForecaster
    config: TrainConfig
    trainset: TrainSet
    history: list[EpochStats]
    best_epoch: int
    stopped_early: bool
    metrics: dict[str, object] = field(default_factory=dict)
    val_forecast: np.ndarray | None = None  # (S_val, n_targets) original units
    val_actual: np.ndarray | None = None
    val_persistence: np.ndarray | None = None
    calendar: tuple[str, ...] = ()  # calendar periods the model reads (detector.calendar)

    def to_checkpoint(self) -> Checkpoint:
        """The self-describing checkpoint of this run (see :mod:`detector.checkpoint`)."""
        ts = self.trainset
        per_stream = self.config.scaling == "per_stream"
        derived = set(calendar_columns(self.calendar))
        return Checkpoint(
            model=self.model,
            targets=ts.features.targets,
            covariates=tuple(c for c in ts.features.covariates if c not in derived),
            calendar=self.calendar,
            scaling_mode=self.config.scaling,
            stream_scalers=dict(zip(ts.names, ts.scalers, strict=True)) if per_stream else {},
            default_scaler=ts.pooled_scaler,
            train_config=self.config.to_dict(),
            metrics=self.metrics,
            meta={},
        )


def seed_everything(seed: int) -> None:
    """Seed torch and numpy so weights, dropout masks and batch order repeat."""
    torch.manual_seed(seed)
    np.random.seed(seed)


@torch.inference_mode()
def predict_windows(
    model: LSTMForecaster, X: np.ndarray | WindowSamples, device: torch.device, batch: int = 4096
) -> np.ndarray:
    """Forecasts for ``(S, T, F)`` scaled windows, ``(S, n_targets)`` scaled, in eval mode."""
    was_training = model.training
    model.eval()
    out = [
        model(torch.from_numpy(X[i : i + batch]).to(device)).cpu().numpy()
        for i in range(0, len(X), batch)
    ]
    model.train(was_training)
    return np.concatenate(out) if out else np.empty((0, model.args.n_targets), np.float32)


def _val_loss(model: LSTMForecaster, val: Windows, device: torch.device) -> float:
    pred = predict_windows(model, val.X, device)
    return float(np.mean((pred - val.y) ** 2))


def _jittered(
    X: torch.Tensor, y: torch.Tensor, sd: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``X (B, T, F)`` and ``y (B, n_targets)`` with each window's targets moved by one random
    level (covariates, which the targets may follow, stay where they are)."""
    if sd <= 0:
        return X, y
    n_t = y.shape[1]
    shift = (torch.randn((len(X), n_t), generator=gen) * sd).to(X.device, X.dtype)
    X = X.clone()
    X[:, :, :n_t] += shift[:, None, :]
    return X, y + shift


def _run_epoch(
    model: LSTMForecaster,
    opt: torch.optim.Optimizer,
    X: TorchWindows,
    y: torch.Tensor,
    cfg: TrainConfig,
    gen: torch.Generator,
    on_batch: Callable[[int, float], None],
) -> float:
    model.train()
    loss_fn = nn.MSELoss()
    order = torch.randperm(len(X), generator=gen)
    total, batches = 0.0, 0
    for start in range(0, len(X), cfg.batch_size):
        idx = order[start : start + cfg.batch_size]
        xb, yb = _jittered(X[idx], y[idx], cfg.level_jitter, gen)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()  # BPTT through the whole window
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        total += loss.item()
        batches += 1
        on_batch(batches, total / batches)
    return total / max(batches, 1)


def _to_original(ts: TrainSet, scaled: np.ndarray, streams: np.ndarray) -> np.ndarray:
    n_t = scaled.shape[1]
    offset = np.stack([s.offset[:n_t] for s in ts.scalers])[streams]
    scale = np.stack([s.scale[:n_t] for s in ts.scalers])[streams]
    return scaled.astype(np.float64) * scale + offset


def _evaluate(result: TrainResult, device: torch.device) -> None:
    """Validation MSE/MAE/MAPE in original units, model vs persistence, overall and per target."""
    ts, val = result.trainset, result.trainset.val
    n_t = len(ts.features.targets)
    actual = _to_original(ts, val.y, val.stream)
    scaled_pred = predict_windows(result.model, val.X, device)
    forecast = _to_original(ts, scaled_pred, val.stream)
    persistence = _to_original(ts, val.X.latest()[:, :n_t], val.stream)  # last reading, unchanged
    floors = ts.mape_floors[val.stream]
    per_target = {}
    for j, name in enumerate(ts.features.targets):
        per_target[name] = {
            "model": forecast_errors(actual[:, j], forecast[:, j], floors[:, j]),
            "persistence": forecast_errors(actual[:, j], persistence[:, j], floors[:, j]),
        }
    per_stream = {}
    for k, name in enumerate(ts.names):
        mine = val.stream == k
        if mine.any():
            per_stream[name] = {
                "model": forecast_errors(actual[mine], forecast[mine], floors[mine]),
                "persistence": forecast_errors(actual[mine], persistence[mine], floors[mine]),
            }
    model_all = forecast_errors(actual, forecast, floors)
    pers_all = forecast_errors(actual, persistence, floors)
    result.metrics = {
        "validation": {
            "samples": int(len(val)),
            "units": "original (each stream's own units; pooled over streams)",
            "model": model_all,
            "persistence": pers_all,
            "mae_ratio_vs_persistence": model_all["mae"] / max(pers_all["mae"], 1e-300),
            # The scorer's initial error scale for a new stream, per target, scaled units.
            "residual_std_scaled": np.std(scaled_pred - val.y, axis=0).tolist(),
            "per_target": per_target,
            "per_stream": per_stream,
        },
        "training": {
            "samples": int(len(ts.train)),
            "streams": len(ts.names),
            "epochs_run": len(result.history),
            "best_epoch": result.best_epoch,
            "stopped_early": result.stopped_early,
            "best_val_loss_scaled": min(e.val_loss for e in result.history),
            # Columns left out of the targets by default (see resolve_features).
            "indicator_inputs": list(ts.features.indicators),
            "constant_columns_ignored": list(ts.features.ignored),
        },
    }
    result.val_forecast, result.val_actual, result.val_persistence = forecast, actual, persistence


def _calendar(series: Sequence[Series], config: TrainConfig) -> tuple[str, ...]:
    """The calendar periods to read: as configured, or (``auto``) those the training splits
    span often enough (:func:`detector.calendar.choose_periods`)."""
    wanted = parse_calendar(config.calendar)
    if wanted != "auto":
        return wanted
    return choose_periods([s.timestamps[: train_rows(len(s), config.val_fraction)] for s in series])


def _with_calendar(
    series: Sequence[Series], features: FeatureSpec, calendar: tuple[str, ...]
) -> tuple[list[Series], FeatureSpec]:
    names = calendar_columns(calendar)
    clash = sorted(set(names) & {c for s in series for c in s.columns})
    if clash:
        raise DataError(f"columns {clash} are the calendar's own inputs: rename them")
    out = [
        dataclasses.replace(
            s,
            values=np.hstack([s.values, calendar_features(s.timestamps, calendar)]),
            columns=s.columns + names,
        )
        for s in series
    ]
    return out, dataclasses.replace(features, covariates=features.covariates + names)


def train(
    series: Sequence[Series],
    config: TrainConfig,
    on_progress: Callable[[str, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train one model on every stream in ``series`` and report validation metrics.

    ``on_progress(event, info)`` is called with ``"epoch_start"``, ``"batch"`` and
    ``"epoch_end"`` events, for progress bars; training does no printing itself.
    """
    notify = on_progress or (lambda event, info: None)
    features = resolve_features(series, config.targets, config.covariates)
    calendar = _calendar(series, config)
    if calendar:  # the phases join the covariates, computed from each reading's event time
        series, features = _with_calendar(series, features, calendar)
    ts = build_trainset(
        series,
        features,
        config.timesteps,
        config.val_fraction,
        config.scaler,
        config.scaling,
        config.skip_labelled,
        pinned=2 * len(calendar),
    )
    device = resolve_device(config.device)
    seed_everything(config.seed)
    args = ModelArgs(
        len(features.inputs), len(features.targets), config.hidden, config.layers, config.dropout
    )
    model = LSTMForecaster(args).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    X = TorchWindows(ts.train.X, device)  # (S, T, F), each batch gathered on the device
    y = torch.from_numpy(ts.train.y).to(device)  # (S, n_targets)
    n_batches = math.ceil(len(X) / config.batch_size)

    history: list[EpochStats] = []
    best_loss, best_state, best_epoch, stale = math.inf, None, 0, 0
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        notify("epoch_start", {"epoch": epoch, "batches": n_batches})
        train_loss = _run_epoch(
            model,
            opt,
            X,
            y,
            config,
            gen,
            lambda b, loss: notify("batch", {"batch": b, "loss": loss}),
        )
        val_loss = _val_loss(model, ts.val, device)
        history.append(EpochStats(epoch, train_loss, val_loss, time.perf_counter() - t0))
        notify("epoch_end", asdict(history[-1]) | {"best": min(best_loss, val_loss)})
        log.info("epoch %d: train %.5f val %.5f", epoch, train_loss, val_loss)
        if val_loss < best_loss * (1.0 - config.min_delta):
            best_loss, best_epoch, stale = val_loss, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if stale >= config.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)  # restore the best weights, not the last
    model.eval()
    stopped_early = len(history) < config.epochs
    result = TrainResult(model, config, ts, history, best_epoch, stopped_early, calendar=calendar)
    _evaluate(result, device)
    # The repeats test's starting rate per target (None: no pair of readings to tell).
    rates = repeat_rates(series, features.targets, config.skip_labelled)
    result.metrics["training"]["repeat_rate"] = [None if np.isnan(r) else float(r) for r in rates]
    result.metrics["training"]["calendar"] = list(calendar)
    # The level test's tail, as the training rows show it (read by the default scorer).
    result.metrics["training"]["level_tail"] = level_tails(
        series, ts.scalers, features.targets, skip_labelled=config.skip_labelled
    )
    return result
