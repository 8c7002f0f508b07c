"""Online fine-tuning: a few Adam steps on the recent windows of streams that look normal.

Off by default (``worker.finetune_interval_s = 0``). A round copies the model, trains the copy on
windows taken from the engine's ring buffers, of streams that are primed and not in an alert,
for at most ``budget_s`` seconds of wall time, and returns a checkpoint the engine can swap in.
The serving model is never trained in place, so scoring is unaffected until the swap.
"""

from __future__ import annotations

import copy
import dataclasses
import time

import numpy as np
import torch
from torch import nn

from detector.checkpoint import Checkpoint
from detector.engine import Engine

__all__ = ["normal_windows", "fine_tune"]


def normal_windows(
    engine: Engine, max_windows: int = 4096, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Scaled training pairs from streams that are primed and not alerting.

    Returns ``X (S, T, F)`` and ``y (S, n_targets)``: each stream's last ``T + 1`` readings.
    """
    st, T = engine.state, engine.timesteps
    slots = np.array(list(st.slot_of.values()), np.int64)
    if len(slots):
        calm = ~engine.alerts.slabs["active"][slots] & (st.seen[slots] > T)
        slots = slots[calm]
    if len(slots) > max_windows:
        slots = (rng or np.random.default_rng(0)).choice(slots, max_windows, replace=False)
    if not len(slots) or T + 1 > st.window_len:
        return np.empty((0, T, st.n_inputs), np.float32), np.empty((0, st.n_targets), np.float32)
    raw = st.recent(slots, T + 1).astype(np.float64)  # (S, T + 1, F)
    z = ((raw - st.offset[slots, None]) / st.scale[slots, None]).astype(np.float32)
    return z[:, :T], z[:, T, : st.n_targets]


def fine_tune(
    engine: Engine, budget_s: float = 2.0, lr: float = 1e-4, batch_size: int = 128, seed: int = 0
) -> Checkpoint | None:
    """Train a copy of the engine's model within ``budget_s``; ``None`` if there is no data."""
    X, y = normal_windows(engine, rng=np.random.default_rng(seed))
    if len(X) < 2:
        return None
    model = copy.deepcopy(engine.ckpt.model).to(engine.device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    Xt, yt = torch.from_numpy(X).to(engine.device), torch.from_numpy(y).to(engine.device)
    loss_fn, deadline = nn.MSELoss(), time.monotonic() + budget_s
    while time.monotonic() < deadline:
        for idx in torch.randperm(len(Xt), generator=gen).split(batch_size):
            opt.zero_grad(set_to_none=True)
            loss_fn(model(Xt[idx]), yt[idx]).backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if time.monotonic() >= deadline:
                break
    model.eval()
    meta = dict(engine.ckpt.meta, fine_tuned_on=int(len(X)))
    return dataclasses.replace(engine.ckpt, model=model, meta=meta)
