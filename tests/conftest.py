"""Shared fixtures: the benchmark datasets beside the project, and small synthetic fleets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detector.series import Series

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture(scope="session")
def datasets() -> Path:
    """``../shared/datasets`` (NAB, SKAB); CI always has it beside the clone."""
    if not (DATASETS / "nab").is_dir() or not (DATASETS / "skab").is_dir():
        pytest.fail(f"benchmark datasets not found at {DATASETS} (want ../shared beside the repo)")
    return DATASETS


def sine_fleet(
    streams: int = 3, n: int = 600, scale: float = 1.0, offset: float = 0.0, seed: int = 0
) -> list[Series]:
    """Two-feature seasonal streams with noise; stream k is scaled by 10**k (unlike ranges)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    out = []
    for k in range(streams):
        phase = rng.uniform(0, 2 * np.pi)
        a = np.sin(2 * np.pi * t / 48 + phase) + rng.normal(0, 0.05, n)
        b = 0.5 * np.cos(2 * np.pi * t / 48 + phase) + rng.normal(0, 0.05, n)
        values = np.stack([a, b], axis=1) * 10.0**k * scale + offset
        out.append(Series(f"s{k}", 1.7e9 + 60.0 * t, values, ("a", "b"), None))
    return out


@pytest.fixture
def fleet() -> list[Series]:
    return sine_fleet()
