"""What a simulator returns, how it is written to disk, and how it is replayed as readings."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain, count
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from detector.csvio import write_series
from detector.errors import ConfigError
from detector.series import Series
from simulators.anomalies import AnomalySpec, iso_utc

__all__ = [
    "Simulation",
    "Reading",
    "iter_readings",
    "iter_chunks",
    "stream_readings",
    "check_common",
    "MANIFEST",
    "MANIFEST_VERSION",
]

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True, eq=False)
class Simulation:
    """Simulated streams with their ground truth.

    Attributes
    ----------
    kind:
        ``"sensors"`` or ``"video"``.
    config:
        The config dataclass that produced it.
    series:
        One labelled :class:`~detector.series.Series` per stream, in stream order.
    anomalies:
        Every injected anomaly, by stream then start row.
    units:
        ``{stream: {column: unit}}`` (empty per stream for unitless video embeddings).
    target_columns, covariate_columns:
        Columns to model, and input-only columns that drive them (empty for video).
    """

    kind: Literal["sensors", "video"]
    config: Any
    series: list[Series]
    anomalies: list[AnomalySpec]
    units: dict[str, dict[str, str]] = field(default_factory=dict)
    target_columns: tuple[str, ...] = ()
    covariate_columns: tuple[str, ...] = ()

    @property
    def streams(self) -> list[str]:
        """Stream names, in order."""
        return [s.name for s in self.series]

    def manifest(self) -> dict[str, Any]:
        """The JSON-ready description written as ``manifest.json``."""
        first = self.series[0]
        return {
            "version": MANIFEST_VERSION,
            "kind": self.kind,
            "config": dataclasses.asdict(self.config),
            "start": iso_utc(float(first.timestamps[0])),
            "rows": len(first),
            "streams": self.streams,
            "files": {name: f"{name}.csv" for name in self.streams},
            "columns": list(first.columns),
            "target_columns": list(self.target_columns),
            "covariate_columns": list(self.covariate_columns),
            "units": self.units,
            "anomalies": [a.to_dict() for a in self.anomalies],
        }

    def write(self, out_dir: str | os.PathLike[str]) -> Path:
        """Write ``<stream>.csv`` per stream and ``manifest.json`` into ``out_dir``; return it.

        The manifest goes last, so its presence means every CSV is complete.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for s in self.series:
            write_series(s, out / f"{s.name}.csv")
        text = json.dumps(self.manifest(), indent=2, sort_keys=True) + "\n"
        (out / MANIFEST).write_text(text)
        return out


@dataclass(frozen=True, slots=True)
class Reading:
    """One row of one stream, as a producer would publish it.

    ``values`` is a read-only view into the simulation's arrays (NaN = missing).
    """

    stream: str
    timestamp: float
    values: np.ndarray
    label: int
    columns: tuple[str, ...] = ()


def iter_readings(simulation: Simulation) -> Iterator[Reading]:
    """Yield every row of every stream in global time order.

    Rows with equal timestamps come in stream order, so with a shared clock it is all streams
    at ``t0``, then all at ``t1``, and so on.
    """
    series = simulation.series
    times = np.concatenate([s.timestamps for s in series])
    which = np.concatenate([np.full(len(s), i) for i, s in enumerate(series)])
    row = np.concatenate([np.arange(len(s)) for s in series])
    # lexsort sorts by the last key first: time, then stream index breaks ties stably.
    order = np.lexsort((which, times))
    views = []
    for s in series:
        v = s.values.view()
        v.flags.writeable = False
        views.append(v)
    for i, r in zip(which[order].tolist(), row[order].tolist(), strict=True):
        s = series[i]
        label = int(s.labels[r]) if s.labels is not None else 0
        yield Reading(s.name, float(s.timestamps[r]), views[i][r], label, s.columns)


C = TypeVar("C")
State = TypeVar("State")


def iter_chunks(
    simulate_chunk: Callable[[C, int, State | None], tuple[Simulation, State]],
    config: C,
    chunk_length: int | None,
) -> Iterator[Simulation]:
    """Simulate consecutive chunks forever, carrying the simulator's state between them.

    Chunk ``k`` is ``config`` with ``length=chunk_length`` and its start moved on by ``k``
    chunks; the simulator seeds its randomness from ``(seed, k)``.
    """
    length = config.length if chunk_length is None else chunk_length
    base = dataclasses.replace(config, length=length)
    state = None
    for k in count():
        chunk_config = dataclasses.replace(base, start=base.start + k * length * base.interval_s)
        simulation, state = simulate_chunk(chunk_config, k, state)
        yield simulation


def stream_readings(chunks: Iterable[Simulation]) -> Iterator[Reading]:
    """Chain the readings of consecutive chunks."""
    return chain.from_iterable(iter_readings(c) for c in chunks)


def check_common(config: Any, streams: int) -> None:
    """Validate what every simulator config shares; raise :class:`ConfigError`."""
    if streams < 1:
        raise ConfigError(f"need at least 1 stream, got {streams}")
    if config.length < 1:
        raise ConfigError(f"length must be at least 1 row, got {config.length}")
    # The labelled CSV stores whole seconds; a fractional clock would collapse rows on disk.
    if config.interval_s < 1 or config.interval_s != int(config.interval_s):
        raise ConfigError(
            f"interval_s must be a whole number of seconds >= 1, got {config.interval_s}"
        )
    if config.start != int(config.start):
        raise ConfigError(f"start must be whole epoch seconds, got {config.start}")
    if config.seed < 0:
        raise ConfigError(f"seed must be >= 0, got {config.seed}")
    if config.anomalies_per_stream < 0:
        raise ConfigError(f"anomalies_per_stream must be >= 0, got {config.anomalies_per_stream}")
