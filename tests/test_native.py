"""The C kernel: its accuracy, its build cache, and every way of falling back to eager PyTorch."""

import logging
import shutil

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
    lib = native.library()
    assert lib is not None and "detector-native-" in lib._name
    assert native.lstm_cell() is not None
