"""A simulated sensor fleet: seasonal, trending, correlated channels in wildly different units.

Each stream's targets are built in standard units from shared latent factors (daily and weekly
cycles, a slow trend) plus Gaussian noise, then mapped to the stream's own offset and scale.
With covariates, piecewise-constant setpoints drive the targets through a first-order lag.

Example
-------
>>> from simulators.sensors import SensorFleetConfig, simulate_sensors
>>> sim = simulate_sensors(SensorFleetConfig(streams=2, length=500, seed=1))
>>> [s.name for s in sim.series]
['sensor-0000', 'sensor-0001']
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from detector.errors import ConfigError
from detector.series import Series
from simulators.anomalies import SENSOR_KINDS, Scale, inject_anomalies, validate_kinds
from simulators.simulation import (
    Reading,
    Simulation,
    check_common,
    iter_chunks,
    stream_readings,
)

__all__ = [
    "SensorFleetConfig",
    "simulate_sensors",
    "sensor_chunks",
    "stream_sensor_readings",
    "sensor_columns",
    "DEFAULT_START",
]

DEFAULT_START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
_DAY = 86_400.0
_WEEK = 7 * _DAY
_TREND_PERIOD = 90 * _DAY  # a sinusoid this slow reads as a trend, yet stays bounded forever
_LATENTS = 2
_COVARIATE_UNIT = "%"
# With setpoints the drive dominates and the seasonal part is a disturbance on top of it.
_DRIVEN_SEASONAL_WEIGHT = 0.3
_TARGETS = (
    ("temperature", "degC"),
    ("pressure", "bar"),
    ("vibration", "mm/s"),
    ("current", "A"),
    ("voltage", "V"),
    ("flow", "m3/h"),
    ("speed", "rpm"),
    ("humidity", "%RH"),
    ("power", "kW"),
    ("level", "m"),
)


@dataclass(frozen=True)
class SensorFleetConfig:
    """How to simulate a fleet of sensor streams (validated on construction)."""

    streams: int = 20  # sensors in the fleet, one CSV each
    features: int = 4  # target channels per stream: what a detector models
    covariates: int = 0  # setpoint columns that drive the targets (inputs, never anomalous)
    length: int = 3000  # rows per stream (~2 days at one a minute)
    interval_s: float = 60.0  # seconds between rows; whole seconds, as the CSV stores them
    start: float = DEFAULT_START  # epoch seconds of the first row, fixed for reproducibility
    seed: int = 0  # same seed and config, same bytes on disk
    anomalies_per_stream: int = 2  # each placed after the clean first 20% of the stream
    anomaly_kinds: tuple[str, ...] = SENSOR_KINDS  # drawn uniformly per anomaly

    def __post_init__(self) -> None:
        check_common(self, self.streams)
        if self.features < 1:
            raise ConfigError(f"features must be at least 1, got {self.features}")
        if self.covariates < 0:
            raise ConfigError(f"covariates must be >= 0, got {self.covariates}")
        # A list from a caller becomes a tuple, so the config stays hashable and JSON-stable.
        kinds = validate_kinds(self.anomaly_kinds, SENSOR_KINDS)
        object.__setattr__(self, "anomaly_kinds", kinds)


def sensor_columns(config: SensorFleetConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(target_columns, covariate_columns)`` for ``config``."""
    targets = tuple(
        _TARGETS[i][0] if i < len(_TARGETS) else f"f{i}" for i in range(config.features)
    )
    return targets, tuple(f"setpoint_{i}" for i in range(config.covariates))


def _units(config: SensorFleetConfig) -> dict[str, str]:
    targets, covariates = sensor_columns(config)
    units = {c: (_TARGETS[i][1] if i < len(_TARGETS) else "1") for i, c in enumerate(targets)}
    return units | dict.fromkeys(covariates, _COVARIATE_UNIT)


@dataclass(frozen=True)
class _Params:
    """Per-stream constants: drawn from the seed alone, so every chunk shares them."""

    offset: np.ndarray  # (S, F)
    scale: np.ndarray  # (S, F)
    loadings: np.ndarray  # (S, K, F)
    amp: np.ndarray  # (S, 3, K): daily, weekly, trend amplitude
    phase: np.ndarray  # (S, 3, K)
    noise: np.ndarray  # (S, F) noise std in standard units
    gain: np.ndarray  # (S, C, F)
    alpha: np.ndarray  # (S, F) first-order lag coefficient per row
    switch_p: np.ndarray  # (S, C) chance per row that a setpoint changes


def _params(config: SensorFleetConfig) -> _Params:
    rng = np.random.default_rng([config.seed, 0])
    s, f, c, k = config.streams, config.features, config.covariates, _LATENTS
    # Log-uniform scales put streams' ranges orders of magnitude apart (1e-2 .. 1e4).
    scale = 10.0 ** rng.uniform(-2.0, 4.0, (s, f))
    loadings = rng.standard_normal((s, k, f))
    loadings /= np.linalg.norm(loadings, axis=1, keepdims=True)
    amp = rng.uniform([0.6, 0.2, 0.5], [1.2, 0.5, 1.5], (s, k, 3)).transpose(0, 2, 1)
    gain = rng.choice([-1.0, 1.0], (s, c, f)) * rng.uniform(1.0, 2.0, (s, c, f))
    tau = rng.uniform(3.0, 15.0, (s, f))  # time constant, in rows
    return _Params(
        offset=scale * rng.uniform(4.0, 10.0, (s, f)),
        scale=scale,
        loadings=loadings,
        amp=amp,
        phase=rng.uniform(0.0, 2 * np.pi, (s, 3, k)),
        noise=rng.uniform(0.05, 0.15, (s, f)),
        gain=gain,
        alpha=1.0 - np.exp(-1.0 / tau),
        switch_p=1.0 / rng.uniform(100.0, 400.0, (s, c)),
    )


