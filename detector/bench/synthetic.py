"""Checkpoints with seeded random weights, for benchmarks: speed does not depend on training."""

from __future__ import annotations

import numpy as np
import torch

from detector.checkpoint import Checkpoint
from detector.model import LSTMForecaster, ModelArgs
from detector.scaling import Scaler

__all__ = ["SHAPES", "synthetic_checkpoint"]

# name -> (features, hidden, layers): the sensor fleet and the video-embedding shapes.
SHAPES: dict[str, tuple[int, int, int]] = {
    "sensor": (8, 64, 2),
    "video128": (128, 64, 2),
    "video512": (512, 64, 2),
}


def synthetic_checkpoint(
    features: int, hidden: int = 64, layers: int = 2, timesteps: int = 32, seed: int = 0
) -> Checkpoint:
    """A forecaster of ``features`` targets with random weights and identity scaling, for
    readings drawn i.i.d. from N(0, 1). Its validation residuals are measured on such readings,
    as training would, so the scorer starts calibrated: most streams normal, as in service."""
    torch.manual_seed(seed)
    model = LSTMForecaster(ModelArgs(features, features, hidden, layers)).eval()
    with torch.inference_mode():
        windows = torch.randn(512, timesteps + 1, features)
        residual = windows[:, -1] - model(windows[:, :-1])
        residual_std = residual.std(dim=0).tolist()
    names = tuple(f"f{i}" for i in range(features))
    identity = Scaler("standard", np.zeros(features), np.ones(features))
    return Checkpoint(
        model,
        names,
        (),
        "global",
        {},
        identity,
        {"timesteps": timesteps},
        {"validation": {"residual_std_scaled": residual_std}},
        {"format_version": 1, "detector_version": "bench", "torch_version": torch.__version__},
    )
