import json
from pathlib import Path

import numpy as np
import pytest

from detector.cli import main
from detector.csvio import read_dataset
from detector.evaluation import EvalSpec, metrics_for, run_nab
from detector.training import TrainConfig
from simulators import SensorFleetConfig, simulate_sensors

FAST = TrainConfig(timesteps=12, hidden=16, epochs=3, batch_size=64, device="cpu")


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("eval")
    cfg = SensorFleetConfig(
        streams=3,
        features=2,
        covariates=1,
        length=900,
        seed=5,
        anomaly_kinds=("spike", "level_shift"),
    )
    simulate_sensors(cfg).write(root / "test")
    train_cfg = SensorFleetConfig(
        streams=3, features=2, covariates=1, length=900, seed=5, anomalies_per_stream=0
    )
    simulate_sensors(train_cfg).write(root / "train")
    return root / "train", root / "test"


@pytest.mark.slow
def test_evaluate_split_reports_ours_and_baselines(split, tmp_path) -> None:
    train, test = split
    argv = [
        "evaluate",
        "--train",
        str(train),
        "--test",
        str(test),
        "--covariates",
        "setpoint_0",
        "--epochs",
        "3",
        "--device",
        "cpu",
        "--report",
        str(tmp_path),
    ]
    assert main(argv) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["detectors"]) == {
        "lstm",
        "persistence",
        "rolling_zscore",
        "telemanom",
        "discord",
    }
    lstm = report["detectors"]["lstm"]
    assert lstm["event"]["recall"] is not None and 0 <= lstm["event"]["recall"] <= 1
    assert "random_baseline_f1" in lstm["point_adjusted"]
    nab = lstm["nab_at_optimal_threshold"]["profiles"]["standard"]
    assert nab["windows"] == 6 and -100 <= nab["normalised"] <= 100
    by_file = lstm["nab_at_optimal_threshold"]["by_file"]
    assert len(by_file) == report["streams"]
    assert sum(f["raw"] for f in by_file) == pytest.approx(nab["raw"])
    assert report["settings"]["train"]["covariates"] == ["setpoint_0"]
    assert report["settings"]["warm"] is True  # the default (--no-warm: cold)
    assert list((tmp_path / "plots").glob("*.png"))


@pytest.mark.slow
def test_evaluate_names_the_indicator_columns_it_reads_as_inputs(split, tmp_path, capsys) -> None:
    """Default flags: a column with two values in training is a covariate, and the run says so."""
    for part in ("train", "test"):
        for src in split[0 if part == "train" else 1].glob("*.csv"):
            lines = src.read_text().splitlines()
            out = tmp_path / part / src.name
            out.parent.mkdir(exist_ok=True)
            flagged = [lines[0] + ",mode"] + [
                f"{x},{k // 100 % 2}" for k, x in enumerate(lines[1:])
            ]
            out.write_text("\n".join(flagged) + "\n")
    argv = ["evaluate", "--train", str(tmp_path / "train"), "--test", str(tmp_path / "test")]
    argv += ["--epochs", "1", "--device", "cpu", "--report", str(tmp_path / "report")]
    assert main(argv) == 0
    assert "1 indicator column(s)" in capsys.readouterr().out


def test_nab_protocol_trains_on_probation_only(datasets: Path) -> None:
    series = read_dataset(datasets / "nab" / "data" / "artificialWithAnomaly", preset="nab")[:1]
    s = series[0]
    poisoned = s.values.copy()
    poisoned[1000:] = 1e9  # after probation: must not influence training or scaling
    from dataclasses import replace

    spec = EvalSpec(train=FAST)
    clean = run_nab([s], spec)["lstm"][0].score
    dirty = run_nab([replace(s, values=poisoned)], spec)["lstm"][0].score
    probation = int(min(np.floor(0.15 * len(s)), 750))
    np.testing.assert_allclose(clean[:probation], dirty[:probation])


def test_metrics_for_uses_labels_only_to_measure(datasets: Path) -> None:
    from detector.evaluation import StreamScores

    s = read_dataset(datasets / "nab" / "data" / "artificialWithAnomaly", preset="nab")[0]
    perfect = StreamScores(s.labels.astype(float), s.labels.astype(bool))
    m = metrics_for([s], [perfect])
    assert m["event"]["f1"] == 1.0 and m["point"]["f1"] == 1.0


