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


def test_window_samples_index_like_the_whole_array_without_holding_it() -> None:
    import torch

    from detector.windows import TorchWindows, WindowSamples, usable_starts

    rows = np.arange(60, dtype=np.float32).reshape(20, 3)
    start = usable_starts(rows, 4, None)
    samples = WindowSamples(rows, start, 4)
    whole, _, _ = make_windows(rows, timesteps=4, n_targets=1)
    assert samples.shape == whole.shape and len(samples) == len(whole)
    np.testing.assert_array_equal(np.asarray(samples), whole)
    pick = np.array([5, 0, 11])
    for key in (3, slice(2, 9, 3), pick, (pick, -1), (slice(None), -1, slice(0, 2)), (2, 1)):
        np.testing.assert_array_equal(samples[key], whole[key])
    np.testing.assert_array_equal(samples.latest(), whole[:, -1])
    on_device = TorchWindows(samples, torch.device("cpu"))
    np.testing.assert_array_equal(on_device[torch.from_numpy(pick)].numpy(), whole[pick])
    assert np.shares_memory(samples.rows, rows)  # the rows themselves, not T copies of them


def test_trainset_windows_are_the_windows_of_each_stream() -> None:
    """The samples of both splits, read from one array of all streams' rows, are exactly the
    per-stream windows (missing readings and labelled rows left out) and never cross from one
    stream into the next."""
    from detector.series import Series
    from detector.trainset import build_trainset, resolve_features, train_rows

    rng = np.random.default_rng(3)
    series = []
    for k, n in enumerate((90, 40, 120)):
        values = rng.standard_normal((n, 2)).cumsum(axis=0)
        values[n // 3, 1] = np.nan
        labels = np.zeros(n, np.uint8)
        labels[n // 2 : n // 2 + 3] = 1
        ts = np.arange(n, dtype=float)
        series.append(Series(f"s{k}", ts, values, ("a", "b"), labels))
    ts = build_trainset(series, resolve_features(series, None), timesteps=8)
    assert np.shares_memory(ts.train.X.rows, ts.val.X.rows)
    for k, s in enumerate(series):
        scaled = ts.scalers[k].transform(s.select(["a", "b"]))
        X, y, row = make_windows(scaled, 8, 2, s.labels == 0)
        cut = train_rows(len(s), 0.2)
        for part, mask in ((ts.train, row < cut), (ts.val, row >= cut)):
            mine = part.stream == k
            np.testing.assert_array_equal(part.row[mine], row[mask])
            np.testing.assert_array_equal(part.X[np.flatnonzero(mine)], X[mask])
            np.testing.assert_array_equal(part.y[mine], y[mask])
