import dataclasses
from pathlib import Path

import pytest

from detector.config import (
    _CHECKS,
    KafkaConfig,
    LoopConfig,
    MetricsConfig,
    ModelConfig,
    WorkerConfig,
    _env_names,
    is_secret,
    load_config,
)
from detector.engine import EngineConfig
from detector.errors import ConfigError

BASE = "model:\n  path: /models/m.pt\n"


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "detector.yaml"
    path.write_text(text)
    return path


def _errors(*args, **kw) -> list[str]:
    """The problems a load reports, one per line of the message."""
    with pytest.raises(ConfigError) as info:
        load_config(*args, **kw)
    first, *lines = str(info.value).splitlines()
    assert first == "invalid configuration:"
    return [line.strip() for line in lines]


def test_defaults_need_only_model_path() -> None:
    cfg = load_config(None, env={}, overrides=["model.path=/m.pt"])
    assert cfg == WorkerConfig(model=ModelConfig("/m.pt"))
    assert cfg.kafka == KafkaConfig() and cfg.engine == EngineConfig()
    assert cfg.worker == LoopConfig() and cfg.metrics == MetricsConfig()
    assert cfg.kafka.topics == ("readings",) and cfg.kafka.scores_topic is None
    assert _errors(None, env={}) == ["model.path: required"]


def test_empty_file_and_empty_sections_are_defaults(tmp_path: Path) -> None:
    assert _errors(_yaml(tmp_path, ""), env={}) == ["model.path: required"]
    cfg = load_config(_yaml(tmp_path, BASE + "kafka:\nengine:\n"), env={})
    assert cfg.kafka == KafkaConfig() and cfg.engine == EngineConfig()


def test_precedence_file_env_overrides(tmp_path: Path) -> None:
    path = _yaml(
        tmp_path,
        BASE + "kafka:\n  group_id: from-file\n  format: binary\n  alerts_topic: file.alerts\n",
    )
    env = {"DETECTOR_KAFKA_GROUP_ID": "from-env", "DETECTOR_KAFKA_ALERTS_TOPIC": "env.alerts"}
    cfg = load_config(path, env=env, overrides=["kafka.group_id=from-flag"])
    assert cfg.kafka.format == "binary"  # file over default
    assert cfg.kafka.alerts_topic == "env.alerts"  # env over file
    assert cfg.kafka.group_id == "from-flag"  # override over env
    assert cfg.model.path == "/models/m.pt"


def test_env_naming_and_unrelated_variables_ignored() -> None:
    env = {
        "DETECTOR_MODEL_PATH": "/m.pt",
        "DETECTOR_KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
        "DETECTOR_ENGINE_ALERTS_OPEN_AT": "0.7",
        "DETECTOR_ENGINE_SCORER_KIND": "likelihood",
        "DETECTOR_CONFIG": "/etc/detector.yaml",  # allow-listed for the CLI
        "PATH": "/usr/bin",
        "detector_kafka_group_id": "lower-case is not ours",
    }
    cfg = load_config(None, env=env)
    assert cfg.kafka.bootstrap_servers == "k1:9092,k2:9092"
    assert cfg.engine.alerts.open_at == 0.7 and cfg.engine.scorer.kind == "likelihood"
    assert cfg.kafka.group_id == "detector"
    assert _env_names()["DETECTOR_WORKER_CHECKPOINT_INTERVAL_S"] == (
        "worker",
        "checkpoint_interval_s",
    )


def test_type_conversion_from_text() -> None:
    cfg = load_config(
        None,
        env={},
        overrides=[
            "model.path=/m.pt",
            "kafka.topics= a, b ,c,",  # comma list, blanks dropped
            "kafka.max_poll_records=1_000",
            "engine.max_streams=1e6",  # PyYAML reads 1e6 as text; it is still an integer
            "engine.gap_s=90",
            "engine.idle_s=none",
            "engine.window=",
            "kafka.scores_topic=detector.scores",
            "worker.finetune_interval_s=600",
            "model.reload_check_s=0",
            "metrics.port=0",
        ],
    )
    assert cfg.kafka.topics == ("a", "b", "c")
    assert cfg.kafka.max_poll_records == 1000 and cfg.engine.max_streams == 1_000_000
    assert cfg.engine.gap_s == 90.0 and isinstance(cfg.engine.gap_s, float)
    assert cfg.engine.idle_s is None and cfg.engine.window is None
    assert cfg.kafka.scores_topic == "detector.scores"
    assert cfg.worker.finetune_interval_s == 600.0
    assert cfg.model.reload_check_s == 0.0 and cfg.metrics.port == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("Yes", True), ("1", True), ("false", False), ("NO", False), ("0", False)],
)
def test_bool_from_text(text: str, expected: bool) -> None:
    from detector.config import _convert

    assert _convert(text, bool) is expected