def test_indicator_note_names_at_most_eight_columns() -> None:
    from detector.cli_train import indicator_note

    assert indicator_note({"training": {"indicator_inputs": []}}) is None
    assert indicator_note({}) is None
    note = indicator_note({"training": {"indicator_inputs": [f"c{k}" for k in range(10)]}})
    assert note.startswith("10 indicator column(s)") and "c7 and 2 more" in note
    assert "c8" not in note and "constant" not in note
    note = indicator_note({"training": {"constant_columns_ignored": ["on"]}})
    assert note.startswith("1 constant column(s)") and note.count("on") >= 1


def _rows(s, lo: int, hi: int):
    from dataclasses import replace

    labels = None if s.labels is None else s.labels[lo:hi]
    return replace(s, timestamps=s.timestamps[lo:hi], values=s.values[lo:hi], labels=labels)


def test_continued_pairs_a_test_stream_with_the_training_stream_it_follows() -> None:
    from dataclasses import replace

    from detector.evaluation import continued

    sim = simulate_sensors(SensorFleetConfig(streams=2, features=1, length=100, seed=1))
    a, b = sim.series
    # a's head continues into a's tail; b's head overlaps b (SKAB's fitting rows); a stranger
    stranger = replace(_rows(a, 0, 10), name="other")
    before = [_rows(a, 0, 40), _rows(b, 0, 60), stranger]
    after = [_rows(a, 40, 100), _rows(b, 0, 100)]
    assert [s.name for s in continued(before, after)] == [a.name]
    assert continued([], after) == [] and continued(before, []) == []


def test_a_continued_stream_scores_as_if_read_whole() -> None:
    from detector.engine import EngineConfig
    from detector.evaluation import score_streams
    from detector.training import train

    sim = simulate_sensors(SensorFleetConfig(streams=2, features=2, length=500, seed=3))
    fit = [_rows(s, 0, 250) for s in sim.series]
    rest = [_rows(s, 250, 500) for s in sim.series]
    ckpt = train(fit, FAST).to_checkpoint()
    engine = EngineConfig(device="cpu")
    whole = score_streams(ckpt, sim.series, engine)
    warm = score_streams(ckpt, rest, engine, warm=fit)
    cold = score_streams(ckpt, rest, engine)
    for w, c, a in zip(warm, cold, whole, strict=True):
        # the scorer, the model and the alerts go on from where the training rows left them
        np.testing.assert_allclose(w.score, a.score[250:], atol=1e-9)
        np.testing.assert_allclose(w.onset, a.onset[250:], atol=1e-9)
        assert (w.flag == a.flag[250:]).all()
        # a cold start spends its first readings filling the window: neutral scores
        assert (c.score[: FAST.timesteps] == 0).all() and (w.score[: FAST.timesteps] > 0).any()


@pytest.mark.parametrize(("flag", "warm"), [([], True), (["--warm"], True), (["--no-warm"], False)])
def test_evaluate_is_warm_unless_told_otherwise(flag: list[str], warm: bool) -> None:
    from detector.cli import build_parser
    from detector.cli_evaluate import _spec

    args = build_parser().parse_args(["evaluate", "--train", "a", "--test", "b", *flag])
    assert _spec(args).warm is warm


def _fleets(length: int = 800) -> tuple[list, list]:
    """Two fleets whose streams differ in their columns (2 and 3 features), interleaved: the
    heads of every stream to train on (unlabelled), the tails to score."""
    from dataclasses import replace

    a = simulate_sensors(SensorFleetConfig(streams=2, features=2, length=length, seed=11)).series
    b = simulate_sensors(SensorFleetConfig(streams=1, features=3, length=length, seed=12)).series
    b = [replace(s, name=f"b-{s.name}") for s in b]
    mixed = [a[0], b[0], a[1]]
    half = length // 2
    fit = [replace(_rows(s, 0, half), labels=None) for s in mixed]
    return fit, [_rows(s, half, length) for s in mixed]


def test_column_sets_group_streams_and_name_a_test_stream_no_model_can_read() -> None:
    from dataclasses import replace

    from detector.errors import DataError
    from detector.evaluation import column_sets

    fit, test = _fleets(60)
    sets = column_sets(fit, test)
    assert [[s.name for s in f] for f, _ in sets] == [
        ["sensor-0000", "sensor-0001"],
        ["b-sensor-0000"],
    ]
    assert [index for _, index in sets] == [[0, 2], [1]]
    # the same columns in another order are the same set
    swapped = replace(test[0], columns=test[0].columns[::-1], values=test[0].values[:, ::-1])
    assert [index for _, index in column_sets(fit, [swapped])] == [[0], []]

    # an extra column (a second label, say) is left unread: the largest set it has
    def with_changepoint(s):
        flag = np.zeros((len(s), 1))
        return replace(s, columns=(*s.columns, "changepoint"), values=np.hstack([s.values, flag]))

    extra, wide = with_changepoint(test[0]), with_changepoint(test[1])
    assert [index for _, index in column_sets(fit, [extra, wide])] == [[0], [1]]
    stray = replace(test[1], name="stray", columns=("temperature", "humidity", "vibration"))
    with pytest.raises(DataError, match=r"'stray' \(3 columns\) lack some column of every"):
        column_sets(fit, [test[0], stray])


