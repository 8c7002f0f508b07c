import numpy as np
import pytest
import torch

import detector.engine as engine_module
from detector.bench.synthetic import synthetic_checkpoint
from detector.engine import Engine, EngineConfig
from detector.fused_step import FusedStep
from detector.model import LSTMForecaster, ModelArgs


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("n_inputs,n_targets", [(3, 2), (8, 8)])
def test_fused_step_equals_the_reference_step(layers, residual, n_inputs, n_targets) -> None:
    torch.manual_seed(layers)
    model = LSTMForecaster(ModelArgs(n_inputs, n_targets, 16, layers, residual=residual)).eval()
    kernel = FusedStep(model)
    x = torch.randn(37, n_inputs)
    h, c = torch.randn(layers, 37, 16), torch.randn(layers, 37, 16) * 3
    with torch.inference_mode():
        ref, (h_ref, c_ref) = model.step(x, (h, c))
        h2, c2 = h.clone(), c.clone()
        out = kernel(x, h2, c2)
        # Buffers are reused: a smaller second batch must not see the first one's values.
        out_small = kernel(x[:5], h[:, :5].clone(), c[:, :5].clone())
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h2, h_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(c2, c_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_small, ref[:5], atol=1e-5, rtol=1e-5)


def test_stepping_on_the_step_thread_gives_the_same_results(monkeypatch) -> None:
    """Large waves step on the engine's thread while it scores; nothing may change by it."""
    ckpt = synthetic_checkpoint(4, hidden=16, timesteps=6)
    n = 300  # above the hand-over threshold
    names = np.array([f"s{i}" for i in range(n)], dtype=object)
    rng = np.random.default_rng(3)
    values = rng.standard_normal((30, n, 4))
    values[25, 7] += 50.0  # one anomaly, so alerts take part too

    def run(threshold: int) -> list:
        monkeypatch.setattr(engine_module, "_OVERLAP_MIN_STREAMS", threshold)
        engine = Engine(ckpt, EngineConfig(device="cpu"))
        out = [engine.process(names, np.full(n, float(t)), values[t]) for t in range(30)]
        return [(r.score, r.forecast, r.alert_id) for r in out]

    threaded, inline = run(256), run(10**9)
    for (s1, f1, a1), (s2, f2, a2) in zip(threaded, inline, strict=True):
        np.testing.assert_array_equal(s1, s2)
        np.testing.assert_array_equal(f1, f2)
        np.testing.assert_array_equal(a1, a2)
    assert (threaded[25][0][7] > 0.5) and (threaded[-1][0] > 0).all()


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_engine_on_each_device_matches_the_cpu_reference(device) -> None:
    """The same readings give the same scores wherever the model runs (CUDA when present)."""
    ckpt = synthetic_checkpoint(4, hidden=16, timesteps=6)
    n = 300
    names = np.array([f"s{i}" for i in range(n)], dtype=object)
    values = np.random.default_rng(5).standard_normal((25, n, 4))
    values[20, 3] += 40.0
    runs = {}
    for dev in {"cpu", device}:
        engine = Engine(ckpt, EngineConfig(device=dev))
        runs[dev] = [engine.process(names, np.full(n, float(t)), values[t]) for t in range(25)]
    for ref, got in zip(runs["cpu"], runs[device], strict=True):
        np.testing.assert_allclose(got.forecast, ref.forecast, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got.score, ref.score, rtol=1e-3, atol=1e-3)
    assert runs[device][20].score[3] > 0.5
