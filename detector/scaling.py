"""Feature scaling fitted on training data only, stored with the model, invertible.

``scaled = (x - offset) / scale`` per feature. ``minmax`` maps the training range to [0, 1];
``standard`` maps the training mean and standard deviation to 0 and 1. NaN (missing readings)
are ignored when fitting and stay NaN when transformed.

A fleet of streams whose ranges differ by orders of magnitude is scaled **per stream**: each
stream gets its own :class:`Scaler` fitted on its own training rows, so the shared model sees every
stream in the same unit-free range. One ``global`` scaler over all streams would squash the small
streams to a constant next to the large ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SCALER_KINDS", "Scaler"]

SCALER_KINDS = ("minmax", "standard")


@dataclass(frozen=True, eq=False)
class Scaler:
    """Per-feature affine scaling; ``offset`` and ``scale`` are ``(F,)`` float64."""

    kind: str
    offset: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray, kind: str = "minmax") -> Scaler:
        """Fit on ``(n, F)`` training values; a constant or all-missing feature gets scale 1."""
        if kind not in SCALER_KINDS:
            raise ValueError(f"scaler must be one of {SCALER_KINDS}, got {kind!r}")
        values = np.asarray(values, dtype=np.float64)
        present = ~np.isnan(values)
        any_present = present.any(axis=0)
        # Fill all-missing columns so the nan-reductions below neither warn nor return NaN.
        filled = np.where(any_present, values, 0.0)
        if kind == "minmax":
            offset = np.nanmin(filled, axis=0)
            scale = np.nanmax(filled, axis=0) - offset
        else:
            offset = np.nanmean(filled, axis=0)
            scale = np.nanstd(filled, axis=0)
        # A scale far below the level is float noise: treat the feature as constant.
        tiny = scale <= 1e-12 * np.maximum(1.0, np.abs(offset))
        scale = np.where(tiny, 1.0, scale)
        return cls(kind, offset, scale)

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Original units → scaled units, ``(..., F)``."""
        return (values - self.offset) / self.scale

    def inverse(self, values: np.ndarray, features: slice | list[int] = slice(None)) -> np.ndarray:
        """Scaled units → original units for the given feature columns (default all)."""
        return values * self.scale[features] + self.offset[features]

    def to_state(self) -> dict[str, object]:
        """Plain types only, so checkpoints load with ``torch.load(weights_only=True)``."""
        return {"kind": self.kind, "offset": self.offset.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_state(cls, state: dict[str, object]) -> Scaler:
        kind = state["kind"]
        offset = np.asarray(state["offset"], dtype=np.float64)
        scale = np.asarray(state["scale"], dtype=np.float64)
        if kind not in SCALER_KINDS or offset.shape != scale.shape or offset.ndim != 1:
            raise ValueError(
                f"bad scaler state: kind={kind!r}, shapes {offset.shape}/{scale.shape}"
            )
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise ValueError("bad scaler state: scale must be finite and positive")
        return cls(kind, offset, scale)
