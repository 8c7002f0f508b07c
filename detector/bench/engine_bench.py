"""The engine alone (no Kafka, decoding excluded) against two baselines from the same run:

* **naive**: what tutorials do, one ``nn.LSTM`` call per reading with that stream's own
  ``(h, c)`` kept in a dict; the ratio says what batching streams buys;
* **compute bound**: only the matrix multiplications of one step (two per layer and the head)
  for the whole wave, on preallocated buffers, with the engine's torch thread count; no
  implementation with that thread budget beats it, so ``engine / bound`` says how close the
  engine gets to the hardware.

``step_per_s`` is the fused model step alone (stream-steps/s), between the two: what the model
costs without the engine's scoring and bookkeeping.

Every wave holds one reading of every stream (a fleet reporting in lockstep). Engine waves and
bound calls alternate and the medians are compared, so a noisy neighbour slows both alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from detector.bench.synthetic import SHAPES, synthetic_checkpoint
from detector.engine import Engine, EngineConfig
from detector.fused_step import FusedStep
from detector.model import LSTMForecaster

__all__ = ["EngineCase", "bench_engine", "naive_rate", "MatmulBound", "state_bytes"]


@dataclass(frozen=True)
class EngineCase:
    shape: str  # a key of SHAPES
    streams: int
    timesteps: int = 32


def state_bytes(case: EngineCase) -> int:
    """Rough bytes of engine state for ``case``: window, h and c dominate."""
    features, hidden, layers = SHAPES[case.shape]
    per_stream = (case.timesteps + 1) * features * 4 + 2 * layers * hidden * 4 + 40 * features
    return case.streams * per_stream


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class MatmulBound:
    """One step's matrix multiplications for ``batch`` streams, nothing else."""

    def __init__(self, model: LSTMForecaster, batch: int, device: torch.device) -> None:
        self.k = FusedStep(model)  # the same transposed weights the engine multiplies by
        a = model.args
        self.x = torch.randn(batch, a.n_inputs, device=device)
        self.h = torch.randn(a.layers, batch, a.hidden, device=device)
        self.gates = torch.empty(batch, 4 * a.hidden, device=device)
        self.out = torch.empty(batch, a.n_targets, device=device)
        self.device = device

    @torch.inference_mode()
    def __call__(self) -> None:
        k, inp = self.k, self.x
        for layer in range(len(k.w_ih)):
            torch.addmm(k.bias[layer], inp, k.w_ih[layer], out=self.gates)
            self.gates.addmm_(self.h[layer], k.w_hh[layer])
            inp = self.h[layer]
        torch.addmm(k.head_b, inp, k.head_w, out=self.out)
        _sync(self.device)


@torch.inference_mode()
def naive_rate(
    model: LSTMForecaster, streams: int, device: torch.device, seconds: float = 1.5
) -> float:
    """Readings/s of the per-reading loop: tensor in, ``nn.LSTM`` call, head, tensor out."""
    a = model.args
    rng = np.random.default_rng(0)
    values = rng.standard_normal((4096, a.n_inputs)).astype(np.float32)
    state: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    zeros = torch.zeros(a.layers, 1, a.hidden, device=device)
    n, start = 0, time.perf_counter()
    while True:
        for i in range(256):
            stream = (n + i) % streams
            x = torch.from_numpy(values[(n + i) % len(values)]).to(device).view(1, 1, -1)
            out, hc = model.lstm(x, state.get(stream, (zeros, zeros)))
            forecast = model.head(out[:, -1]) + x[:, -1, : a.n_targets]
            float(forecast.sum().cpu())  # the reading's error is read back, as a loop would
            state[stream] = hc
        n += 256
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench_engine(
    case: EngineCase,
    device: torch.device,
    seconds: float = 3.0,
    naive_seconds: float = 1.5,
    progress: Callable[[str], None] | None = None,
    score_threads: int = 0,
) -> dict[str, object]:
    """Measure one case; returns readings/s of engine, naive and bound, and the two ratios."""
    features, hidden, layers = SHAPES[case.shape]
    ckpt = synthetic_checkpoint(features, hidden, layers, case.timesteps)
    config = EngineConfig(
        device=str(device),
        capacity=case.streams,
        max_streams=case.streams,
        score_threads=score_threads,
    )
    engine = Engine(ckpt, config)
    n = case.streams
    names = np.array([f"s{i}" for i in range(n)], dtype=object)
    rng = np.random.default_rng(0)
    pool = rng.standard_normal((4, n, features))  # reused cyclically: no RNG in the timing
    tick = [0]

    def wave() -> None:
        tick[0] += 1
        engine.process(names, np.full(n, float(tick[0])), pool[tick[0] % len(pool)])

    warmup = case.timesteps + engine.config.scorer.warmup + 4
    if progress:
        progress(f"{case.shape} x {n:,}: warm-up ({warmup} waves)")
    for _ in range(warmup):  # every stream primed and its scorer past its own warm-up
        wave()
    bound = MatmulBound(engine.model, n, device)
    bound()
    kernel = FusedStep(engine.model)
    x = torch.randn(n, features, device=device)
    h = torch.randn(layers, n, hidden, device=device)
    c = torch.randn(layers, n, hidden, device=device)

    @torch.inference_mode()
    def step() -> None:
        kernel(x, h, c)
        _sync(device)

    if progress:
        progress(f"{case.shape} x {n:,}: timing")
    engine_s, bound_s, step_s = [], [], []
    start = time.perf_counter()
    while len(engine_s) < 5 or time.perf_counter() - start < seconds:
        engine_s.append(_timed(wave))
        bound_s.append(_timed(bound))
        step_s.append(_timed(step))
    engine_t, bound_t = float(np.median(engine_s)), float(np.median(bound_s))
    step_t = float(np.median(step_s))
    naive = naive_rate(engine.model, min(n, 4096), device, naive_seconds)
    rate = n / engine_t
    return {
        "shape": case.shape,
        "features": features,
        "hidden": hidden,
        "layers": layers,
        "streams": n,
        "device": str(device),
        "kernel": engine.kernel,
        "score_threads": engine.score_threads,
        "waves": len(engine_s),
        "engine_per_s": rate,
        "naive_per_s": naive,
        "bound_per_s": n / bound_t,
        "step_per_s": n / step_t,  # the fused model step alone: stream-steps/s
        "x_naive": rate / naive,
        "of_bound": bound_t / engine_t,
    }
