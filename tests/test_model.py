import pytest
import torch

from detector.model import LSTMForecaster, ModelArgs


def test_step_by_step_equals_forward_over_window() -> None:
    torch.manual_seed(0)
    model = LSTMForecaster(ModelArgs(n_inputs=3, n_targets=2, hidden=8, layers=2)).eval()
    x = torch.randn(5, 12, 3)
    state = model.init_state(5)
    for t in range(12):
        y_step, state = model.step(x[:, t], state)
    torch.testing.assert_close(y_step, model(x))


def test_output_shape_and_dropout_only_in_training() -> None:
    model = LSTMForecaster(ModelArgs(n_inputs=4, n_targets=1, hidden=16, dropout=0.5))
    x = torch.randn(7, 10, 4)
    assert model(x).shape == (7, 1)
    model.eval()
    torch.testing.assert_close(model(x), model(x))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n_inputs=2, n_targets=3),
        dict(n_inputs=2, n_targets=1, hidden=0),
        dict(n_inputs=2, n_targets=1, dropout=1.0),
    ],
)
def test_bad_args_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ModelArgs(**kwargs)