def test_yaml_native_types(tmp_path: Path) -> None:
    text = BASE + (
        "kafka:\n  topics: [t1, t2]\n  group_id: 2024\n"
        "engine:\n  gap_s: 60\n  window: 128\n"
        "  scorer: {kind: likelihood, short: 20}\n"
        "  alerts:\n    open_at: 0.6\n    close_at: 0.2\n    cooldown: 10\n"
    )
    cfg = load_config(_yaml(tmp_path, text), env={})
    assert cfg.kafka.topics == ("t1", "t2") and cfg.kafka.group_id == "2024"
    assert cfg.engine.gap_s == 60.0 and cfg.engine.window == 128
    assert cfg.engine.scorer.kind == "likelihood" and cfg.engine.scorer.short == 20
    assert cfg.engine.alerts.open_at == 0.6 and cfg.engine.alerts.cooldown == 10
    assert cfg.engine.scorer.long == 500  # untouched nested defaults stay


def test_each_error_names_its_key() -> None:
    cases = {
        "kafka.format=xml": "kafka.format: must be one of json, binary, got 'xml'",
        "engine.alerts.open_at=high": "engine.alerts.open_at: not a number: 'high'",
        "kafka.max_poll_records=0": "kafka.max_poll_records: must be >= 1, got 0",
        "engine.score_threads=-1": "engine.score_threads: must be >= 0, got -1",
        "kafka.max_poll_records=2.5": "kafka.max_poll_records: not an integer: '2.5'",
        "kafka.topics=,": "kafka.topics: must not be empty",
        "metrics.port=70000": "metrics.port: must be a port in 0..65535, got 70000",
        "worker.checkpoint_interval_s=0": "worker.checkpoint_interval_s: must be > 0, got 0.0",
        "engine.gap_s=-1": "engine.gap_s: must be > 0, got -1.0",
        "engine.missing_score=nan": "engine.missing_score: not a number: 'nan'",
        "model.device=tpu": "model.device: must be one of auto, cpu, cuda or cuda:N, got 'tpu'",
        "engine.scorer.kind=zscore": (
            "engine.scorer.kind: must be one of gaussian, likelihood, got 'zscore'"
        ),
    }
    for override, expected in cases.items():
        errors = _errors(None, env={}, overrides=["model.path=/m.pt", override])
        key = override.split("=")[0]
        assert errors == [f"{expected} (from override {key}=...)"], override


def test_post_init_errors_reported_with_section() -> None:
    errors = _errors(None, env={}, overrides=["model.path=/m.pt", "engine.alerts.close_at=0.9"])
    assert errors == ["engine.alerts: need 0 <= close_at (0.9) <= open_at (0.5) <= 1"]
    errors = _errors(
        None, env={}, overrides=["model.path=/m.pt", "engine.scorer.sustained_beyond=2"]
    )
    assert errors == ["engine.scorer: sustained_beyond must be in 0..1, got 2.0"]
    errors = _errors(
        None, env={}, overrides=["model.path=/m.pt", "engine.scorer.residual_beyond=-1"]
    )
    assert errors == ["engine.scorer: residual_beyond must be in 0..1, got -1.0"]
    errors = _errors(None, env={}, overrides=["model.path=/m.pt", "kafka.session_timeout_ms=2000"])
    assert errors == ["kafka: heartbeat_interval_ms (3000) must be below session_timeout_ms (2000)"]


def test_all_problems_in_one_message(tmp_path: Path) -> None:
    path = _yaml(
        tmp_path,
        "kafka:\n  format: xml\n  bootstrap: k:9092\n  retention: 1\nmetrics:\n  port: -1\n",
    )
    env = {"DETECTOR_ENGINE_ALERTS_OPEN_AT": "high", "DETECTOR_KAFKA_GRUOP_ID": "g"}
    errors = _errors(path, env=env, overrides=["engine.scorer.kindd=x", "nonsense"])
    assert set(errors) == {
        "unknown environment variable DETECTOR_KAFKA_GRUOP_ID "
        "(did you mean DETECTOR_KAFKA_GROUP_ID?)",
        "override 'nonsense': expected dotted.key=value",
        "unknown key kafka.bootstrap (did you mean bootstrap_servers?)",
        "unknown key kafka.retention",
        "kafka.format: must be one of json, binary, got 'xml'",
        "model.path: required",
        "unknown key engine.scorer.kindd (did you mean kind?) "
        "(from override engine.scorer.kindd=...)",
        "engine.alerts.open_at: not a number: 'high' (from DETECTOR_ENGINE_ALERTS_OPEN_AT)",
        "metrics.port: must be a port in 0..65535, got -1",
    }


def test_unknown_section_did_you_mean(tmp_path: Path) -> None:
    errors = _errors(_yaml(tmp_path, BASE + "kafak:\n  group_id: g\n"), env={})
    assert errors == ["unknown key kafak (did you mean kafka?)"]


def test_null_and_wrong_shapes(tmp_path: Path) -> None:
    text = "model:\n  path:\nkafka:\n  group_id: [a]\n  topics: {a: 1}\n"
    assert set(_errors(_yaml(tmp_path, text), env={})) == {
        "model.path: must be set, got null",
        "kafka.group_id: not a string: ['a']",
        "kafka.topics: not a list: {'a': 1}",
    }


