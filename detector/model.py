"""The LSTM forecaster: stacked LSTM layers with dropout and a dense head.

One reading at time t holds ``n_inputs`` features: the forecast targets followed by the
input-only covariates (setpoints, commands). The model reads readings up to t and forecasts the
targets at t+1, in scaled units. Two ways in:

* :meth:`LSTMForecaster.forward` over windows ``(B, T, n_inputs)``, for training (BPTT);
* :meth:`LSTMForecaster.step` one reading per stream ``(B, n_inputs)`` with an explicit
  ``(h, c)``, for streaming, where each stream keeps its own hidden state.

Both run the same weights, so stepping a window reading by reading gives ``forward``'s forecast.

Example
-------
>>> args = ModelArgs(n_inputs=3, n_targets=2)
>>> model = LSTMForecaster(args)
>>> model(torch.zeros(8, 32, 3)).shape
torch.Size([8, 2])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = ["ModelArgs", "LSTMForecaster"]


@dataclass(frozen=True)
class ModelArgs:
    """Shape of the network; stored in every checkpoint so the model can be rebuilt."""

    n_inputs: int  # features per reading: targets first, then covariates
    n_targets: int  # features forecast (the first n_targets inputs)
    hidden: int = 64  # LSTM units per layer
    layers: int = 2  # stacked LSTM layers
    dropout: float = 0.2  # between LSTM layers and before the head; off in eval mode
    residual: bool = True  # forecast = last reading + learned change (see LSTMForecaster)

    def __post_init__(self) -> None:
        if not 1 <= self.n_targets <= self.n_inputs:
            raise ValueError(
                f"need 1 <= n_targets ({self.n_targets}) <= n_inputs ({self.n_inputs})"
            )
        if self.hidden < 1 or self.layers < 1:
            raise ValueError(f"hidden ({self.hidden}) and layers ({self.layers}) must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)


class LSTMForecaster(nn.Module):
    """Stacked LSTM → dropout → linear head forecasting the next reading's targets.

    With ``residual`` the head forecasts the change from the last reading rather than the level.
    A tanh-bounded LSTM cannot output a level outside what it saw in training, so a stream that
    drifts past its training range would be forecast at the edge of that range; forecasting the
    change keeps such a stream's error small and starts the model at persistence.
    """

    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.args = args
        self.lstm = nn.LSTM(
            input_size=args.n_inputs,
            hidden_size=args.hidden,
            num_layers=args.layers,
            batch_first=True,
            # nn.LSTM applies dropout between layers only; it warns when there is one layer.
            dropout=args.dropout if args.layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(args.dropout)
        self.lstm_dropout = nn.Dropout(args.dropout if args.layers > 1 else 0.0)  # for step()
        self.head = nn.Linear(args.hidden, args.n_targets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Forecast the targets after each window: ``(B, T, n_inputs) -> (B, n_targets)``."""
        out, _ = self.lstm(x)  # (B, T, H)
        return self._forecast(x[:, -1], out[:, -1])  # (B, n_targets)

    def _forecast(self, last: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
        """Forecast from the last reading ``(B, n_inputs)`` and the top LSTM output ``(B, H)``."""
        y = self.head(self.dropout(top))
        return y + last[:, : self.args.n_targets] if self.args.residual else y

    def init_state(
        self, batch: int, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero ``(h, c)``, each ``(layers, batch, hidden)``."""
        shape = (self.args.layers, batch, self.args.hidden)
        dev = device if device is not None else self.head.weight.device
        return torch.zeros(shape, device=dev), torch.zeros(shape, device=dev)

    def prime(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Read whole windows ``(B, T, n_inputs)`` from a zero state, as in training.

        Returns the forecast after each window and the state to continue stepping from.
        """
        out, state = self.lstm(x)  # out: (B, T, H)
        return self._forecast(x[:, -1], out[:, -1]), state

    def step(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Consume one reading per stream and forecast each stream's next targets.

        ``x`` is ``(B, n_inputs)``; ``state`` is ``(h, c)``, each ``(layers, B, hidden)``.
        Returns the ``(B, n_targets)`` forecast and the new state.

        The gate math is written out (two matmuls per layer) rather than calling ``nn.LSTM``
        for a sequence of one: same weights and result, a fraction of the per-call overhead,
        which dominates when a wave holds few streams.
        """
        h, c = state
        inp, hs, cs = x, [], []
        for layer in range(self.args.layers):
            w_ih = getattr(self.lstm, f"weight_ih_l{layer}")  # (4H, in)
            w_hh = getattr(self.lstm, f"weight_hh_l{layer}")  # (4H, H)
            bias = getattr(self.lstm, f"bias_ih_l{layer}") + getattr(self.lstm, f"bias_hh_l{layer}")
            gates = torch.addmm(bias, inp, w_ih.t()).addmm_(h[layer], w_hh.t())  # (B, 4H)
            i, f, g, o = gates.chunk(4, dim=1)  # PyTorch's gate order
            c_new = torch.sigmoid(f) * c[layer] + torch.sigmoid(i) * torch.tanh(g)
            h_new = torch.sigmoid(o) * torch.tanh(c_new)
            hs.append(h_new)
            cs.append(c_new)
            inp = self.lstm_dropout(h_new) if layer + 1 < self.args.layers else h_new
        return self._forecast(x, inp), (torch.stack(hs), torch.stack(cs))
