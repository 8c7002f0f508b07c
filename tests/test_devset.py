"""The development benchmark generator (scripts/devset.py): fixed seeds, clean training parts,
anomalies only in the test parts, readable by `detector evaluate --train --test`."""

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from detector.csvio import read_dataset

_PATH = Path(__file__).resolve().parents[1] / "scripts" / "devset.py"


@pytest.fixture(scope="module")
def devset():
    spec = importlib.util.spec_from_file_location("devset", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["devset"] = module
    spec.loader.exec_module(module)
    return module


def test_generate_is_deterministic_and_labels_only_the_test_parts(devset, tmp_path) -> None:
    devset.generate(tmp_path / "a", seed=0)
    devset.generate(tmp_path / "b", seed=0)
    devset.generate(tmp_path / "c", seed=1)
    for group in devset.GROUPS:
        train = read_dataset(tmp_path / "a" / group / "train")
        test = read_dataset(tmp_path / "a" / group / "test")
        assert [s.name for s in train] == [s.name for s in test]
        assert all(s.columns == test[0].columns for s in train + test)
        assert all(not s.labels.any() for s in train)
        assert all(s.labels.any() for s in test)
        for part in ("train", "test"):
            for f in sorted((tmp_path / "a" / group / part).glob("*.csv")):
                same = tmp_path / "b" / group / part / f.name
                assert f.read_bytes() == same.read_bytes()
    assert read_dataset(tmp_path / "a" / "uni" / "test")[0].values.shape[1] == 1
    assert read_dataset(tmp_path / "a" / "telemetry" / "test")[0].values.shape[1] == 5
    a = read_dataset(tmp_path / "a" / "uni" / "test")[0].values
    c = read_dataset(tmp_path / "c" / "uni" / "test")[0].values
    assert not np.array_equal(a, c, equal_nan=True)  # another seed, another set


def test_parse_variant(devset) -> None:
    name, cfg = devset.parse_variant("x:scorer.tail_clip=5,scorer.level=off,alerts.quiet=0")
    assert name == "x"
    assert (cfg.scorer.tail_clip, cfg.scorer.level, cfg.alerts.quiet) == (5, False, 0)
    _, default = devset.parse_variant("defaults:")
    assert default.scorer == type(default.scorer)()
    with pytest.raises(SystemExit):
        devset.parse_variant("bad:tail_clip=5")


def test_a_variant_may_score_with_persistence_in_place_of_the_lstm(devset) -> None:
    text = "p:forecaster=persistence,scorer.tail_clip=5"
    assert devset.variant_forecaster(text) == "persistence"
    assert devset.parse_variant(text)[1].scorer.tail_clip == 5  # the rest read as before
    assert devset.variant_forecaster("x:scorer.tail_clip=5") == "lstm"
    assert devset.variant_forecaster("e:forecaster=ensemble") == "ensemble"
    assert devset.variant_forecaster("d:forecaster=discord") == "discord"
    assert devset.variant_forecaster("ld:forecaster=lstm+discord") == "lstm+discord"
    for bad in ("b:forecaster=arima", "b:forecaster=lstm,forecaster=persistence"):
        with pytest.raises(SystemExit, match="forecaster"):
            devset.variant_forecaster(bad)
    from detector.baselines import PersistenceForecaster
    from detector.bench.synthetic import synthetic_checkpoint

    ckpt = synthetic_checkpoint(3, hidden=8, timesteps=5)
    assert devset._forecaster("lstm", ckpt) is None  # the checkpoint's own model
    model = devset._forecaster("persistence", ckpt)
    assert isinstance(model, PersistenceForecaster) and model.args.n_inputs == 3


def test_either_score_is_the_stronger_evidence_at_twice_its_p(devset) -> None:
    from detector.scoring import surprise_log10

    a = surprise_log10(np.array([0.0, -6.0, -2.0, -0.1, -40.0]))  # log10 p of detector a
    b = surprise_log10(np.array([0.0, -3.0, -8.0, -0.2, -1.0]))
    want = surprise_log10(np.array([0.0, -6.0, -8.0, 0.0, -40.0]) + np.log10(2.0))
    np.testing.assert_allclose(devset.either_score(a, b), np.minimum(want, 1.0), atol=1e-12)
    assert devset.either_score(a, b)[3] == 0.0  # weaker than a coin flip's two tries: neutral


def test_ensemble_combines_both_detectors_and_starts_from_the_training_rows(devset) -> None:
    from detector.alerts import replay
    from detector.baselines import PersistenceForecaster
    from detector.engine import EngineConfig
    from detector.evaluation import score_streams
    from detector.series import Series
    from detector.training import TrainConfig, train

    rng = np.random.default_rng(5)
    t = np.arange(900) * 60.0
    values = np.sin(t / 3000.0)[:, None] + 0.05 * rng.standard_normal((900, 1))
    values[[395, 700]] += 3.0  # spikes both detectors see, one in the training rows
    whole = Series("s", t, values, ("value",))
    fit, rest = (Series("s", t[a:b], values[a:b], ("value",)) for a, b in ((0, 400), (400, 900)))
    cfg = TrainConfig(epochs=2, hidden=8, timesteps=8, batch_size=64, seed=0)
    ckpt = train([fit], cfg).to_checkpoint()
    engine = EngineConfig(device="cpu")
    (got,) = devset.ensemble_streams(ckpt, [rest], engine, [fit])
    persistence = PersistenceForecaster(1, 1)
    lstm_whole = score_streams(ckpt, [whole], engine)[0].score
    pers_whole = score_streams(ckpt, [whole], engine, model=persistence)[0].score
    both = devset.either_score(lstm_whole, pers_whole)
    # the same as scoring the whole stream: the training rows' state carries over
    np.testing.assert_allclose(got.score, both[400:], atol=1e-9)
    flag, onset = replay(both, engine.alerts)
    assert (got.flag == flag[400:]).all() and np.allclose(got.onset, onset[400:])
    assert got.flag[300] and got.onset[300] > 0.5  # the spike, row 700 of the whole stream
    # the training rows' spike opened an episode that is still going: no onset at the start
    assert got.onset[0] == 0.0 and got.score[0] > 0.0


def test_lstm_with_the_discord_pairs_the_engine_with_the_discord_from_the_training_rows(
    devset,
) -> None:
    from detector.alerts import replay
    from detector.engine import EngineConfig
    from detector.evaluation import discord_score, score_streams
    from detector.series import Series
    from detector.training import TrainConfig, train

    rng = np.random.default_rng(6)
    t = np.arange(1200) * 60.0
    values = np.sin(2 * np.pi * np.arange(1200) / 50.0)[:, None]
    values += 0.02 * rng.standard_normal((1200, 1))
    values[900:950] = 0.0  # a missing cycle: flat at its mean, inside the range
    whole = Series("s", t, values, ("value",))
    fit, rest = (Series("s", t[a:b], values[a:b], ("value",)) for a, b in ((0, 600), (600, 1200)))
    ckpt = train([fit], TrainConfig(epochs=2, hidden=8, timesteps=8, seed=0)).to_checkpoint()
    engine = EngineConfig(device="cpu")
    (got,) = devset.ensemble_streams(ckpt, [rest], engine, [fit], partner="discord")
    shape = discord_score(ckpt, "s", values, trained_rows=600)
    both = devset.either_score(score_streams(ckpt, [whole], engine)[0].score, shape)
    np.testing.assert_allclose(got.score, both[600:], atol=1e-9)
    flag, onset = replay(both, engine.alerts)
    assert (got.flag == flag[600:]).all() and np.allclose(got.onset, onset[600:])
    # the discord is scaled by the training rows, not by the test rows it scores
    assert not np.allclose(shape, discord_score(ckpt, "s", values, fit_rows=1200))
    # the flat cycle is new to the discord: the pair reads at least its evidence there
    assert got.score[300:380].max() >= shape[900:980].max() - np.log10(2.0) / 10.0 - 1e-12
    assert shape[900:980].max() > shape[600:880].max()
    with pytest.raises(ValueError, match="partner"):
        devset.ensemble_streams(ckpt, [rest], engine, [fit], partner="zscore")


def test_regimes_group_holds_two_long_faults_per_stream(devset, tmp_path) -> None:
    devset.generate(tmp_path, seed=0)
    test = read_dataset(tmp_path / "regimes" / "test")
    assert len(test) == 6 and test[0].values.shape[1] == 4
    for s in test:
        spans = devset.events(s.labels)
        assert len(spans) == devset.REGIME_ANOMALIES
        shortest = min(lo for lo, _ in devset.REGIME_DURATIONS.values())
        assert all(b - a >= shortest for a, b in spans), spans


def test_nab_windows_are_nab_shaped(devset) -> None:
    from detector.series import Series

    labels = np.zeros(1000, np.uint8)
    labels[[100, 101, 700]] = 1  # two events: rows 100-101 and row 700
    s = Series("s", 60.0 * np.arange(1000), np.zeros((1000, 1)), ("v",), labels)
    # 10% of the rows shared by two events: 50 rows each, centred on each event's first row
    assert devset.nab_windows(s) == [(60.0 * 75, 60.0 * 124), (60.0 * 675, 60.0 * 724)]
    labels[:] = 0
    labels[2] = 1  # near the start: clipped to the stream, width kept
    assert devset.nab_windows(s) == [(0.0, 60.0 * 99)]
    assert devset.nab_windows(dataclasses.replace(s, labels=np.zeros(1000, np.uint8))) == []


def test_dev_score_weighs_the_three_checks_equally(devset) -> None:
    row = {"event_f1": 0.6, "point_f1": 0.3, "nabw_standard": 60.0}
    assert devset.dev_score(row) == pytest.approx(0.5)


def test_real_background_groups_use_training_rows_only(devset, datasets, tmp_path) -> None:
    from detector.csvio import read_series
    from detector.nab_scoring import probation_length

    devset.generate(tmp_path, seed=0, datasets=datasets)
    free = read_dataset(tmp_path / "skab_free" / "test")
    assert len(free) == 3 and free[0].values.shape[1] == 8
    assert all(len(devset.events(s.labels)) == 3 for s in free)
    nab_train = read_dataset(tmp_path / "nab_probation" / "train")
    nab_test = read_dataset(tmp_path / "nab_probation" / "test")
    files = sorted((datasets / "nab" / "data").glob("*/*.csv"))
    assert len(nab_test) == len(files) == 58
    for f, fit, test in zip(files, nab_train, nab_test, strict=True):
        raw = read_series(f, "nab")
        rows = int(probation_length(len(raw)))
        # train + test are exactly the probationary rows, which NAB never scores
        assert len(fit) + len(test) == rows and not fit.labels.any()
        assert test.timestamps[-1] == raw.timestamps[rows - 1]
        np.testing.assert_allclose(fit.values[:, 0], raw.values[: len(fit), 0], rtol=1e-6)
        assert len(devset.events(test.labels)) == 1


def test_recall_by_kind_counts_an_anomaly_once_any_of_its_rows_is_flagged(devset) -> None:
    flags = {"a": np.array([0, 0, 1, 0, 0, 0], bool), "b": np.zeros(6, bool)}
    anomalies = [
        {"stream": "a", "kind": "spike", "start_index": 2, "end_index": 3},
        {"stream": "a", "kind": "stuck", "start_index": 3, "end_index": 6},  # after the flag
        {"stream": "b", "kind": "spike", "start_index": 0, "end_index": 2},
    ]
    assert devset.recall_by_kind(anomalies, flags) == {"spike": [1, 2], "stuck": [0, 1]}
    flags["a"][5] = True  # the last row is inside [start_index, end_index)
    assert devset.recall_by_kind(anomalies, flags)["stuck"] == [1, 1]


def test_bursty_group_has_routine_bursts_in_training_and_long_test_parts(devset, tmp_path) -> None:
    bursts = devset._bursts(np.random.default_rng(0), 20_000, 2.0)
    starts = np.flatnonzero(np.diff(bursts, prepend=0.0) > 0.5)  # a burst adds >= 0.25 sigma
    assert bursts.min() >= 0.0 and 20_000 / 400 * 0.5 < len(starts) < 20_000 / 150 * 1.5
    assert np.median(bursts[starts]) > 2.0 * 2.0  # heights in sigmas: a median of about 4
    devset.generate(tmp_path, seed=0)
    train = read_dataset(tmp_path / "bursty" / "train")
    test = read_dataset(tmp_path / "bursty" / "test")
    assert len(train) == len(test) == 8
    for fit, s in zip(train, test, strict=True):
        assert len(s) == devset.BURSTY_TEST_ROWS and len(devset.events(s.labels)) == 3
        x = fit.values[:, 0]
        # the training part, labelled normal, holds excursions far above its local spread
        local = np.array([np.median(x[max(i - 12, 0) : i + 13]) for i in range(len(x))])
        sd = 1.4826 * np.median(np.abs(x - local))
        assert not fit.labels.any() and (x - local).max() > 6 * sd


def _one_range_streams(n: int, missed: int) -> tuple[list, list, list]:
    """``n`` streams with one labelled range each; ``before`` flags every range and nothing
    else, ``after`` misses the ranges of the first ``missed`` streams."""
    labels, before, after = [], [], []
    for k in range(n):
        y = np.zeros(100, bool)
        y[40:50] = True
        labels.append(y)
        before.append(y.copy())
        after.append(y.copy() if k >= missed else np.zeros(100, bool))
    return labels, before, after


def test_paired_interval_is_a_bootstrap_over_streams_of_the_pooled_event_f1(devset) -> None:
    labels, before, after = _one_range_streams(20, missed=2)
    assert devset.paired_interval(labels, before, before) == (0.0, 0.0, 0.0)
    d, lo, hi = devset.paired_interval(labels, before, after)
    assert d == pytest.approx(2 * 0.9 / 1.9 - 1.0)  # recall 18/20, precision 1
    assert lo < d <= hi <= 0.0  # missing ranges can only cost
    assert devset.paired_interval(labels, before, after) == (d, lo, hi)  # fixed seed
    # Four times the streams, the same share missed: the same difference, a narrower interval.
    labels4, before4, after4 = _one_range_streams(80, missed=8)
    d4, lo4, hi4 = devset.paired_interval(labels4, before4, after4)
    assert d4 == pytest.approx(d)
    assert hi4 - lo4 < 0.7 * (hi - lo)


def test_shapes_group_changes_the_pattern_not_its_range(devset, tmp_path) -> None:
    """Stage 25's diagnostic group: one-cycle anomalies of shape, inside the usual range, in
    the test parts only; written by `generate`, outside `compare`'s default groups."""
    devset.generate(tmp_path, seed=0)
    assert devset.SHAPE_GROUP not in devset.GROUPS + devset.REAL_GROUPS
    train = read_dataset(tmp_path / "shapes" / "train")
    test = read_dataset(tmp_path / "shapes" / "test")
    listed = json.loads((tmp_path / "shapes" / "anomalies.json").read_text())["anomalies"]
    assert len(train) == len(test) == 8 and len(listed) == 3 * 8
    assert {a["kind"] for a in listed} == set(devset.SHAPE_KINDS)
    for fit, s in zip(train, test, strict=True):
        assert not fit.labels.any() and len(devset.events(s.labels)) == 3  # apart, not merged
        lo, hi = np.percentile(fit.values[:, 0], [0.5, 99.5])
        for a in (a for a in listed if a["stream"] == s.name):
            inside = s.values[a["start_index"] : a["end_index"], 0]
            assert s.labels[a["start_index"] : a["end_index"]].all()
            assert np.median(inside) > lo and np.median(inside) < hi  # not a change of level
            assert (inside > hi + 0.5 * (hi - lo)).mean() < 0.01  # nor of size


def test_each_shape_kind_changes_a_cycle(devset) -> None:
    period = 96
    profile = devset._cycle(np.random.default_rng(1), period)
    t = np.arange(period, 2 * period, dtype=float)
    normal = profile(t)
    for kind in devset.SHAPE_KINDS:
        changed = devset._reshape(profile, kind, t, period)
        assert changed.shape == normal.shape and np.abs(changed - normal).mean() > 0.1, kind
        assert changed.min() >= normal.min() - 0.5 and changed.max() <= normal.max() + 0.5, kind
