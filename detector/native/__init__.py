"""The fused LSTM cell in C (``lstm_cell.c``), compiled for this CPU on first use.

Eager PyTorch spends as long on a step's elementwise gate math as on its matrix multiplications
(a ``sigmoid`` pass over ``B x 4H``, another over ``B x H`` and half a dozen cheap passes, per
layer). The C kernel does all of it in one vectorised pass. It is built with the system's C
compiler (``$CC``, else ``cc``) and ``-march=native``, like PyTorch's own JIT extensions but
without their build chain (no torch headers, no ninja: a plain shared library called through
``ctypes``, which releases the GIL). The library is cached under
``$DETECTOR_CACHE_DIR/native`` (default ``~/.cache/detector/native``), keyed by the source, the
flags, the compiler and the CPU's feature flags, so a worker compiles it once per machine
(~0.2 s).

Nothing depends on it: without a compiler, with ``DETECTOR_NATIVE=0``, or if the built library
fails its self-check against PyTorch, :func:`lstm_cell` is ``None`` and the engine keeps its
eager kernel (a warning says why, once).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import torch

__all__ = ["lstm_cell", "lstm_step", "native_tanh", "library", "sgemm_address", "fits", "CFLAGS"]

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("lstm_cell.c")
# -fno-trapping-math lets the compiler turn the clamps into vector min/max (else it keeps
# branches and does not vectorise); nothing here reads floating-point exception flags.
CFLAGS = (
    "-O3",
    "-march=native",
    "-fPIC",
    "-shared",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-ffp-contract=fast",
)
_SELF_CHECK_TOL = 1e-5  # the approximation is ~3e-7; a miscompile is far off


def _cache_dir() -> Path:
    """``$DETECTOR_CACHE_DIR/native``; that defaults to ``$XDG_CACHE_HOME/detector``, else
    ``~/.cache/detector``."""
    root = os.environ.get("DETECTOR_CACHE_DIR")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = str(Path(xdg) if xdg else Path.home() / ".cache") + "/detector"
    return Path(root) / "native"


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return os.uname().machine


def _compiler_id(cc: str) -> str:
    out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.splitlines()[0] if out.returncode == 0 and out.stdout else cc


def _build(cc: str) -> Path:
    """Compile (or find in the cache) the library for this CPU; raises on failure."""
    key = hashlib.sha256(
        "\n".join([SOURCE.read_text(), " ".join(CFLAGS), _compiler_id(cc), _cpu_flags()]).encode()
    ).hexdigest()[:20]
    target = _cache_dir() / f"lstm_cell-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Built beside the target and renamed into place: workers starting together never load a
    # half-written library.
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".so.tmp")
    os.close(fd)
    try:
        done = subprocess.run(
            [cc, *CFLAGS, "-o", tmp, str(SOURCE)], capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(f"{cc} failed: {done.stderr.strip()[:500]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _bind(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    lib.detector_lstm_step.argtypes = (
        ([ctypes.c_void_p] + [ctypes.c_int64] * 5 + [ctypes.c_void_p] * 8 + [ctypes.c_int64] * 2)
        + [ctypes.c_void_p] * 2
        + [ctypes.c_int64, ctypes.c_float]
    )
    lib.detector_lstm_step.restype = None
    lib.detector_lstm_cell.argtypes = (
        [ctypes.c_void_p] * 3 + [ctypes.c_int64] * 5 + [ctypes.c_float]
    )
    lib.detector_lstm_cell.restype = None
    lib.detector_tanh.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    lib.detector_tanh.restype = None
    return lib


def _self_check(cell: Callable[..., None]) -> float:
    """Largest difference from PyTorch's LSTM cell on random gates: a wrong build shows here."""
    gen = torch.Generator().manual_seed(0)
    hidden = 37  # not a multiple of the vector width: the loop's tail is checked too
    gates = torch.randn(5, 4 * hidden, generator=gen) * 4
    c = torch.randn(5, hidden, generator=gen)
    h = torch.empty(5, hidden)
    i, f, g, o = gates.double().split(hidden, 1)
    c_ref = torch.sigmoid(f) * c.double() + torch.sigmoid(i) * torch.tanh(g)
    h_ref = torch.sigmoid(o) * torch.tanh(c_ref)
    cell(gates, c, h)
    return max((c - c_ref).abs().max().item(), (h - h_ref).abs().max().item())


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled library, or ``None`` (disabled, no compiler, or failed its self-check)."""
    if os.environ.get("DETECTOR_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    cc = os.environ.get("CC") or "cc"
    if shutil.which(cc) is None:
        log.warning("no C compiler (%s) found: the LSTM cell runs in eager PyTorch", cc)
        return None
    try:
        lib = _bind(_build(cc))
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        log.warning("native LSTM cell unavailable, eager PyTorch instead: %s", exc)
        return None
    off = _self_check(functools.partial(_call_cell, lib))
    if not off <= _SELF_CHECK_TOL:  # NaN fails too
        log.warning("native LSTM cell is off by %.3g in its self-check: not used", off)
        return None
    return lib


def _call_cell(
    lib: ctypes.CDLL, gates: torch.Tensor, c: torch.Tensor, h: torch.Tensor, g_scale: float = 1.0
) -> None:
    batch, hidden = c.shape
    lib.detector_lstm_cell(
        gates.data_ptr(),
        c.data_ptr(),
        h.data_ptr(),
        batch,
        hidden,
        gates.stride(0),
        c.stride(0),
        h.stride(0),
        g_scale,
    )


def fits(*tensors: torch.Tensor) -> bool:
    """Whether the C cell can take these tensors as they are: float32 on the CPU, rows of
    contiguous values."""
    return all(
        t.device.type == "cpu" and t.dtype == torch.float32 and t.dim() == 2 and t.stride(1) == 1
        for t in tensors
    )


def lstm_cell() -> Callable[..., None] | None:
    """``cell(gates, c, h, g_scale=1.0)``: one LSTM layer's elementwise half, in place, for
    tensors that :func:`fits`; ``gates (B, 4H)`` pre-activations (PyTorch's [i, f, g, o] order;
    the cell gate's is multiplied by ``g_scale`` before its tanh), ``c (B, H)`` updated,
    ``h (B, H)`` written.
    ``None`` when the library is unavailable."""
    lib = library()
    return None if lib is None else functools.partial(_call_cell, lib)


def _torch_sgemm() -> int | None:
    """Address of the BLAS ``sgemm_`` inside torch's CPU library (MKL on x86-64 wheels)."""
    path = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
    try:
        return ctypes.cast(ctypes.CDLL(str(path)).sgemm_, ctypes.c_void_p).value
    except (OSError, AttributeError):
        return None


class _StepWeights:
    """Pointer arrays to a stacked LSTM's weights, for ``detector_lstm_step``; keeps the tensors
    alive as long as it lives."""

    def __init__(
        self,
        w_ih: list[torch.Tensor],
        w_hh: list[torch.Tensor],
        bias: list[torch.Tensor],
        head_w: torch.Tensor,
        head_b: torch.Tensor,
    ) -> None:
        tensors = [*w_ih, *w_hh, *bias, head_w, head_b]
        if not all(t.dtype == torch.float32 and t.is_contiguous() for t in tensors):
            raise ValueError("weights must be contiguous float32")
        self.tensors = tensors
        layers = len(w_ih)
        self.layers, self.hidden = layers, w_hh[0].shape[0]
        self.n_in, self.n_out = w_ih[0].shape[0], head_w.shape[1]
        arrays = [
            (ctypes.c_void_p * layers)(*(t.data_ptr() for t in ts)) for ts in (w_ih, w_hh, bias)
        ]
        self.w_ih, self.w_hh, self.bias = arrays
        self.head_w, self.head_b = head_w.data_ptr(), head_b.data_ptr()


_thread = threading.local()


def _init_thread() -> None:
    """Give this thread torch's intra-op thread count. torch sets MKL's thread count per
    thread, lazily, on a thread's first torch op; a step thread that calls ``sgemm`` directly
    before any would run MKL at its default (every core) and fight the other threads."""
    torch.get_num_threads()  # runs torch's lazy per-thread init (OpenMP and MKL counts)
    _thread.ready = True


def lstm_step(
    w_ih: list[torch.Tensor],
    w_hh: list[torch.Tensor],
    bias: list[torch.Tensor],
    head_w: torch.Tensor,
    head_b: torch.Tensor,
    residual: bool,
    g_scale: float = 1.0,
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """A whole streaming step in one C call that holds no GIL: ``step(x, h, c, gates) ->
    forecast``, or ``None`` when the library or torch's ``sgemm_`` is unavailable.

    Weights are laid out as :class:`detector.fused_step.FusedStep` keeps them: ``w_ih[l] (in,
    4H)``, ``w_hh[l] (H, 4H)``, ``bias[l] (4H)`` (the cell gate's scaled by ``1 / g_scale``),
    ``head_w (H, T)``, ``head_b (T)``. The call takes ``x (B, n_in)`` contiguous, ``h, c (layers,
    B, H)`` with equal strides and contiguous rows (updated in place) and a ``(>= B, 4H)``
    contiguous scratch buffer; it returns the ``(B, T)`` forecast.
    """
    lib, sgemm = library(), sgemm_address()
    if lib is None or sgemm is None:
        return None
    weights = _StepWeights(w_ih, w_hh, bias, head_w, head_b)

    def step(
        x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, gates: torch.Tensor
    ) -> torch.Tensor:
        if not getattr(_thread, "ready", False):
            _init_thread()
        batch = x.shape[0]
        out = torch.empty(batch, weights.n_out)
        lib.detector_lstm_step(
            sgemm,
            weights.layers,
            batch,
            weights.hidden,
            weights.n_in,
            weights.n_out,
            x.data_ptr(),
            weights.w_ih,
            weights.w_hh,
            weights.bias,
            weights.head_w,
            weights.head_b,
            h.data_ptr(),
            c.data_ptr(),
            h.stride(0),
            h.stride(1),
            gates.data_ptr(),
            out.data_ptr(),
            int(residual),
            g_scale,
        )
        return out

    return step


def step_fits(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, gates: torch.Tensor) -> bool:
    """Whether :func:`lstm_step`'s call can take these tensors as they are."""
    cpu32 = all(t.device.type == "cpu" and t.dtype == torch.float32 for t in (x, h, c, gates))
    return (
        cpu32
        and x.is_contiguous()
        and gates.is_contiguous()
        and h.dim() == 3
        and h.stride() == c.stride()
        and h.stride(2) == 1
        and h.shape == c.shape
    )


def _reference_step(x, h, c, w_ih, w_hh, bias, head_w, head_b):  # noqa: ANN001, ANN202
    """The step in plain float64 torch, for the self-check."""
    inp = x.double()
    hidden = h.shape[2]
    for layer in range(h.shape[0]):
        gates = inp @ w_ih[layer].double() + h[layer].double() @ w_hh[layer].double()
        gates = gates + bias[layer].double()
        i, f, g, o = gates.split(hidden, 1)
        c[layer] = (torch.sigmoid(f) * c[layer].double() + torch.sigmoid(i) * torch.tanh(g)).float()
        h[layer] = (torch.sigmoid(o) * torch.tanh(c[layer].double())).float()
        inp = h[layer].double()
    return inp @ head_w.double() + head_b.double()


@functools.cache
def sgemm_address() -> int | None:
    """torch's ``sgemm_``, if a whole step through it passes a self-check against torch."""
    lib, sgemm = library(), _torch_sgemm()
    if lib is None or sgemm is None:
        return None
    gen = torch.Generator().manual_seed(1)
    layers, hidden, n_in, n_out, batch = 2, 13, 5, 3, 9

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * 0.5

    w_ih = [rand(n_in, 4 * hidden), rand(hidden, 4 * hidden)]
    w_hh = [rand(hidden, 4 * hidden) for _ in range(layers)]
    bias = [rand(4 * hidden) for _ in range(layers)]
    head_w, head_b = rand(hidden, n_out), rand(n_out)
    x, h, c = rand(batch, n_in), rand(layers, batch, hidden), rand(layers, batch, hidden)
    h_ref, c_ref = h.clone(), c.clone()
    want = _reference_step(x, h_ref, c_ref, w_ih, w_hh, bias, head_w, head_b)
    weights = _StepWeights(w_ih, w_hh, bias, head_w, head_b)
    out, gates = torch.empty(batch, n_out), torch.empty(batch, 4 * hidden)
    lib.detector_lstm_step(
        sgemm,
        layers,
        batch,
        hidden,
        n_in,
        n_out,
        x.data_ptr(),
        weights.w_ih,
        weights.w_hh,
        weights.bias,
        weights.head_w,
        weights.head_b,
        h.data_ptr(),
        c.data_ptr(),
        h.stride(0),
        h.stride(1),
        gates.data_ptr(),
        out.data_ptr(),
        0,
        1.0,
    )
    off = max((out - want).abs().max().item(), (h - h_ref).abs().max().item())
    if not off <= 1e-4:  # NaN fails too
        log.warning("native LSTM step is off by %.3g in its self-check: not used", off)
        return None
    return sgemm


def native_tanh(x: torch.Tensor) -> torch.Tensor:
    """The kernel's tanh approximation over a float32 CPU tensor (for accuracy tests)."""
    lib = library()
    if lib is None:
        raise RuntimeError("native library unavailable")
    x = x.contiguous()
    y = torch.empty_like(x)
    lib.detector_tanh(x.data_ptr(), y.data_ptr(), x.numel())
    return y
