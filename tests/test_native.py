"""The C kernel: its accuracy, its build cache, and every way of falling back to eager PyTorch."""

import logging
import shutil
import tempfile

import pytest
import torch

from detector import native
from detector.fused_step import FusedStep
from detector.model import LSTMForecaster, ModelArgs

needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler here")


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A clean slate: no cached library in this process, the build cache in tmp_path."""
    monkeypatch.setenv("DETECTOR_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("DETECTOR_NATIVE", raising=False)
    native.library.cache_clear()
    native.sgemm_address.cache_clear()
    yield tmp_path
    native.library.cache_clear()
    native.sgemm_address.cache_clear()


@needs_cc
def test_tanh_approximation_is_float32_accurate_everywhere(fresh) -> None:
    x = torch.cat([torch.linspace(-30, 30, 600_001), torch.tensor([0.0, -0.0, 1e-30, 7.9, 1e30])])
    got = native.native_tanh(x).double()
    want = torch.tanh(x.double())
    assert (got - want).abs().max().item() < 1e-6
    assert got.abs().max().item() <= 1.0


@needs_cc
def test_library_is_built_once_and_then_read_from_the_cache(fresh, monkeypatch) -> None:
    assert native.library() is not None
    built = list((fresh / "native").glob("kernels-*.so"))
    assert len(built) == 1 and not list((fresh / "native").glob("*.tmp"))
    native.library.cache_clear()
    calls = []
    monkeypatch.setattr(native.subprocess, "run", _recording(native.subprocess.run, calls))
    assert native.library() is not None
    assert not any("-shared" in c for c in calls), "a cached library was compiled again"


def _recording(run, calls):
    def wrapped(cmd, *args, **kwargs):
        calls.append(list(cmd))
        return run(cmd, *args, **kwargs)

    return wrapped


def test_disabled_by_environment(fresh, monkeypatch) -> None:
    monkeypatch.setenv("DETECTOR_NATIVE", "0")
    assert native.library() is None and native.lstm_cell() is None
    model = LSTMForecaster(ModelArgs(3, 2, 8, 2)).eval()
    assert FusedStep(model).kernel == "eager"


def test_no_compiler_falls_back_with_a_warning(fresh, monkeypatch, caplog) -> None:
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with caplog.at_level(logging.WARNING, logger="detector.native"):
        assert native.library() is None
    assert "no C compiler" in caplog.text


@needs_cc
def test_compile_error_falls_back_with_the_compilers_message(fresh, monkeypatch, caplog) -> None:
    bad = fresh / "broken.c"
    bad.write_text("this is not C;\n")
    monkeypatch.setattr(native, "SOURCE", bad)
    with caplog.at_level(logging.WARNING, logger="detector.native"):
        assert native.library() is None
    assert "failed" in caplog.text and "broken.c" in caplog.text
    assert not list(fresh.rglob("*.so")) and not list(fresh.rglob("*.tmp"))


@needs_cc
def test_a_library_failing_its_self_check_is_not_used(fresh, monkeypatch, caplog) -> None:
    monkeypatch.setattr(native, "_self_check", lambda cell: float("nan"))
    with caplog.at_level(logging.WARNING, logger="detector.native"):
        assert native.library() is None
    assert "self-check" in caplog.text


@needs_cc
def test_missing_sgemm_keeps_the_native_cell_only(fresh, monkeypatch) -> None:
    monkeypatch.setattr(native, "_torch_sgemm", lambda: None)
    model = LSTMForecaster(ModelArgs(3, 2, 8, 2)).eval()
    assert FusedStep(model).kernel == "native cell"


@needs_cc
@pytest.mark.parametrize("rows", [20, 2 * native.STEP_BLOCK + 7])  # one block; several
@pytest.mark.parametrize("mode", ["native step", "native cell", "eager"])
def test_every_kernel_matches_the_reference_on_views_of_the_state(
    fresh, monkeypatch, mode, rows
) -> None:
    """The engine steps a run of slots on views of its (layers, slots, hidden) slabs: rows
    ``hidden`` floats apart, layers ``slots * hidden`` apart. Each kernel must update them in
    place and leave every other row alone; the C step also goes through them in blocks."""
    if mode == "native cell":
        monkeypatch.setattr(native, "_torch_sgemm", lambda: None)
    torch.manual_seed(0)
    model = LSTMForecaster(ModelArgs(5, 3, 24, 2, residual=True)).eval()
    kernel = FusedStep(model, use_native=mode != "eager")
    assert kernel.kernel == mode
    end = 10 + rows
    h_slab, c_slab = torch.randn(2, end + 20, 24), torch.randn(2, end + 20, 24) * 2
    x = torch.randn(rows, 5)
    with torch.inference_mode():
        ref, (h_ref, c_ref) = model.step(x, (h_slab[:, 10:end].clone(), c_slab[:, 10:end].clone()))
        before = h_slab.clone(), c_slab.clone()
        out = kernel(x, h_slab[:, 10:end], c_slab[:, 10:end])
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h_slab[:, 10:end], h_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(c_slab[:, 10:end], c_ref, atol=1e-5, rtol=1e-5)
    for slab, old in zip((h_slab, c_slab), before, strict=True):
        assert torch.equal(slab[:, :10], old[:, :10]) and torch.equal(slab[:, end:], old[:, end:])


@needs_cc
def test_native_step_handles_saturated_gates_and_huge_inputs(fresh) -> None:
    """Inputs as large as the engine lets through (clipped to 1e6 scaled units) saturate every
    gate; the C activations must saturate too, never overflow to inf or NaN."""
    torch.manual_seed(1)
    model = LSTMForecaster(ModelArgs(4, 4, 16, 2)).eval()
    kernel = FusedStep(model)
    assert kernel.kernel == "native step"
    x = torch.tensor([[1e6, -1e6, 0.0, 3.0]] * 6)
    h, c = torch.zeros(2, 6, 16), torch.zeros(2, 6, 16)
    h_ref, c_ref = h.clone(), c.clone()
    with torch.inference_mode():
        for _ in range(50):  # c accumulates for many steps at saturation
            out = kernel(x, h, c)
            ref, (h_ref, c_ref) = model.step(x, (h_ref, c_ref))
    assert torch.isfinite(out).all() and torch.isfinite(c).all()
    assert c.abs().max() > 10  # saturated: c grew step after step
    torch.testing.assert_close(c, c_ref, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-5)


@needs_cc
def test_unwritable_cache_builds_in_a_private_temporary_directory(fresh, monkeypatch) -> None:
    """A cache that cannot be created (here a file stands where the directory should be; in a
    pod, a read-only file system) still gives a working library, built in a private temp dir."""
    blocker = fresh / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("DETECTOR_CACHE_DIR", str(blocker))
    monkeypatch.setattr(tempfile, "tempdir", str(fresh))  # so the private dir is cleaned up
    lib = native.library()
    assert lib is not None and lib._name.startswith(str(fresh / "detector-native-"))
    assert native.lstm_cell() is not None


@needs_cc
def test_engine_with_native_loops_equals_the_numpy_engine() -> None:
    """Scaling, unscaling, errors and the scorer in C give what the NumPy code gives, through
    the cases that take other paths: warm-up, missing values, repeated streams in a batch (several
    waves), streams out of slot order, wide vectors."""
    import numpy as np

    from detector.bench.synthetic import synthetic_checkpoint
    from detector.engine import Engine, EngineConfig

    assert native.library() is not None
    ckpt = synthetic_checkpoint(6, hidden=16, timesteps=5)
    rng = np.random.default_rng(2)
    names = np.array([f"s{i}" for i in range(40)], dtype=object)
    batches = []
    for t in range(30):
        order = rng.permutation(40) if t % 3 else np.arange(40)
        values = rng.standard_normal((40, 6)) * 3 + 100.0
        values[rng.random(values.shape) < 0.03] = np.nan
        if t == 20:
            values[7] += 60.0
        ts = np.full(40, float(t))
        if t % 5 == 4:  # a stream twice in one batch: two waves
            order, ts = np.append(order, 3), np.append(ts, t + 0.5)
            values = np.vstack([values, values[3:4] + 1.0])
        batches.append((names[order], ts, values[order]))

    def run(use_native: bool) -> list:
        engine = Engine(ckpt, EngineConfig(device="cpu"))
        engine.native = engine.scorer.native = use_native
        return [engine.process(*b) for b in batches]

    for fast, ref in zip(run(True), run(False), strict=True):
        np.testing.assert_allclose(fast.forecast, ref.forecast, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(fast.error, ref.error, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(fast.score, ref.score, rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(fast.alert_id, ref.alert_id)
    assert max(r.score.max() for r in run(True)) > 0.5


@needs_cc
def test_errors_in_c_with_covariates_read_the_targets_units(monkeypatch) -> None:
    """The scorer's units cover the targets only, narrower than the readings once a stream has
    covariates: the C errors must still take them, and give the NumPy errors."""
    import numpy as np

    from detector.engine import Engine, EngineConfig
    from detector.feed import interleave
    from detector.training import TrainConfig, train
    from tests.conftest import sine_fleet

    config = TrainConfig(
        timesteps=12, hidden=8, epochs=1, device="cpu", targets=("a",), covariates=("b",)
    )
    ckpt = train(sine_fleet(), config).to_checkpoint()
    feed = interleave(sine_fleet(), ("a", "b"))
    taken = []
    errors = native.errors
    monkeypatch.setattr(native, "errors", lambda *a: taken.append(errors(*a)) or taken[-1])
    results = []
    for use_native in (True, False):
        engine = Engine(ckpt, EngineConfig(device="cpu"))
        engine.native = engine.scorer.native = use_native
        results.append(engine.process(feed.stream, feed.timestamp, feed.values))
    assert taken and all(t is not None for t in taken)
    np.testing.assert_allclose(results[0].error, results[1].error, rtol=1e-12)
    np.testing.assert_allclose(results[0].score, results[1].score, rtol=1e-9, atol=1e-12)