def test_section_not_a_mapping(tmp_path: Path) -> None:
    errors = _errors(_yaml(tmp_path, BASE + "kafka: [a, b]\n"), env={})
    assert errors == ["kafka: must be a mapping, got list"]


def test_invalid_yaml_reports_line(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "model:\n  path: /m.pt\nkafka:\n  group_id: [unclosed\n")
    (error,) = _errors(path, env={})  # no spurious "model.path: required" as well
    assert error.startswith(f"{path}: invalid YAML at line ") and "line 5" in error


def test_non_mapping_yaml_and_unreadable_file(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "- kafka\n- model\n")
    assert _errors(path, env={}) == [
        f"{path}: must be a mapping of sections (kafka, model, ...), got list"
    ]
    missing = tmp_path / "absent.yaml"
    assert _errors(missing, env={}) == [f"{missing}: cannot read: No such file or directory"]


def test_client_options_pass_through(tmp_path: Path) -> None:
    text = BASE + (
        "kafka:\n  client_options:\n    security_protocol: SASL_SSL\n"
        "    sasl_mechanism: PLAIN\n    ssl_check_hostname: true\n    api_version: [2, 5, 0]\n"
    )
    env = {
        "DETECTOR_KAFKA_CLIENT_OPTIONS_SASL_PLAIN_USERNAME": "svc",
        "DETECTOR_KAFKA_CLIENT_OPTIONS_SASL_PLAIN_PASSWORD": "12345",  # stays a string
        "DETECTOR_KAFKA_CLIENT_OPTIONS_SSL_CHECK_HOSTNAME": "false",  # env over file, as bool
    }
    cfg = load_config(_yaml(tmp_path, text), env=env, overrides=["kafka.client_options.retries=7"])
    assert cfg.kafka.client_options_dict() == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "PLAIN",
        "ssl_check_hostname": False,
        "api_version": (2, 5, 0),
        "sasl_plain_username": "svc",
        "sasl_plain_password": "12345",
        "retries": 7,
    }
    hash(cfg)  # frozen all the way down
    assert "12345" not in repr(cfg)


def test_client_options_must_not_shadow_settings() -> None:
    errors = _errors(
        None, env={}, overrides=["model.path=/m.pt", "kafka.client_options.group_id=x"]
    )
    assert errors == ["kafka.client_options: set kafka.group_id directly, not here"]
    errors = _errors(None, env={}, overrides=["model.path=/m.pt", "kafka.client_options=x"])
    assert errors[0].startswith("kafka.client_options: must be a mapping")


def test_kafka_config_accepts_a_dict() -> None:
    k = KafkaConfig(client_options={"b": 1, "a": [1, 2]})
    assert k.client_options == (("a", (1, 2)), ("b", 1))
    with pytest.raises(ValueError, match="kafka.max_poll_records: must be >= 1"):
        KafkaConfig(max_poll_records=0)


def test_secret_rule() -> None:
    secret = ["sasl_plain_password", "ssl_password", "api_key", "SASL_OAUTH_TOKEN", "client_secret"]
    plain = ["ssl_keyfile", "ssl_check_hostname", "sasl_plain_username", "security_protocol"]
    assert all(is_secret(n) for n in secret)
    assert not any(is_secret(n) for n in plain)


def test_redacted() -> None:
    cfg = load_config(
        None,
        env={"DETECTOR_KAFKA_CLIENT_OPTIONS_SASL_PLAIN_PASSWORD": "hunter2"},
        overrides=["model.path=/m.pt", "kafka.client_options.ssl_keyfile=/k.pem"],
    )
    out = cfg.redacted()
    assert out["kafka"]["client_options"] == {
        "sasl_plain_password": "***",
        "ssl_keyfile": "/k.pem",
    }
    assert out["engine"]["alerts"]["open_at"] == 0.5 and out["model"]["path"] == "/m.pt"
    assert "hunter2" not in repr(out)
    assert cfg.kafka.client_options_dict()["sasl_plain_password"] == "hunter2"


def test_checks_name_real_keys() -> None:
    """A renamed field must not silently lose its check."""
    leaves = {".".join(p) for p in _env_names().values()} | {"kafka.client_options"}
    assert set(_CHECKS) <= leaves


def test_frozen() -> None:
    cfg = load_config(None, env={}, overrides=["model.path=/m.pt"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.kafka.group_id = "x"  # type: ignore[misc]


def test_shipped_example_config_loads_to_the_defaults() -> None:
    from pathlib import Path

    from detector.config import WorkerConfig

    shipped = Path(__file__).resolve().parents[1] / "deploy" / "detector.yaml"
    cfg = load_config(shipped, env={})
    assert cfg == WorkerConfig(model=cfg.model) and cfg.model.path == "/models/detector.pt"
