"""pytest-benchmark cases for the hot functions; each pairs our path with its baseline.

CI runs them once each as plain tests (``--benchmark-disable`` in the pytest options), which
checks they work; to measure, run ``.venv/bin/python -m pytest tests/benchmarks
--benchmark-enable`` and compare the pairs in the same run. Nothing here asserts a time.
"""

import numpy as np
import orjson
import pytest
import torch

from detector.alerts import AlertConfig, AlertTracker
from detector.bench.decode_bench import sample_records
from detector.bench.engine_bench import MatmulBound
from detector.bench.synthetic import synthetic_checkpoint
from detector.codec import _binary_dtype, decode_batch
from detector.engine import Engine, EngineConfig
from detector.fused_step import FusedStep
from detector.scoring import ScorerConfig, make_scorer

B = 1024


@pytest.fixture(scope="module")
def model():
    return synthetic_checkpoint(8).model


@pytest.fixture(scope="module")
def inputs():
    torch.manual_seed(0)
    return torch.randn(B, 8), torch.randn(2, B, 64), torch.randn(2, B, 64)


@pytest.mark.benchmark(group="step")
def test_reference_step(benchmark, model, inputs) -> None:
    x, h, c = inputs
    with torch.inference_mode():
        out, _ = benchmark(model.step, x, (h, c))
    assert out.shape == (B, 8)


@pytest.mark.benchmark(group="step")
@pytest.mark.parametrize("use_native", [True, False], ids=["native", "eager"])
def test_fused_step(benchmark, model, inputs, use_native) -> None:
    x, h, c = inputs
    kernel = FusedStep(model, use_native=use_native)
    with torch.inference_mode():
        out = benchmark(lambda: kernel(x, h.clone(), c.clone()))
        ref, _ = model.step(x, (h, c))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.benchmark(group="step")
def test_matmul_bound(benchmark, model) -> None:
    bound = MatmulBound(model, B, torch.device("cpu"))
    benchmark(bound)
    assert torch.isfinite(bound.out).all()


@pytest.mark.benchmark(group="scorer")
@pytest.mark.parametrize("use_native", [True, False], ids=["native", "numpy"])
def test_gaussian_scorer_video128(benchmark, use_native) -> None:
    """The scorer on a wave of 128-wide errors: the C pass vs the NumPy reference."""
    scorer = make_scorer(ScorerConfig(), np.ones(128), B)
    scorer.native = use_native
    err = np.random.default_rng(0).standard_normal((B, 128))
    score, contrib = benchmark(scorer.score, np.arange(B), err, err * 0.5)
    assert score.shape == (B,) and np.isfinite(contrib).all()


@pytest.mark.benchmark(group="scorer-repeats")
@pytest.mark.parametrize("mode", ["off", "native", "numpy"])
def test_repeats_test_cost_video128(benchmark, mode) -> None:
    """What the opt-in repeats test adds to a wave of 128-wide readings: off, its C pass, its
    NumPy reference. Each round gets new readings, so runs are rare, as in real data."""
    scorer = make_scorer(ScorerConfig(repeats=mode != "off"), np.ones(128), B)
    scorer.native = mode != "numpy"
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal((B, 128)) for _ in range(4)]
    turn = iter(range(10**9))

    def wave() -> tuple[np.ndarray, np.ndarray]:
        x = waves[next(turn) % 4]
        return scorer.score(np.arange(B), x, x * 0.5)

    score, contrib = benchmark(wave)
    assert score.shape == (B,) and np.isfinite(contrib).all()


@pytest.mark.benchmark(group="alerts-onset-cap")
@pytest.mark.parametrize("cap", [False, True])
def test_alert_wave_onset_cap_cost(benchmark, cap) -> None:
    """What the onset cap adds to the alert tracker's wave: scores of the usual sort (a few
    onsets a wave, episodes ending every `quiet` readings), with the cap off and on."""
    tracker = AlertTracker(AlertConfig(onset_cap=cap), ("a",), capacity=B)
    rng = np.random.default_rng(0)
    waves = [np.minimum(rng.gamma(1.0, 0.05, B), 0.99) for _ in range(4)]
    slots, names, contrib = np.arange(B), [f"s{i}" for i in range(B)], np.ones((B, 1))
    tick = iter(range(10**9))

    def wave():
        t = next(tick)
        return tracker.update(slots, names, np.full(B, float(t)), waves[t % 4], contrib)

    ids, _, _ = benchmark(wave)
    assert len(ids) == B and (tracker.slabs["onset_n"] > 0).all()


@pytest.mark.benchmark(group="engine")
def test_engine_wave(benchmark) -> None:
    engine = Engine(synthetic_checkpoint(8, timesteps=8), EngineConfig(device="cpu"))
    names = np.array([f"s{i}" for i in range(B)], dtype=object)
    values = np.random.default_rng(0).standard_normal((B, 8))
    tick = iter(range(10**9))

    def wave():
        return engine.process(names, np.full(B, float(next(tick))), values)

    for _ in range(10):  # primed and past the first steps
        wave()
    res = benchmark(wave)
    assert (res.status == 0).all()


@pytest.mark.benchmark(group="decode-json")
def test_decode_json(benchmark) -> None:
    keys, values, columns = sample_records("json", 5000, 8)
    out = benchmark(decode_batch, keys, values, "json", columns, 2e9)
    assert len(out.index) == 5000


@pytest.mark.benchmark(group="decode-json")
def test_orjson_loop_baseline(benchmark) -> None:
    _, values, _ = sample_records("json", 5000, 8)
    out = benchmark(lambda: [orjson.loads(v) for v in values])
    assert len(out) == 5000


@pytest.mark.benchmark(group="decode-binary")
def test_decode_binary(benchmark) -> None:
    keys, values, columns = sample_records("binary", 5000, 128)
    out = benchmark(decode_batch, keys, values, "binary", columns, 2e9)
    assert out.values.shape == (5000, 128)


@pytest.mark.benchmark(group="decode-binary")
def test_frombuffer_loop_baseline(benchmark) -> None:
    _, values, _ = sample_records("binary", 5000, 128)
    dtype = _binary_dtype(128)
    out = benchmark(lambda: [np.frombuffer(v, dtype) for v in values])
    assert len(out) == 5000