@pytest.mark.slow
def test_streams_of_different_columns_each_get_the_model_of_their_own_set() -> None:
    from detector.evaluation import run_split, run_split_by_columns

    fit, test = _fleets()
    spec = EvalSpec(train=FAST)
    told = []
    runs, ckpts = run_split_by_columns(
        fit, test, spec, on_model=lambda k, n, streams: told.append((k, n, len(streams)))
    )
    assert told == [(0, 2, 2), (1, 2, 1)]
    assert [len(c.targets) for c in ckpts] == [2, 3, 2]
    assert ckpts[0] is ckpts[2] and ckpts[1] is not ckpts[0]
    # each set scores exactly as a run of its own would, and the output keeps test's order
    alone_a, _ = run_split([fit[0], fit[2]], [test[0], test[2]], spec)
    alone_b, _ = run_split([fit[1]], [test[1]], spec)
    for det in ("lstm", "persistence", "rolling_zscore", "telemanom", "discord"):
        ours = runs[det]
        for mine, theirs in zip(
            ours, [alone_a[det][0], alone_b[det][0], alone_a[det][1]], strict=True
        ):
            np.testing.assert_allclose(mine.score, theirs.score, atol=1e-12)
            assert (mine.flag == theirs.flag).all()


def test_named_columns_keep_one_model_for_every_stream() -> None:
    """Named targets say which columns every stream must have: one model, as before, and a
    stream without them is the one-line error it always was."""
    import dataclasses

    from detector.errors import DataError
    from detector.evaluation import run_split_by_columns

    fit, test = _fleets(300)
    spec = EvalSpec(train=dataclasses.replace(FAST, epochs=1, targets=("temperature",)))
    runs, ckpts = run_split_by_columns(fit, test, spec)
    assert len({id(c) for c in ckpts}) == 1 and ckpts[0].targets == ("temperature",)
    assert len(runs["lstm"]) == len(test)
    spec = EvalSpec(train=dataclasses.replace(FAST, epochs=1, targets=("vibration",)))
    with pytest.raises(DataError, match="has no column"):
        run_split_by_columns(fit, test, spec)


@pytest.mark.slow
def test_evaluate_trains_a_model_per_set_of_columns_and_says_so(tmp_path, capsys) -> None:
    from dataclasses import replace

    from detector.csvio import write_series

    fit, test = _fleets()
    for part, streams in (("train", fit), ("test", test)):
        for s in streams:
            write_series(s, tmp_path / part / f"{s.name}.csv")
    argv = ["evaluate", "--train", str(tmp_path / "train"), "--test", str(tmp_path / "test")]
    argv += ["--epochs", "2", "--device", "cpu", "--report", str(tmp_path / "report")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "model 1 of 2" in out and "model 2 of 2" in out and "b-sensor-0000" in out
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["streams"] == 3
    # a test stream no training stream shares columns with: one line, nothing half-written
    write_series(
        replace(test[1], name="stray", columns=("temperature", "humidity", "x")),
        tmp_path / "test" / "stray.csv",
    )
    argv[-1] = str(tmp_path / "second")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'stray'" in err and "lack some column of every" in err
    assert not (tmp_path / "second").exists()


def test_evaluate_refuses_unlabelled_test_streams_before_training(split, tmp_path, capsys) -> None:
    """A test stream without its label column cannot be measured: one line that names it,
    before any training time is spent, and no report."""
    train, test = split
    for src in test.glob("*.csv"):
        lines = src.read_text().splitlines()
        if src.stem.endswith("0"):  # this one loses its label column
            header = lines[0].split(",")
            keep = [i for i, h in enumerate(header) if h != "label"]
            lines = [",".join(row.split(",")[i] for i in keep) for row in lines]
        (tmp_path / "test").mkdir(exist_ok=True)
        (tmp_path / "test" / src.name).write_text("\n".join(lines) + "\n")
    argv = ["evaluate", "--train", str(train), "--test", str(tmp_path / "test")]
    argv += ["--device", "cpu", "--report", str(tmp_path / "report")]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "'sensor-0000' have no 'label' column" in err
    assert "epoch" not in out and not (tmp_path / "report").exists()
