import numpy as np
import pytest

from detector.scaling import Scaler


@pytest.mark.parametrize("kind", ["minmax", "standard"])
def test_inverse_undoes_transform(kind: str) -> None:
    x = np.random.default_rng(0).normal(5, 3, (100, 3)) * [1e-3, 1, 1e4]
    s = Scaler.fit(x, kind)
    np.testing.assert_allclose(s.inverse(s.transform(x)), x, rtol=1e-12)


def test_minmax_maps_training_range_to_unit_interval() -> None:
    x = np.array([[2.0, -1.0], [4.0, 1.0], [3.0, 0.0]])
    z = Scaler.fit(x, "minmax").transform(x)
    np.testing.assert_allclose(z.min(axis=0), 0.0)
    np.testing.assert_allclose(z.max(axis=0), 1.0)


def test_standard_ignores_missing_and_handles_constant_columns() -> None:
    x = np.array([[1.0, 7.0, np.nan], [3.0, 7.0, np.nan], [np.nan, 7.0, np.nan]])
    s = Scaler.fit(x, "standard")
    np.testing.assert_allclose(s.offset, [2.0, 7.0, 0.0])
    np.testing.assert_allclose(s.scale, [1.0, 1.0, 1.0])
    assert np.isnan(s.transform(x)[2, 0])


def test_state_round_trip_and_validation() -> None:
    s = Scaler.fit(np.arange(12.0).reshape(4, 3), "minmax")
    back = Scaler.from_state(s.to_state())
    np.testing.assert_array_equal(back.offset, s.offset)
    with pytest.raises(ValueError, match="scale must be finite and positive"):
        Scaler.from_state({"kind": "minmax", "offset": [0.0], "scale": [0.0]})
    with pytest.raises(ValueError, match="scaler must be one of"):
        Scaler.fit(np.ones((2, 1)), "robust")
