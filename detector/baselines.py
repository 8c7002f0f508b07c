"""Baselines measured beside the LSTM in every evaluation, on the same data in the same run."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from detector.model import ModelArgs

__all__ = ["PersistenceForecaster", "rolling_zscore"]


class PersistenceForecaster(nn.Module):
    """Forecasts that the next reading equals the last one; same interface as the LSTM.

    Run through the same engine and scorer, it shows what the LSTM adds over no model at all.
    """

    def __init__(self, n_inputs: int, n_targets: int) -> None:
        super().__init__()
        self.args = ModelArgs(
            n_inputs=n_inputs, n_targets=n_targets, hidden=1, layers=1, dropout=0.0
        )
        self.register_buffer("anchor", torch.zeros(1))  # gives the module a device

    def prime(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        zeros = torch.zeros(1, len(x), 1, device=x.device)
        return x[:, -1, : self.args.n_targets].clone(), (zeros, zeros.clone())

    def step(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        return x[:, : self.args.n_targets].clone(), state


def rolling_zscore(values: np.ndarray, window: int = 100, warmup: int = 10) -> np.ndarray:
    """Max over features of ``|x - mean| / std`` against the previous ``window`` readings.

    ``(n, F)`` values (NaN ignored) → ``(n,)`` z-scores; 0 for the first ``warmup`` readings.
    A classic detector with no model: what any forecaster has to beat.
    """
    x = np.asarray(values, np.float64)
    n, f = x.shape
    padded = np.concatenate([np.full((window, f), np.nan), x])  # row i's past: padded[i : i+W]
    past = sliding_window_view(padded[:-1], window, axis=0)[:n]  # (n, F, W), a view
    with warnings.catch_warnings():  # all-NaN pasts (the first rows) are expected
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(past, axis=2)
        std = np.nanstd(past, axis=2)
        z = np.abs(x - mean) / np.where(std > 0, std, np.inf)
        out = np.nan_to_num(np.nanmax(z, axis=1), nan=0.0)
    out[:warmup] = 0.0
    return out
