"""Forecast accuracy in original units: MSE, MAE and a MAPE that stays finite near zero."""

from __future__ import annotations

import numpy as np

__all__ = ["forecast_errors", "mape_floor"]

# MAPE divides by |actual|; a sensor that reads 0.0 would make it infinite. The denominator is
# floored at this fraction of the feature's training range (per stream), so readings near zero
# count as if they were a percent of the range away from it.
MAPE_FLOOR_FRACTION = 0.01


def mape_floor(train_values: np.ndarray) -> np.ndarray:
    """``(F,)`` MAPE denominators' floor from ``(n, F)`` training values (NaN ignored)."""
    lo = np.nanmin(train_values, axis=0)
    hi = np.nanmax(train_values, axis=0)
    return np.maximum(MAPE_FLOOR_FRACTION * (hi - lo), 1e-12)


def forecast_errors(
    actual: np.ndarray, forecast: np.ndarray, floor: np.ndarray
) -> dict[str, float]:
    """MSE, MAE and MAPE (in percent) of ``(S, F)`` forecasts, pooled over samples and features.

    ``floor`` is ``(S, F)`` or ``(F,)``: the MAPE denominator is ``max(|actual|, floor)``.
    """
    err = forecast - actual
    denom = np.maximum(np.abs(actual), floor)
    return {
        "mse": float(np.mean(err**2)),
        "mae": float(np.mean(np.abs(err))),
        "mape": float(100.0 * np.mean(np.abs(err) / denom)),
    }
