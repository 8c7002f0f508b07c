"""The streaming step with fused gate math on preallocated buffers: the engine's hot kernel.

:meth:`LSTMForecaster.step` is the readable reference: per layer two matmuls, four gate
activations on strided chunks and fresh tensors for every intermediate. At a few thousand streams
per wave those allocations and strided passes cost as much as the matmuls themselves, so the
engine runs this kernel instead. It computes the same function with:

* weights transposed once, and the cell gate's rows doubled so that its ``tanh`` comes out of
  the same pass: ``tanh(x) = 2 sigmoid(2x) - 1``. One in-place ``sigmoid_`` over the whole gate
  buffer replaces four activations on strided chunks (on CPU, torch's ``tanh`` costs several
  times its ``sigmoid`` per element); the same identity serves ``tanh(c)``;
* the two biases summed once, and each layer's gates written by ``addmm(out=...)`` into a buffer
  that is reused from wave to wave;
* ``h`` and ``c`` updated in place in the caller's (gathered) tensors: no ``stack``, no copies;
* on the CPU, when :mod:`detector.native` could build its C kernel, the whole step in one C call
  that releases the GIL: the same BLAS ``sgemm`` that ``torch.addmm`` calls, and each layer's
  elementwise half (activations, cell update, ``h``) in one vectorised pass over the gates
  instead of eight eager passes. The step's cost comes down to its matrix multiplications, and
  the engine's scoring thread no longer contends with it for the GIL.

Inference only: no autograd, no dropout (the model runs in eval mode when streaming).
"""

from __future__ import annotations

import torch

from detector import native
from detector.model import LSTMForecaster

__all__ = ["FusedStep", "step_kernel"]


class FusedStep:
    """``step(x, h, c) -> forecast`` for a fixed model; ``h``/``c`` are updated in place."""

    def __init__(self, model: LSTMForecaster, use_native: bool = True) -> None:
        args = model.args
        H = args.hidden
        device = model.head.weight.device
        # PyTorch's gate order is [i, f, g, o]; g's pre-activation is doubled (see above).
        gain = torch.ones(4 * H, 1, device=device)
        gain[2 * H : 3 * H] = 2.0
        self.w_ih, self.w_hh, self.bias = [], [], []
        with torch.no_grad():
            for layer in range(args.layers):
                w_ih = getattr(model.lstm, f"weight_ih_l{layer}")
                w_hh = getattr(model.lstm, f"weight_hh_l{layer}")
                b = getattr(model.lstm, f"bias_ih_l{layer}") + getattr(
                    model.lstm, f"bias_hh_l{layer}"
                )
                self.w_ih.append((w_ih * gain).t().contiguous())  # (in, 4H)
                self.w_hh.append((w_hh * gain).t().contiguous())  # (H, 4H)
                self.bias.append((b * gain[:, 0]).contiguous())
            self.head_w = model.head.weight.t().contiguous()  # (H, n_targets)
            self.head_b = model.head.bias.detach().clone()
        self.hidden, self.layers = H, args.layers
        self.n_targets, self.residual = args.n_targets, args.residual
        self.device = device
        self._gates = torch.empty(0, 4 * H, device=device)  # grown on demand, reused
        self._tanh_c = torch.empty(0, H, device=device)
        on_cpu = use_native and device.type == "cpu"
        self._cell = native.lstm_cell() if on_cpu else None
        self._whole = (
            native.lstm_step(
                self.w_ih, self.w_hh, self.bias, self.head_w, self.head_b, self.residual, 0.5
            )
            if on_cpu
            else None
        )

    @property
    def kernel(self) -> str:
        """What runs: ``"native step"`` (the whole step in C, matmuls by torch's BLAS),
        ``"native cell"`` (torch matmuls, C elementwise) or ``"eager"`` (PyTorch ops only)."""
        if self._whole is not None:
            return "native step"
        return "native cell" if self._cell is not None else "eager"

    def _buffers(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._gates.shape[0] < batch:
            size = max(batch, 2 * self._gates.shape[0])
            self._gates = torch.empty(size, 4 * self.hidden, device=self.device)
            self._tanh_c = torch.empty(size, self.hidden, device=self.device)
        return self._gates[:batch], self._tanh_c[:batch]

    def __call__(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """One reading per stream: ``x (B, n_inputs)``; ``h, c (layers, B, hidden)`` updated in
        place. Returns the ``(B, n_targets)`` forecast of the next reading (scaled units)."""
        H = self.hidden
        gates, tanh_c = self._buffers(x.shape[0])
        if self._whole is not None and native.step_fits(x, h, c, gates):
            return self._whole(x, h, c, gates)  # one C call, without the GIL
        inp = x
        for layer in range(self.layers):
            torch.addmm(self.bias[layer], inp, self.w_ih[layer], out=gates)
            gates.addmm_(h[layer], self.w_hh[layer])
            if self._cell is not None and native.fits(gates, c[layer], h[layer]):
                self._cell(gates, c[layer], h[layer], 0.5)  # 0.5: the g rows are doubled
                inp = h[layer]
                continue
            gates.sigmoid_()
            i, f, s, o = (gates[:, k * H : (k + 1) * H] for k in range(4))
            # c = f*c + i*tanh(g), with tanh(g) = 2s - 1: f*c + 2*i*s - i
            c[layer].mul_(f).addcmul_(i, s, value=2.0).sub_(i)
            # h = o * tanh(c) = o * (2 sigmoid(2c) - 1)
            torch.mul(c[layer], 2.0, out=tanh_c).sigmoid_()
            torch.neg(o, out=h[layer]).addcmul_(o, tanh_c, value=2.0)
            inp = h[layer]
        forecast = torch.addmm(self.head_b, inp, self.head_w)
        if self.residual:
            forecast += x[:, : self.n_targets]
        return forecast


class _ModuleStep:
    """Any other model with ``step(x, (h, c))`` (a baseline), behind the same call."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    def __call__(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        forecast, (h_new, c_new) = self.model.step(x, (h, c))
        h.copy_(h_new)
        c.copy_(c_new)
        return forecast


def step_kernel(model: torch.nn.Module) -> FusedStep | _ModuleStep:
    """The fused kernel for an :class:`LSTMForecaster`, else the model's own ``step``."""
    return FusedStep(model) if isinstance(model, LSTMForecaster) else _ModuleStep(model)
