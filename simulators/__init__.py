"""Simulated labelled streams for tests, demos and evaluation: a sensor fleet and camera feeds.

Everything is deterministic by seed: the same config writes byte-identical files. Anomalies
(typed, with exact row intervals) are injected after the clean first 20% of every stream and
recorded both as CSV labels and in ``manifest.json``.

Example
-------
>>> from simulators import SensorFleetConfig, simulate_sensors, iter_readings
>>> sim = simulate_sensors(SensorFleetConfig(streams=3, length=600, covariates=1, seed=7))
>>> out = sim.write("runs/sim")  # doctest: +SKIP
>>> first = next(iter_readings(sim))
>>> first.stream, first.label
('sensor-0000', 0)

On the command line: ``detector simulate sensors --streams 20 --length 3000 --seed 7 --out D``.
"""

from simulators.anomalies import (
    INJECTORS,
    SENSOR_KINDS,
    VIDEO_KINDS,
    AnomalySpec,
    inject_anomalies,
    place_anomalies,
)
from simulators.sensors import (
    SensorFleetConfig,
    sensor_chunks,
    simulate_sensors,
    stream_sensor_readings,
)
from simulators.simulation import Reading, Simulation, iter_readings
from simulators.video import VideoConfig, simulate_video, stream_video_readings, video_chunks

__all__ = [
    "AnomalySpec",
    "INJECTORS",
    "SENSOR_KINDS",
    "VIDEO_KINDS",
    "inject_anomalies",
    "place_anomalies",
    "SensorFleetConfig",
    "simulate_sensors",
    "sensor_chunks",
    "stream_sensor_readings",
    "VideoConfig",
    "simulate_video",
    "video_chunks",
    "stream_video_readings",
    "Simulation",
    "Reading",
    "iter_readings",
]
