"""The Prometheus rules, their promtool unit tests, and the Alertmanager routing in deploy/.

Everything is checked with the real tools (promtool, amtool, alertmanager), which CI installs;
a missing tool fails the test rather than skipping it.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROM = ROOT / "deploy" / "prometheus"
RULES = PROM / "rules.yml"
RULES_TEST = PROM / "rules_test.yml"
PROM_CONFIG = PROM / "prometheus.yml"
RUNBOOK = PROM / "RUNBOOK.md"
AM_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"

SEVERITIES = {"critical", "warning", "info"}
ANNOTATIONS = {"summary", "description", "runbook"}
REQUIRED_ALERTS = {
    "DetectorAnomalyAlertsOpen",
    "DetectorWorkerDown",
    "DetectorConsumerLagGrowing",
    "DetectorScoringStalled",
    "DetectorDeadLettersRising",
    "DetectorCheckpointStale",
    "DetectorModelNotLoaded",
    "DetectorNotReady",
}
# Alerts that a down worker of the same group must inhibit in Alertmanager.
INHIBITED_BY_WORKER_DOWN = {
    "DetectorAnomalyAlertsOpen",
    "DetectorScoringStalled",
    "DetectorConsumerLagGrowing",
    "DetectorDeadLettersRising",
}
AM_HINT = "apt-get install prometheus-alertmanager (or an Alertmanager release)"
INSTALL_HINT = {
    "promtool": "apt-get install prometheus (or the promtool binary of a Prometheus release)",
    "amtool": AM_HINT,
    "prometheus-alertmanager": AM_HINT,
}


def tool(*names: str) -> str:
    """Path of the first of these executables on PATH; fail (not skip) when none is there."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(f"{' / '.join(names)} not found on PATH: {INSTALL_HINT[names[0]]}")


