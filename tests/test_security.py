"""Security basics: secrets stay out of logs and reprs, the documented SASL/SSL settings are real
client options, the metrics endpoint binds where configured, images run as non-root, and bad
settings stop ``detector run`` at start naming the key."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient
from prometheus_client import CollectorRegistry

from detector.checkpoint import Checkpoint, save_checkpoint
from detector.cli import main
from detector.config import load_config
from detector.metrics import serve
from detector.model import LSTMForecaster, ModelArgs
from detector.scaling import Scaler

ROOT = Path(__file__).resolve().parents[1]
SECRET = "hunter2-Do-Not-Log-Me"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    model = LSTMForecaster(ModelArgs(n_inputs=2, n_targets=2, hidden=4))
    scaler = Scaler("standard", np.zeros(2), np.ones(2))
    ckpt = Checkpoint(model, ("a", "b"), (), "global", {}, scaler, {"timesteps": 3}, {}, {})
    return save_checkpoint(tmp_path_factory.mktemp("m") / "m.pt", ckpt)


# --- secrets ------------------------------------------------------------------------------------


def test_secret_options_are_absent_from_repr_and_redacted_settings(model_path: Path) -> None:
    cfg = load_config(
        None,
        env={"DETECTOR_KAFKA_CLIENT_OPTIONS_SASL_PLAIN_PASSWORD": SECRET},
        overrides=[f"model.path={model_path}", f"kafka.client_options.ssl_password={SECRET}x"],
    )
    assert dict(cfg.kafka.client_options)["sasl_plain_password"] == SECRET  # reaches the client
    for text in (repr(cfg), str(cfg.kafka), str(cfg.redacted())):
        assert SECRET not in text


def test_config_errors_do_not_echo_secret_values(model_path: Path) -> None:
    with pytest.raises(ValueError) as info:
        load_config(
            None,
            env={"DETECTOR_KAFKA_CLIENT_OPTIONS_SASL_PLAIN_PASSWORD": SECRET},
            overrides=[f"model.path={model_path}", "kafka.group_id=", f"kafka.nope={SECRET}"],
        )
    assert "kafka.group_id" in str(info.value) and SECRET not in str(info.value)


@pytest.mark.slow
def test_detector_run_never_logs_the_sasl_password(model_path: Path, tmp_path: Path) -> None:
    """The real CLI at DEBUG level, kafka-python's own logging included, until it gives up on an
    unreachable SASL broker: the password must appear nowhere, the redacted settings must."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "kafka": {
                    "bootstrap_servers": "127.0.0.1:9",  # discard port: refused at once
                    "client_options": {
                        "security_protocol": "SASL_PLAINTEXT",
                        "sasl_mechanism": "PLAIN",
                        "sasl_plain_username": "detector",
                    },
                },
                "model": {"path": str(model_path), "device": "cpu"},
                "metrics": {"port": 0},
            }
        )
    )
    env = {**os.environ, "DETECTOR_KAFKA_CLIENT_OPTIONS_SASL_PLAIN_PASSWORD": SECRET}
    cmd = [sys.executable, "-m", "detector.cli", "-v", "run", "--config", str(cfg)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=12)
        out = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:  # still retrying the broker: enough has been logged
        out = (exc.stdout or b"").decode() + (exc.stderr or b"").decode()
    assert "'sasl_plain_password': '***'" in out, out[-2000:]
    assert "kafka" in out and SECRET not in out


# --- SASL / SSL documentation -------------------------------------------------------------------


def _commented_client_options() -> dict:
    """The commented-out client options in deploy/detector.yaml, as YAML."""
    lines = (ROOT / "deploy" / "detector.yaml").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "client_options: {}")
    block = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        if m := re.match(r"\s*#\s{3}(\w+):\s*(\S+)", line):
            block.append((m.group(1), yaml.safe_load(m.group(2))))
    return dict(block)


def test_documented_sasl_ssl_options_are_real_client_options(model_path: Path) -> None:
    options = _commented_client_options()
    assert {"security_protocol", "sasl_mechanism", "ssl_cafile", "ssl_certfile"} <= set(options)
    for client in (KafkaConsumer, KafkaProducer, KafkaAdminClient):
        assert set(options) <= set(client.DEFAULT_CONFIG), client.__name__
    cfg = load_config(None, env={}, overrides=[f"model.path={model_path}"])
    assert cfg.kafka.client_options == ()
    docs = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    for word in ("SASL_SSL", "ssl_cafile", "DETECTOR_KAFKA_CLIENT_OPTIONS_SASL_PLAIN_PASSWORD"):
        assert word in docs


# --- metrics endpoint ---------------------------------------------------------------------------


def _refused(address: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex((address, port)) != 0


def test_metrics_bind_where_configured() -> None:
    server = serve(CollectorRegistry(), "127.0.0.2", 0)  # a loopback address other than the usual
    try:
        assert server.httpd.socket.getsockname()[0] == "127.0.0.2"
        url = f"http://127.0.0.2:{server.port}/healthz"
        assert urllib.request.urlopen(url, timeout=5).status == 200
        assert _refused("127.0.0.1", server.port)
    finally:
        server.shutdown()


def test_metrics_default_to_loopback(model_path: Path) -> None:
    cfg = load_config(None, env={}, overrides=[f"model.path={model_path}"])
    assert cfg.metrics.address == "127.0.0.1"
    server = serve(CollectorRegistry(), cfg.metrics.address, 0)
    try:
        assert server.httpd.socket.getsockname()[0] == "127.0.0.1"
    finally:
        server.shutdown()


# --- images -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", sorted((ROOT / "deploy").glob("Dockerfile*")), ids=str)
def test_images_run_as_a_numeric_non_root_user(dockerfile: Path) -> None:
    lines = [
        line.strip()
        for line in dockerfile.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    stages = [i for i, line in enumerate(lines) if line.upper().startswith("FROM ")]
    final = lines[stages[-1] :]  # only the last stage is the image
    users = [
        line.split(None, 1)[1].split(":")[0] for line in final if line.upper().startswith("USER ")
    ]
    assert users, f"{dockerfile.name}: no USER, the image would run as root"
    # Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
    assert users[-1].isdigit() and int(users[-1]) != 0, users[-1]


# --- invalid settings stop the worker at start --------------------------------------------------


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        ("kafka:\n  format: avro\n", "kafka.format"),
        ("metrics:\n  port: 70000\n", "metrics.port"),
        ("engine:\n  scorer:\n    kind: magic\n", "engine.scorer.kind"),
        ("kafka:\n  max_poll_records: 5000\nengine:\n  max_streams: 10\n", "engine.max_streams"),
        ("worker:\n  checkpoint_intervall_s: 3\n", "worker.checkpoint_intervall_s"),
        ("kafka: [1, 2]\n", "kafka"),
    ],
)
def test_detector_run_with_bad_settings_exits_naming_the_key(
    yaml_text: str, key: str, model_path: Path, tmp_path: Path, capsys
) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml_text + f"model:\n  path: {model_path}\n")
    assert main(["run", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("detector run: error: invalid configuration") and key in err


def test_detector_run_with_a_bad_checkpoint_exits_before_connecting(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "m.pt"
    bad.write_bytes(b"not a checkpoint at all")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model:\n  path: {bad}\nkafka:\n  bootstrap_servers: 127.0.0.1:9\n")
    assert main(["run", "--config", str(cfg)]) == 2
    assert str(bad) in capsys.readouterr().err
