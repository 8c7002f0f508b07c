"""detector's hot loops in C (``kernels.c``), compiled for this CPU on first use.

Eager PyTorch spends as long on a step's elementwise gate math as on its matrix multiplications
(a ``sigmoid`` pass over ``B x 4H``, another over ``B x H`` and half a dozen cheap passes, per
layer). The C kernel does all of it in one vectorised pass, and with torch's own BLAS ``sgemm``
runs a whole step in one call that releases the GIL. The scorer's Gaussian test, ~17 NumPy passes
over ``(B, targets)`` float64 arrays (most of a wave for wide video embeddings), is one pass here
too. The library is built with the system's C
compiler (``$CC``, else ``cc``) and ``-march=native``, like PyTorch's own JIT extensions but
without their build chain (no torch headers, no ninja: a plain shared library called through
``ctypes``, which releases the GIL). The library is cached under
``$DETECTOR_CACHE_DIR/native`` (default ``~/.cache/detector/native``), keyed by the source, the
flags, the compiler and the CPU's feature flags, so a worker compiles it once per machine
(~0.2 s).

Nothing depends on it: without a compiler, with ``DETECTOR_NATIVE=0``, or if the built library
fails its self-check against PyTorch, :func:`library` is ``None`` and the engine keeps its eager
PyTorch and NumPy code (a warning says why, once).
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

import numpy as np
import torch

__all__ = [
    "lstm_cell",
    "lstm_step",
    "gaussian",
    "scale_rows",
    "unscale_rows",
    "errors",
    "native_tanh",
    "library",
    "sgemm_address",
    "fits",
    "CFLAGS",
]

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("kernels.c")
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
_SELF_CHECK_TOL = 1e-5
# Rows per block of the step: a block's gates (block x 4H floats, 512 KiB at H = 64) stay in
# the core's L2 between the matmuls that write them and the cell that reads them. Measured at
# 4,096 and 10,000 sensor streams on a 1 MiB-L2 EPYC: 64 < 128 < 256 <= 512, and unblocked
# 6-14% slower than 512.
STEP_BLOCK = 512  # the approximation is ~3e-7; a miscompile is far off


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
    target = _cache_dir() / f"kernels-{key}.so"
    if target.exists():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # Built beside the target and renamed into place: workers starting together never load
        # a half-written library.
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".so.tmp")
    except OSError as exc:
        # A read-only file system (a locked-down pod): build in a fresh private directory, once
        # per process. Never in a fixed shared path, where another user could plant a library.
        log.info(
            "cache %s not writable (%s): building in a private temporary directory",
            target.parent,
            exc,
        )
        target = Path(tempfile.mkdtemp(prefix="detector-native-")) / target.name
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
    """Load the library and declare each function's C signature (see kernels.c)."""
    lib = ctypes.CDLL(str(path))
    i64, ptr, f32, f64 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_float, ctypes.c_double
    rows = [ptr, i64, i64]  # rows pointer (or NULL), row0, slab row stride
    signatures = {
        "detector_lstm_step": [ptr]
        + [i64] * 5
        + [ptr] * 8
        + [i64] * 2
        + [ptr] * 2
        + [i64, f32, i64],
        "detector_lstm_cell": [ptr] * 3 + [i64] * 5 + [f32],
        "detector_gaussian": [ptr, i64, ptr, ptr, *rows, i64, i64, ptr, f64, ptr, ptr, ptr],
        "detector_repeats": [ptr, i64, ptr, ptr, ptr, ptr, i64, i64, i64, ptr, f64, f64, ptr, ptr],
        "detector_relations": [ptr, i64, ptr, ptr, ptr, ptr, i64, i64, i64]
        + [f64] * 5
        + [i64, ptr, ptr, ptr],
        "detector_sustained": [ptr, i64, ptr, ptr, ptr, ptr, i64, i64, i64, f64, f64, ptr, f64]
        + [f64, ptr, ptr],
        "detector_scale": [ptr, i64, ptr, ptr, *rows, i64, i64, f64, ptr],
        "detector_unscale": [ptr, i64, ptr, ptr, *rows, i64, i64, ptr],
        "detector_errors": [ptr, i64, ptr, ptr, ptr, *rows, i64, i64, ptr, ptr],
        "detector_tanh": [ptr, ptr, i64],
    }
    for name, argtypes in signatures.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, None
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

    def run(
        self,
        lib: ctypes.CDLL,
        sgemm: int,
        x: torch.Tensor,
        h: torch.Tensor,
        c: torch.Tensor,
        gates: torch.Tensor,
        out: torch.Tensor,
        residual: bool,
        g_scale: float,
        block: int,
    ) -> None:
        """``detector_lstm_step`` on these tensors (see :func:`lstm_step` for their layout)."""
        lib.detector_lstm_step(
            sgemm,
            self.layers,
            x.shape[0],
            self.hidden,
            self.n_in,
            self.n_out,
            x.data_ptr(),
            self.w_ih,
            self.w_hh,
            self.bias,
            self.head_w,
            self.head_b,
            h.data_ptr(),
            c.data_ptr(),
            h.stride(0),
            h.stride(1),
            gates.data_ptr(),
            out.data_ptr(),
            int(residual),
            g_scale,
            block,
        )


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
        weights.run(lib, sgemm, x, h, c, gates, out, residual, g_scale, STEP_BLOCK)
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
    weights.run(lib, sgemm, x, h, c, gates, out, residual=False, g_scale=1.0, block=4)
    off = max((out - want).abs().max().item(), (h - h_ref).abs().max().item())
    if not off <= 1e-4:  # NaN fails too
        log.warning("native LSTM step is off by %.3g in its self-check: not used", off)
        return None
    return sgemm


