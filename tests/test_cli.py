import json
import subprocess
import sys
from pathlib import Path

import pytest

from detector.cli import main
from simulators import SENSOR_KINDS

COMMANDS = ("demo", "simulate", "train", "score", "nab-score", "inspect")


def test_help_lists_every_subcommand_with_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(command + " "))
        assert len(line.split(None, 1)) == 2, f"{command} has no help text"


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    argv = [
        "simulate",
        "sensors",
        "--streams",
        "3",
        "--features",
        "2",
        "--covariates",
        "1",
        "--length",
        "400",
        "--seed",
        "3",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    return out


@pytest.fixture(scope="module")
def trained(simulated: Path, tmp_path_factory) -> Path:
    """A small model trained through the CLI on the simulated fleet (setpoint as covariate)."""
    model = tmp_path_factory.mktemp("train") / "m.pt"
    argv = [
        "train",
        "--data",
        str(simulated),
        "--covariates",
        "setpoint_0",
        "--out",
        str(model),
        "--epochs",
        "2",
        "--timesteps",
        "8",
        "--hidden",
        "8",
        "--quiet",
    ]
    assert main(argv) == 0
    return model


def test_train_writes_checkpoint_metrics_and_plots(trained: Path) -> None:
    model = trained
    report = model.with_name("m-report")
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["validation"]["model"]["mae"] > 0
    assert set(metrics["validation"]["per_target"]) == {"temperature", "pressure"}
    for png in ("loss.png", "forecast.png"):
        assert (report / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["inspect", str(model), "--json"]) == 0


@pytest.mark.slow
def test_skab_anomaly_free_trains_through_the_same_reader(datasets: Path, tmp_path: Path) -> None:
    data = datasets / "skab" / "data" / "anomaly-free" / "anomaly-free.csv"
    argv = [
        "train",
        "--data",
        str(data),
        "--preset",
        "skab",
        "--out",
        str(tmp_path / "s.pt"),
        "--epochs",
        "1",
        "--timesteps",
        "8",
        "--hidden",
        "8",
        "--quiet",
    ]
    assert main(argv) == 0
    metrics = json.loads((tmp_path / "s-report" / "metrics.json").read_text())
    assert "Accelerometer1RMS" in metrics["validation"]["per_target"]


def _detector(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "detector.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_corrupted_checkpoint_is_a_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 this zip ends early")
    proc = _detector("inspect", str(bad))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert (
        len(lines) == 1 and lines[0].startswith("detector inspect: error:") and str(bad) in lines[0]
    )


def test_bad_data_path_is_a_one_line_error(tmp_path: Path) -> None:
    proc = _detector("train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "m.pt"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no such file or directory" in proc.stderr


@pytest.mark.slow
def test_offline_demo_runs_end_to_end_and_reports(tmp_path: Path) -> None:
    argv = [
        "demo",
        "--offline",
        "--out",
        str(tmp_path),
        "--streams",
        "3",
        "--length",
        "900",
        "--epochs",
        "2",
        "--device",
        "cpu",
    ]
    assert main(argv) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    detection = summary["detection"]
    assert detection["event"]["recall"] is not None and 0 <= detection["event"]["recall"] <= 1
    assert detection["recall_by_kind"] and set(detection["recall_by_kind"]) <= set(SENSOR_KINDS)
    for name in ("model.pt", "loss.png", "forecast.png", "data/manifest.json"):
        assert (tmp_path / name).is_file(), name
    assert list((tmp_path / "plots").glob("*.png"))


def test_score_writes_one_row_per_reading_and_alerts(
    simulated: Path, trained: Path, tmp_path: Path
) -> None:
    model = trained
    out = tmp_path / "scores.csv"
    assert (
        main(
            [
                "score",
                "--model",
                str(model),
                "--input",
                str(simulated),
                "--output",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    rows = out.read_text().splitlines()
    header = rows[0].split(",")
    assert header[:8] == [
        "stream",
        "timestamp",
        "status",
        "error",
        "score",
        "alert",
        "alert_id",
        "top_features",
    ]
    assert len(rows) == 1 + 3 * 400
    alerts = json.loads((tmp_path / "scores-alerts.json").read_text())
    flagged = {r.split(",")[6] for r in rows[1:] if r.split(",")[5] == "1"}
    assert flagged == {a["id"] for a in alerts}


def test_engine_flags_reach_the_alert_rule_and_the_scorer() -> None:
    import argparse

    from detector.alerts import AlertConfig
    from detector.cli_score import engine_args, engine_config
    from detector.errors import ConfigError

    p = argparse.ArgumentParser()
    engine_args(p)
    assert engine_config(p.parse_args([])).alerts == AlertConfig()
    alerts = engine_config(p.parse_args(["--lone-cap", "--min-duration", "2"])).alerts
    assert alerts.lone_cap and alerts.min_duration == 2
    assert not engine_config(p.parse_args(["--no-lone-cap"])).alerts.lone_cap
    scorer = engine_config(p.parse_args(["--sustained-beyond", "0.25"])).scorer
    assert scorer.sustained_beyond == 0.25
    scorer = engine_config(p.parse_args(["--residual-beyond", "0.5"])).scorer
    assert scorer.residual_beyond == 0.5 and scorer.sustained_beyond == 1.0
    # Settings the engine refuses are one clear error, not a traceback.
    with pytest.raises(ConfigError, match="sustained_beyond must be in 0..1, got 1.5"):
        engine_config(p.parse_args(["--sustained-beyond", "1.5"]))
    with pytest.raises(ConfigError, match="residual_beyond must be in 0..1, got -0.1"):
        engine_config(p.parse_args(["--residual-beyond", "-0.1"]))
    with pytest.raises(ConfigError, match=r"need 0 <= close_at \(0.9\) <= open_at \(0.5\)"):
        engine_config(p.parse_args(["--close-at", "0.9"]))
    assert engine_config(p.parse_args(["--score-threads", "3"])).score_threads == 3
    with pytest.raises(ConfigError, match="--score-threads must be >= 0"):
        engine_config(p.parse_args(["--score-threads", "-2"]))
