import numpy as np

from detector.windows import make_windows


def test_shapes_and_targets() -> None:
    v = np.arange(20.0).reshape(10, 2)
    X, y, row = make_windows(v, timesteps=4, n_targets=1)
    assert X.shape == (6, 4, 2) and y.shape == (6, 1)
    np.testing.assert_array_equal(row, np.arange(4, 10))
    np.testing.assert_array_equal(X[0], v[0:4])
    np.testing.assert_array_equal(y[:, 0], v[4:, 0])


def test_windows_touching_missing_or_excluded_rows_are_dropped() -> None:
    v = np.arange(10.0)[:, None]
    v[5] = np.nan
    _, _, row = make_windows(v, timesteps=2, n_targets=1)
    # rows 5, 6, 7 have row 5 in their window or as target
    np.testing.assert_array_equal(row, [2, 3, 4, 8, 9])
    keep = np.ones(10, bool)
    keep[2] = False
    _, _, row = make_windows(np.arange(10.0)[:, None], 2, 1, keep)
    np.testing.assert_array_equal(row, [5, 6, 7, 8, 9])


def test_too_short_gives_empty() -> None:
    X, y, row = make_windows(np.ones((3, 2)), timesteps=3, n_targets=2)
    assert X.shape == (0, 3, 2) and y.shape == (0, 2) and row.shape == (0,)