def gaussian(
    x: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    slots: np.ndarray | slice,
    alpha: np.ndarray,
    clip: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The scorer's EWMA Gaussian test in one pass (see ``detector_gaussian`` in kernels.c):
    ``x (B, D)`` against slab rows ``slots`` (an int64 array, or a slice of consecutive rows) of
    ``mean`` and ``var (capacity, D)``, which it updates at rates ``alpha (B,)`` with deviations
    clipped at ``clip`` sigmas. Returns ``z2 (B, D)``, ``d2 (B,)`` and ``dof (B,)``; ``None``
    when the library is unavailable or the arrays are not float64 with contiguous rows."""
    lib = library()
    if lib is None or not _gaussian_fits(x, mean, var, alpha):
        return None
    batch, dim = x.shape
    index, rows, row0 = _row_args(slots)
    z2, d2, dof = np.empty((batch, dim)), np.empty(batch), np.empty(batch, np.int64)
    lib.detector_gaussian(
        x.ctypes.data,
        x.strides[0] // 8,
        mean.ctypes.data,
        var.ctypes.data,
        rows,
        row0,
        mean.strides[0] // 8,
        batch,
        dim,
        alpha.ctypes.data,
        clip,
        z2.ctypes.data,
        d2.ctypes.data,
        dof.ctypes.data,
    )
    return z2, d2, dof


def _row_args(slots: np.ndarray | slice) -> tuple[np.ndarray | None, int | None, int]:
    """``(keep-alive array, rows pointer, row0)`` for the C loops' slab-row arguments."""
    if isinstance(slots, slice):
        return None, None, slots.start
    index = np.ascontiguousarray(slots, np.int64)
    return index, index.ctypes.data, 0


def _slabs_f64(width: int, *slabs: np.ndarray) -> bool:
    """float64 slabs with contiguous rows at least ``width`` wide, laid out alike (none: True)."""
    return (
        all(
            a.dtype == np.float64 and a.ndim == 2 and a.strides[1] == 8 and a.shape[1] >= width
            for a in slabs
        )
        and len({a.strides for a in slabs}) <= 1
    )


def _rows_f64(x: np.ndarray, *slabs: np.ndarray) -> bool:
    """float64 ``x (B, D)`` with contiguous rows, and :func:`_slabs_f64` slabs for it."""
    return (
        x.ndim == 2
        and x.dtype == np.float64
        and x.strides[1] == 8
        and _slabs_f64(x.shape[1], *slabs)
    )


def scale_rows(
    x: np.ndarray, offset: np.ndarray, scale: np.ndarray, slots: np.ndarray | slice, zmax: float
) -> np.ndarray | None:
    """``(x - offset[slots]) / scale[slots]`` clamped to ``+-zmax``, as float32, in one pass;
    ``None`` when the library is unavailable or the arrays do not fit."""
    lib = library()
    if lib is None or not _rows_f64(x, offset, scale):
        return None
    batch, dim = x.shape
    index, rows, row0 = _row_args(slots)
    out = np.empty((batch, dim), np.float32)
    lib.detector_scale(
        x.ctypes.data, x.strides[0] // 8, offset.ctypes.data, scale.ctypes.data, rows, row0,
        offset.strides[0] // 8, batch, dim, zmax, out.ctypes.data,
    )  # fmt: skip
    return out


def unscale_rows(
    scaled: np.ndarray, offset: np.ndarray, scale: np.ndarray, slots: np.ndarray | slice
) -> np.ndarray | None:
    """``scaled * scale[slots] + offset[slots]`` in float64 (``scaled`` float32 ``(B, T)``,
    the slabs' first T columns), in one pass; ``None`` when unavailable or not fitting."""
    lib = library()
    fits_f32 = scaled.ndim == 2 and scaled.dtype == np.float32 and scaled.strides[1] == 4
    if lib is None or not fits_f32 or not _slabs_f64(scaled.shape[1], offset, scale):
        return None
    batch, dim = scaled.shape
    index, rows, row0 = _row_args(slots)
    out = np.empty((batch, dim))
    lib.detector_unscale(
        scaled.ctypes.data, scaled.strides[0] // 4, offset.ctypes.data, scale.ctypes.data, rows,
        row0, offset.strides[0] // 8, batch, dim, out.ctypes.data,
    )  # fmt: skip
    return out


def errors(
    x: np.ndarray,
    forecast: np.ndarray,
    offset: np.ndarray,
    scale: np.ndarray,
    slots: np.ndarray | slice,
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(x - forecast) / scale[slots]`` and ``(x - offset[slots]) / scale[slots]`` over the
    first T columns (``forecast (B, T)`` float64 contiguous; the slabs at least T wide), in one
    pass; ``None`` when unavailable or not fitting."""
    lib = library()
    batch, dim = forecast.shape
    if (
        lib is None
        or forecast.dtype != np.float64
        or not forecast.flags.c_contiguous
        or x.shape[0] != batch
        or not _rows_f64(x)
        or x.shape[1] < dim
        or not _slabs_f64(dim, offset, scale)
    ):
        return None
    index, rows, row0 = _row_args(slots)
    err, level = np.empty((batch, dim)), np.empty((batch, dim))
    lib.detector_errors(
        x.ctypes.data, x.strides[0] // 8, forecast.ctypes.data, offset.ctypes.data,
        scale.ctypes.data, rows, row0, offset.strides[0] // 8, batch, dim, err.ctypes.data,
        level.ctypes.data,
    )  # fmt: skip
    return err, level


def repeats(
    x: np.ndarray,
    last: np.ndarray,
    run: np.ndarray,
    rate: np.ndarray,
    slots: np.ndarray | slice,
    alpha: np.ndarray,
    floor_rate: float,
    sat: float,
    z2: np.ndarray,
) -> np.ndarray | None:
    """The scorer's repeats test in one pass (see ``detector_repeats`` in kernels.c): readings
    ``x (B, D)`` against slab rows ``slots`` of ``last``, ``run`` and ``rate``
    ``(capacity, D)`` (float32), updated in place; adds each target's ``-2 ln p`` to ``z2 (B,
    D)`` and returns each row's least ``log10 p (B,)``. ``None`` when the library is
    unavailable or the arrays do not fit."""
    lib = library()
    batch, dim = x.shape
    fits = (
        x.dtype == alpha.dtype == z2.dtype == np.float64
        and x.strides[1] == 8
        and alpha.shape == (batch,)
        and alpha.flags.c_contiguous
        and z2.shape == x.shape
        and z2.flags.c_contiguous
        and all(
            a.dtype == np.float32 and a.flags.c_contiguous and a.shape[1:] == (dim,)
            for a in (last, run, rate)
        )
    )
    if lib is None or not fits:
        return None
    index, rows, row0 = _row_args(slots)
    least = np.empty(batch)
    lib.detector_repeats(
        x.ctypes.data, x.strides[0] // 8, last.ctypes.data, run.ctypes.data, rate.ctypes.data,
        rows, row0, batch, dim, alpha.ctypes.data, floor_rate, sat, z2.ctypes.data,
        least.ctypes.data,
    )  # fmt: skip
    return least


RELATIONS_MAX = 64  # detector_relations' stack buffers: at most this many targets


def tri_indices(dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of each element of a packed lower triangle, in ``detector_relations``'
    order: ``(i, j)``, ``j <= i``, row by row."""
    return np.tril_indices(dim)


def relations(
    x: np.ndarray,
    mean: np.ndarray,
    cov: np.ndarray,
    count: np.ndarray,
    slots: np.ndarray | slice,
    z2: np.ndarray,
    *,
    prior: float,
    horizon: float,
    ridge: float,
    floor_var: float,
    c2: float,
    warmup: int,
    white: np.ndarray | None = None,
) -> np.ndarray | None:
    """The scorer's relations test in one pass (see ``detector_relations`` in kernels.c):
    readings ``x (B, D)`` against slab rows ``slots`` of ``mean (capacity, D)``, ``cov
    (capacity, D (D + 1) / 2)`` (float32, the lower triangle packed by rows, as
    :func:`tri_indices` orders it) and ``count (capacity,)``, updated in place; adds each
    target's share to ``z2 (B, D)`` and returns each row's squared Mahalanobis distance
    ``(B,)``, -1 where there is no evidence (a missing value, or not warm yet); writes each
    row's whitened innovation to ``white (B, D)`` unless it is None. ``None`` when the library
    is unavailable or the arrays do not fit."""
    lib = library()
    batch, dim = x.shape
    fits = (
        dim <= RELATIONS_MAX
        and x.dtype == np.float64
        and x.strides[1] == 8
        and mean.dtype == z2.dtype == np.float64
        and cov.dtype == np.float32
        and count.dtype == np.int64
        and all(a.flags.c_contiguous for a in (mean, cov, count, z2))
        and mean.shape[1:] == (dim,)
        and cov.shape[1:] == (dim * (dim + 1) // 2,)
        and z2.shape == x.shape
        and (
            white is None
            or (white.dtype == np.float64 and white.flags.c_contiguous and white.shape == x.shape)
        )
    )
    if lib is None or not fits:
        return None
    index, rows, row0 = _row_args(slots)
    d2 = np.empty(batch)
    lib.detector_relations(
        x.ctypes.data,
        x.strides[0] // 8,
        mean.ctypes.data,
        cov.ctypes.data,
        count.ctypes.data,
        rows,
        row0,
        batch,
        dim,
        prior,
        horizon,
        ridge,
        floor_var,
        c2,
        warmup,
        z2.ctypes.data,
        d2.ctypes.data,
        None if white is None else white.ctypes.data,
    )
    return d2


def sustained(
    x: np.ndarray,
    smooth: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    slots: np.ndarray | slice,
    alpha: np.ndarray,
    memory: float,
    max_step: float,
    clip: float,
    beyond: float = 1.0,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The scorer's sustained test in one pass (see ``detector_sustained`` in kernels.c):
    readings ``x (B, D)`` against slab rows ``slots`` of ``smooth``, ``mean`` and ``var
    (capacity, D)`` (float32), updated in place at rates ``alpha (B,)``; a reading moves its
    average by at most ``max_step`` of the average's own sds, and an average beyond ``clip``
    sigmas grows the variance ``beyond`` as much as one at the clip would. Returns ``z2 (B, D)``
    and each row's largest ``(B,)``; ``None`` when the library is unavailable or the arrays do
    not fit."""
    lib = library()
    batch, dim = x.shape
    fits = (
        x.dtype == alpha.dtype == np.float64
        and x.strides[1] == 8
        and alpha.shape == (batch,)
        and alpha.flags.c_contiguous
        and all(
            a.dtype == np.float32 and a.flags.c_contiguous and a.shape[1:] == (dim,)
            for a in (smooth, mean, var)
        )
    )
    if lib is None or not fits:
        return None
    index, rows, row0 = _row_args(slots)
    z2, zmax = np.empty((batch, dim)), np.empty(batch)
    lib.detector_sustained(
        x.ctypes.data,
        x.strides[0] // 8,
        smooth.ctypes.data,
        mean.ctypes.data,
        var.ctypes.data,
        rows,
        row0,
        batch,
        dim,
        memory,
        max_step,
        alpha.ctypes.data,
        clip,
        beyond,
        z2.ctypes.data,
        zmax.ctypes.data,
    )
    return z2, zmax


def _gaussian_fits(x: np.ndarray, mean: np.ndarray, var: np.ndarray, alpha: np.ndarray) -> bool:
    f64 = all(a.dtype == np.float64 for a in (x, mean, var, alpha))
    return (
        f64
        and x.ndim == 2
        and mean.shape == var.shape
        and mean.strides == var.strides
        and mean.shape[1:] == x.shape[1:]
        and all(a.strides[-1] == 8 for a in (x, mean))
        and alpha.shape == (x.shape[0],)
        and alpha.strides == (8,)
    )


def native_tanh(x: torch.Tensor) -> torch.Tensor:
    """The kernel's tanh approximation over a float32 CPU tensor (for accuracy tests)."""
    lib = library()
    if lib is None:
        raise RuntimeError("native library unavailable")
    x = x.contiguous()
    y = torch.empty_like(x)
    lib.detector_tanh(x.data_ptr(), y.data_ptr(), x.numel())
    return y
