"""Simulated camera feeds as per-frame feature embeddings (what a frozen CNN/CLIP encoder emits).

Per camera, a unit scene vector drifts slowly (a random walk, renormalised), a periodic activity
level mixes in the camera's usual activity direction, and small noise is added to each frame.

Example
-------
>>> from simulators.video import VideoConfig, simulate_video
>>> sim = simulate_video(VideoConfig(cameras=2, dim=16, length=500))
>>> sim.series[0].values.shape
(500, 16)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from detector.errors import ConfigError
from detector.series import Series
from simulators.anomalies import VIDEO_KINDS, Scale, inject_anomalies, validate_kinds
from simulators.sensors import DEFAULT_START
from simulators.simulation import (
    Reading,
    Simulation,
    check_common,
    iter_chunks,
    stream_readings,
)

__all__ = [
    "VideoConfig",
    "simulate_video",
    "video_chunks",
    "stream_video_readings",
    "video_columns",
    "MAX_DIM",
]

MAX_DIM = 512


@dataclass(frozen=True)
class VideoConfig:
    """How to simulate a network of cameras (validated on construction)."""

    cameras: int = 8  # feeds, one CSV each
    dim: int = 128  # embedding size, 1..512 (columns e000..)
    length: int = 3000  # frames per camera
    interval_s: float = 1.0  # seconds between frames; whole seconds, as the CSV stores them
    start: float = DEFAULT_START  # epoch seconds of the first frame
    seed: int = 0  # same seed and config, same bytes on disk
    anomalies_per_stream: int = 2  # each placed after the clean first 20% of the feed
    anomaly_kinds: tuple[str, ...] = VIDEO_KINDS  # drawn uniformly per anomaly
    # The daily busy/quiet cycle, compressed so a default run shows five of them.
    activity_period_s: float = 600.0
    drift: float = 0.01  # norm of the scene's random-walk step per frame
    noise: float = 0.02  # norm of the per-frame noise vector

    def __post_init__(self) -> None:
        check_common(self, self.cameras)
        if not 1 <= self.dim <= MAX_DIM:
            raise ConfigError(f"dim must be between 1 and {MAX_DIM}, got {self.dim}")
        if self.activity_period_s <= 0:
            raise ConfigError(f"activity_period_s must be > 0, got {self.activity_period_s}")
        if self.drift < 0 or self.noise < 0:
            raise ConfigError(f"drift and noise must be >= 0, got {self.drift}, {self.noise}")
        kinds = validate_kinds(self.anomaly_kinds, VIDEO_KINDS)
        object.__setattr__(self, "anomaly_kinds", kinds)


def video_columns(config: VideoConfig) -> tuple[str, ...]:
    """Embedding column names ``e000, e001, ...``."""
    return tuple(f"e{i:03d}" for i in range(config.dim))


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


@dataclass(frozen=True)
class _Params:
    """Per-camera constants: drawn from the seed alone, so every chunk shares them."""

    scene0: np.ndarray  # (S, D) unit scene at the very start
    direction: np.ndarray  # (S, D) unit direction of the camera's usual activity
    amplitude: np.ndarray  # (S,) peak activity
    phase: np.ndarray  # (S,)


def _params(config: VideoConfig) -> _Params:
    rng = np.random.default_rng([config.seed, 0])
    s, d = config.cameras, config.dim
    return _Params(
        scene0=_unit_rows(rng.standard_normal((s, d))),
        direction=_unit_rows(rng.standard_normal((s, d))),
        amplitude=rng.uniform(0.3, 0.6, s),
        phase=rng.uniform(0.0, 2 * np.pi, s),
    )


def _camera(
    config: VideoConfig,
    p: _Params,
    s: int,
    t: np.ndarray,
    rng: np.random.Generator,
    scene0: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """One camera's clean ``(n, D)`` frames and its scene for the next chunk."""
    n, d = len(t), config.dim
    # Per-coordinate step std drift/sqrt(d), so each step's norm is about `drift`.
    steps = rng.standard_normal((n, d)) * (config.drift / np.sqrt(d))
    scene = _unit_rows(scene0 + np.cumsum(steps, axis=0))
    cycle = 0.5 * (1.0 - np.cos(2 * np.pi * t / config.activity_period_s + p.phase[s]))
    jitter = 1.0 + 0.1 * rng.standard_normal(n)
    activity = (p.amplitude[s] * cycle * jitter)[:, None] * p.direction[s]
    frames = _unit_rows(scene + activity)
    frames += rng.standard_normal((n, d)) * (config.noise / np.sqrt(d))
    return frames, scene[-1]


def _simulate_chunk(
    config: VideoConfig, chunk: int, state: np.ndarray | None
) -> tuple[Simulation, np.ndarray]:
    p = _params(config)
    rng = np.random.default_rng([config.seed, 1, chunk])
    t = config.start + config.interval_s * np.arange(config.length, dtype=np.float64)
    columns = video_columns(config)
    scenes = p.scene0 if state is None else state
    series, anomalies, next_scenes = [], [], []
    for s in range(config.cameras):
        frames, last_scene = _camera(config, p, s, t, rng, scenes[s])
        name = f"camera-{s:04d}"
        noise = np.full(config.dim, config.noise / np.sqrt(config.dim))
        scale = Scale(sigma=np.maximum(frames.std(axis=0), noise), noise=noise)
        labels, specs = inject_anomalies(
            frames,
            t,
            name,
            columns,
            np.arange(config.dim),
            config.anomalies_per_stream,
            config.anomaly_kinds,
            rng,
            scale,
        )
        series.append(Series(name, t.copy(), frames, columns, labels))
        anomalies += specs
        next_scenes.append(last_scene)
    simulation = Simulation(
        kind="video",
        config=config,
        series=series,
        anomalies=anomalies,
        units={s.name: {} for s in series},
        target_columns=columns,
    )
    return simulation, np.array(next_scenes)


def simulate_video(config: VideoConfig | None = None) -> Simulation:
    """Simulate ``config.cameras`` labelled embedding streams (the defaults if None)."""
    simulation, _ = _simulate_chunk(config or VideoConfig(), 0, None)
    return simulation


def video_chunks(config: VideoConfig, chunk_length: int | None = None) -> Iterator[Simulation]:
    """Consecutive chunks forever; chunk 0 equals ``simulate_video`` at that length.

    Each scene walk continues from where the last chunk left it and activity follows the
    absolute clock; each chunk has its own anomalies.
    """
    return iter_chunks(_simulate_chunk, config, chunk_length)


def stream_video_readings(
    config: VideoConfig, chunk_length: int | None = None
) -> Iterator[Reading]:
    """An unbounded, time-ordered stream of frames from every camera (see :func:`video_chunks`)."""
    return stream_readings(video_chunks(config, chunk_length))