def run(*args: str | Path) -> str:
    proc = subprocess.run(
        [str(a) for a in args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed ({proc.returncode}):\n{out}"
    return out


def load(path: Path) -> dict:
    with path.open() as f:
        return yaml.safe_load(f)


def rules(kind: str) -> list[dict]:
    return [r for g in load(RULES)["groups"] for r in g["rules"] if kind in r]


def alert_tests() -> list[dict]:
    return [t for test in load(RULES_TEST)["tests"] for t in test.get("alert_rule_test", [])]


# -- the real tools ----------------------------------------------------------------------------
def test_promtool_check_rules():
    run(tool("promtool"), "check", "rules", RULES)


def test_promtool_unit_tests():
    out = run(tool("promtool"), "test", "rules", RULES_TEST)
    assert "SUCCESS" in out


def test_promtool_check_config():
    out = run(tool("promtool"), "check", "config", PROM_CONFIG)
    assert "rules.yml" in out  # the rule file, relative to the config, was found and checked


def test_amtool_check_config():
    run(tool("amtool"), "check-config", AM_CONFIG)


@pytest.mark.parametrize(
    ("severity", "receiver"),
    [("critical", "pager"), ("warning", "chat"), ("info", "chat-low"), ("", "chat")],
)
def test_alertmanager_routes_by_severity(severity: str, receiver: str):
    labels = ["alertname=DetectorWorkerDown", "group=fleet"]
    if severity:
        labels.append(f"severity={severity}")
    out = run(tool("amtool"), "config", "routes", "test", f"--config.file={AM_CONFIG}", *labels)
    assert out.splitlines()[0].strip() == receiver, out


# -- the rules' shape --------------------------------------------------------------------------
def test_required_alerts_exist():
    names = [r["alert"] for r in rules("alert")]
    assert len(names) == len(set(names)), "duplicate alert names"
    assert REQUIRED_ALERTS <= set(names), REQUIRED_ALERTS - set(names)
    for name in names:
        assert re.fullmatch(r"Detector[A-Z][A-Za-z]+", name), name


@pytest.mark.parametrize("rule", rules("alert"), ids=lambda r: r["alert"])
def test_alert_rule_has_for_severity_and_annotations(rule: dict):
    assert rule.get("for"), f"{rule['alert']} has no `for`"
    assert rule.get("labels", {}).get("severity") in SEVERITIES
    annotations = rule.get("annotations", {})
    missing = ANNOTATIONS - annotations.keys()
    assert not missing, f"{rule['alert']} lacks annotations {missing}"
    assert all(annotations[k].strip() for k in ANNOTATIONS)
    text = annotations["summary"] + annotations["description"]
    assert "{{ $labels." in text, f"{rule['alert']}: annotations name no label"
    if rule["alert"] != "DetectorTargetsMissing":  # absent() has no value worth showing
        assert "$value" in text, f"{rule['alert']}: annotations do not show the value"


@pytest.mark.parametrize("rule", rules("alert"), ids=lambda r: r["alert"])
def test_alert_expr_has_no_per_stream_label(rule: dict):
    assert not re.search(r"\bstream\b", rule["expr"]), rule["expr"]
    assert "detector_top_stream_score" not in rule["expr"]


def test_runbook_links_resolve():
    headings = re.findall(r"^#+\s+(.+?)\s*$", RUNBOOK.read_text(), flags=re.MULTILINE)
    anchors = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}
    for rule in rules("alert"):
        url = rule["annotations"].get("runbook_url")
        if url is None:
            continue
        page, _, anchor = url.partition("#")
        assert (PROM / page).is_file(), url
        assert anchor in anchors, f"{rule['alert']}: no heading for #{anchor} in {RUNBOOK.name}"


def test_recording_rule_names():
    for rule in rules("record"):
        assert re.fullmatch(r"detector:[a-z0-9_]+:[a-z0-9_]+", rule["record"]), rule["record"]


# -- the unit tests cover every rule -----------------------------------------------------------
@pytest.mark.parametrize("name", sorted(r["alert"] for r in rules("alert")))
def test_every_alert_has_firing_and_silent_cases(name: str):
    cases = [t for t in alert_tests() if t["alertname"] == name]
    firing = [t for t in cases if t.get("exp_alerts")]
    silent = [t for t in cases if not t.get("exp_alerts")]
    assert firing, f"{name}: no unit test where it fires"
    assert silent, f"{name}: no unit test where it must not fire"
    for case in firing:
        for alert in case["exp_alerts"]:
            assert alert.get("exp_labels", {}).get("severity") in SEVERITIES, case
            assert ANNOTATIONS <= alert.get("exp_annotations", {}).keys(), case


def test_every_recording_rule_is_tested():
    tested = {
        t["expr"] for test in load(RULES_TEST)["tests"] for t in test.get("promql_expr_test", [])
    }
    for rule in rules("record"):
        assert any(rule["record"] in expr for expr in tested), f"{rule['record']} untested"


# -- inhibition, in a real Alertmanager --------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url: str, body: object | None = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


@pytest.mark.integration
def test_worker_down_inhibits_group_alerts(tmp_path: Path):
    binary = tool("prometheus-alertmanager", "alertmanager")
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/v2"
    log = tmp_path / "alertmanager.log"
    cmd = [
        binary,
        f"--config.file={AM_CONFIG}",
        f"--storage.path={tmp_path}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # no gossip cluster
    ]
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                http(f"{base}/status")
                break
            except OSError:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, (
                    f"alertmanager did not start:\n{log.read_text()}"
                )
                time.sleep(0.1)

        def alert(name: str, group: str, severity: str, **labels: str) -> dict:
            labels = {"alertname": name, "group": group, "severity": severity, **labels}
            return {"labels": labels, "annotations": {"summary": name}}

        http(
            f"{base}/alerts",
            [
                alert("DetectorWorkerDown", "fleet", "critical", instance="w1:9108"),
                *(alert(name, "fleet", "warning") for name in INHIBITED_BY_WORKER_DOWN),
                alert("DetectorAnomalyAlertsOpen", "cams", "warning"),
                alert("DetectorCheckpointStale", "fleet", "warning", instance="w2:9108"),
            ],
        )
        # Group alerts of fleet are inhibited; another group's, and per-worker alerts, are not.
        expected = {(name, "fleet"): "suppressed" for name in INHIBITED_BY_WORKER_DOWN}
        expected |= {
            ("DetectorWorkerDown", "fleet"): "active",
            ("DetectorAnomalyAlertsOpen", "cams"): "active",
            ("DetectorCheckpointStale", "fleet"): "active",
        }
        got: dict = {}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            got = {
                (a["labels"]["alertname"], a["labels"]["group"]): a["status"]["state"]
                for a in http(f"{base}/alerts")
            }
            if got == expected:
                break
            time.sleep(0.2)
        assert got == expected
    finally:
        proc.terminate()
        proc.wait(timeout=10)