def _setpoints(
    rng: np.random.Generator, n: int, switch_p: np.ndarray, level0: np.ndarray | None
) -> np.ndarray:
    """``(n, C)`` piecewise-constant levels in ``[-1.5, 1.5]``, starting from ``level0``."""
    table = rng.uniform(-1.5, 1.5, (n + 1, len(switch_p)))
    if level0 is not None:
        table[0] = level0
    switches = rng.random((n, len(switch_p))) < switch_p
    switches[0] = False  # the first row continues the previous chunk's level
    return np.take_along_axis(table, np.cumsum(switches, axis=0), axis=0)


def _first_order_lag(drive: np.ndarray, alpha: np.ndarray, y0: np.ndarray) -> np.ndarray:
    """``y[t] = y[t-1] + alpha * (drive[t] - y[t-1])`` from ``y[-1] = y0``, per column."""
    n = len(drive)
    out = np.empty_like(drive)
    for j, a in enumerate(alpha):
        # The impulse response a(1-a)^k, cut where it falls below 1e-12 of the input.
        taps = min(n, int(np.ceil(np.log(1e-12) / np.log1p(-a))))
        kernel = a * (1.0 - a) ** np.arange(taps)
        decay = (1.0 - a) ** np.arange(1, n + 1)
        out[:, j] = np.convolve(drive[:, j], kernel)[:n] + decay * y0[j]
    return out


def _latent(p: _Params, s: int, t: np.ndarray) -> np.ndarray:
    """``(n, K)`` latent factors at absolute times ``t``: continuous across chunks."""
    periods = np.array([_DAY, _WEEK, _TREND_PERIOD])[:, None]
    angle = 2 * np.pi * t[:, None, None] / periods + p.phase[s]
    return (p.amp[s] * np.sin(angle)).sum(axis=1)


def _stream(
    p: _Params, s: int, t: np.ndarray, rng: np.random.Generator, state: tuple | None
) -> tuple[np.ndarray, Scale, tuple]:
    """One stream's clean ``(n, F + C)`` values, its scale, and its state for the next chunk."""
    n = len(t)
    signal = _latent(p, s, t) @ p.loadings[s]
    f, c = signal.shape[1], p.gain.shape[1]
    level0, lag0 = state if state is not None else (None, None)
    setpoints = np.empty((n, 0))
    next_state = (None, None)
    if c:
        setpoints = _setpoints(rng, n, p.switch_p[s], level0)
        drive = setpoints @ p.gain[s]
        driven = _first_order_lag(drive, p.alpha[s], drive[0] if lag0 is None else lag0)
        signal = _DRIVEN_SEASONAL_WEIGHT * signal + driven
        next_state = (setpoints[-1], driven[-1])
    noisy = signal + rng.standard_normal((n, f)) * p.noise[s]
    scale = p.scale[s]
    sigma = scale * np.sqrt(signal.var(axis=0) + p.noise[s] ** 2)
    values = np.hstack([p.offset[s] + scale * noisy, 50.0 + 20.0 * setpoints])
    ones = np.ones(c)
    return (
        values,
        Scale(sigma=np.r_[sigma, ones], noise=np.r_[scale * p.noise[s], ones]),
        next_state,
    )


def _simulate_chunk(
    config: SensorFleetConfig, chunk: int, state: list | None
) -> tuple[Simulation, list]:
    p = _params(config)
    rng = np.random.default_rng([config.seed, 1, chunk])
    t = config.start + config.interval_s * np.arange(config.length, dtype=np.float64)
    targets, covariates = sensor_columns(config)
    columns = targets + covariates
    series, anomalies, states = [], [], []
    for s in range(config.streams):
        values, scale, next_state = _stream(p, s, t, rng, None if state is None else state[s])
        name = f"sensor-{s:04d}"
        labels, specs = inject_anomalies(
            values,
            t,
            name,
            columns,
            np.arange(len(targets)),
            config.anomalies_per_stream,
            config.anomaly_kinds,
            rng,
            scale,
        )
        series.append(Series(name, t.copy(), values, columns, labels))
        anomalies += specs
        states.append(next_state)
    units = _units(config)
    simulation = Simulation(
        kind="sensors",
        config=config,
        series=series,
        anomalies=anomalies,
        units={s.name: dict(units) for s in series},
        target_columns=targets,
        covariate_columns=covariates,
    )
    return simulation, states


def simulate_sensors(config: SensorFleetConfig | None = None) -> Simulation:
    """Simulate ``config.streams`` labelled sensor streams (the defaults if ``config`` is None)."""
    simulation, _ = _simulate_chunk(config or SensorFleetConfig(), 0, None)
    return simulation


def sensor_chunks(
    config: SensorFleetConfig, chunk_length: int | None = None
) -> Iterator[Simulation]:
    """Consecutive chunks forever; chunk 0 equals ``simulate_sensors`` at that length.

    Setpoints and lags carry over between chunks and seasonality follows the absolute clock,
    so the streams continue smoothly; each chunk has its own anomalies.
    """
    return iter_chunks(_simulate_chunk, config, chunk_length)


def stream_sensor_readings(
    config: SensorFleetConfig, chunk_length: int | None = None
) -> Iterator[Reading]:
    """An unbounded, time-ordered stream of every sensor's readings (see :func:`sensor_chunks`)."""
    return stream_readings(sensor_chunks(config, chunk_length))
