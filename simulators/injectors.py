"""Anomaly injectors: one function per anomaly type, each changing one interval in place.

Every injector has the signature ``inject(values, start, end, cols, rng, scale)`` and changes
``values[start:end, cols]`` in place, never a row outside ``[start, end)``. Magnitudes are set
relative to the stream's own :class:`Scale`, so an anomaly is as visible on a channel in
millibar as on one in kilorpm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Scale",
    "Injector",
    "SENSOR_KINDS",
    "VIDEO_KINDS",
    "INJECTORS",
    "spike",
    "level_shift",
    "drift",
    "stuck",
    "noise_burst",
    "correlation_break",
    "dropout",
    "scene_cut",
    "occlusion",
    "frozen_frame",
    "unusual_activity",
]


@dataclass(frozen=True)
class Scale:
    """Per-column ``(F,)`` scales of one clean stream.

    ``sigma`` is the total (signal + noise) standard deviation, ``noise`` the noise alone.
    """

    sigma: np.ndarray
    noise: np.ndarray


Injector = Callable[[np.ndarray, int, int, np.ndarray, np.random.Generator, Scale], None]


def _signs(rng: np.random.Generator, k: int) -> np.ndarray:
    return rng.choice(np.array([-1.0, 1.0]), size=k)


def _reference_row(start: int) -> int:
    # The row just before the interval: a frozen sensor or frame repeats the last good value.
    return max(start - 1, 0)


def spike(
    values: np.ndarray,
    start: int,
    end: int,
    cols: np.ndarray,
    rng: np.random.Generator,
    scale: Scale,
) -> None:
    """Add a 4-8 sigma excursion of random sign."""
    amp = _signs(rng, len(cols)) * rng.uniform(4.0, 8.0, len(cols)) * scale.sigma[cols]
    values[start:end, cols] += amp


def level_shift(
    values: np.ndarray,
    start: int,
    end: int,
    cols: np.ndarray,
    rng: np.random.Generator,
    scale: Scale,
) -> None:
    """Shift the level by 2-4 sigma for the whole interval."""
    amp = _signs(rng, len(cols)) * rng.uniform(2.0, 4.0, len(cols)) * scale.sigma[cols]
    values[start:end, cols] += amp


def drift(
    values: np.ndarray,
    start: int,
    end: int,
    cols: np.ndarray,
    rng: np.random.Generator,
    scale: Scale,
) -> None:
    """Ramp linearly away from normal, reaching 2.5-3.5 sigma at the last row."""
    m = end - start
    # The ramp starts at 1/m, not 0, so every labelled row is actually changed.
    ramp = np.arange(1, m + 1, dtype=np.float64)[:, None] / m
    amp = _signs(rng, len(cols)) * rng.uniform(2.5, 3.5, len(cols)) * scale.sigma[cols]
    values[start:end, cols] += ramp * amp


def stuck(
    values: np.ndarray,
    start: int,
    end: int,
    cols: np.ndarray,
    rng: np.random.Generator,
    scale: Scale,
) -> None:
    """Freeze the sensor: repeat the last value before the interval."""
    values[start:end, cols] = values[_reference_row(start), cols]


def noise_burst(
    values: np.ndarray,
    start: int,
    end: int,
    cols: np.ndarray,
    rng: np.random.Generator,
    scale: Scale,
) -> None:
    """Add noise 3-5 times the channel's own noise level."""
    gain = rng.uniform(3.0, 5.0, len(cols)) * scale.noise[cols]
    values[start:end, cols] += rng.standard_normal((end - start, len(cols))) * gain


def correlation_break(
    values: np.ndarray,
    start: int,
    end: int,
    cols: np.ndarray,
    rng: np.random.Generator,
    scale: Scale,
) -> None:
    """Decouple the channels from their latent drivers: each wanders on its own.

    The level stays the channel's local mean, so the break shows in the joint behaviour rather
    than as an out-of-range value.
    """
    m = end - start
    walk = np.cumsum(rng.standard_normal((m, len(cols))), axis=0)
    walk -= walk.mean(axis=0)
    spread = walk.std(axis=0)
    walk /= np.where(spread > 0, spread, 1.0)
    local = np.nanmean(values[start:end, cols], axis=0)
    amp = rng.uniform(1.5, 2.5, len(cols)) * scale.sigma[cols]
    noise = rng.standard_normal((m, len(cols))) * scale.noise[cols]
    values[start:end, cols] = local + walk * amp + noise


def dropout(
    values: np.ndarray,
    start: int,
    end: int,
    cols: np.ndarray,
    rng: np.random.Generator,
    scale: Scale,
) -> None:
    """Lose the readings: NaN (missing) for the whole interval."""
    values[start:end, cols] = np.nan


def _unit(rng: np.random.Generator, dim: int) -> np.ndarray:
    v = rng.standard_normal(dim)
    return v / np.linalg.norm(v)


def _occluded_vector(dim: int) -> np.ndarray:
    # A fixed seed: every occlusion of every camera looks alike (a lens cap is a lens cap).
    return 0.5 * _unit(np.random.default_rng(0x0CC1), dim)


def scene_cut(
    values: np.ndarray,
    start: int,
    end: int,
    cols: np.ndarray,
    rng: np.random.Generator,
    scale: Scale,
) -> None:
    """Switch to an unrelated scene: a fresh random unit embedding plus the usual noise."""
    scene = _unit(rng, len(cols))
    values[start:end, cols] = (
        scene + rng.standard_normal((end - start, len(cols))) * scale.noise[cols]
    )


def occlusion(
    values: np.ndarray,
    start: int,
    end: int,
    cols: np.ndarray,
    rng: np.random.Generator,
    scale: Scale,
) -> None:
    """Pull the embedding 75-95% of the way towards a fixed dark (occluded) vector."""
    weight = rng.uniform(0.75, 0.95)
    values[start:end, cols] = (1 - weight) * values[start:end, cols] + weight * _occluded_vector(
        len(cols)
    )


def frozen_frame(
    values: np.ndarray,
    start: int,
    end: int,
    cols: np.ndarray,
    rng: np.random.Generator,
    scale: Scale,
) -> None:
    """Repeat the last frame before the interval exactly: no noise, no motion."""
    values[start:end, cols] = values[_reference_row(start), cols]


def unusual_activity(
    values: np.ndarray,
    start: int,
    end: int,
    cols: np.ndarray,
    rng: np.random.Generator,
    scale: Scale,
) -> None:
    """Strong, fluctuating activity along a direction the camera never shows normally."""
    direction = _unit(rng, len(cols))
    strength = rng.uniform(0.8, 1.2) * (1.0 + 0.3 * rng.standard_normal(end - start))
    values[start:end, cols] += strength[:, None] * direction


SENSOR_KINDS: tuple[str, ...] = (
    "spike",
    "level_shift",
    "drift",
    "stuck",
    "noise_burst",
    "correlation_break",
    "dropout",
)
VIDEO_KINDS: tuple[str, ...] = ("scene_cut", "occlusion", "frozen_frame", "unusual_activity")

INJECTORS: dict[str, Injector] = {
    "spike": spike,
    "level_shift": level_shift,
    "drift": drift,
    "stuck": stuck,
    "noise_burst": noise_burst,
    "correlation_break": correlation_break,
    "dropout": dropout,
    "scene_cut": scene_cut,
    "occlusion": occlusion,
    "frozen_frame": frozen_frame,
    "unusual_activity": unusual_activity,
}
