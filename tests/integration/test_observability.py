"""A real Prometheus scrapes a real worker fed through the real broker.

Checks that every Grafana panel's query parses and returns data, that /healthz and /readyz answer,
and that the anomaly alert rule fires and reaches a real Alertmanager.
"""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from kafka import KafkaProducer
from prometheus_client import CollectorRegistry

from detector.broker import free_port
from detector.codec import encode_json
from detector.metrics import serve
from detector.worker import Worker
from tests.integration.kafka_helpers import produce, topics_for, wait_for, worker_config
from tests.test_deploy_manifests import dashboard_queries

pytestmark = pytest.mark.integration
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _start(argv: list[str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(lambda: proc.poll() is not None or _ready(port), timeout=30)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    return proc


def _ready(port: int) -> bool:
    try:
        return _get(f"http://127.0.0.1:{port}/-/ready")[0] == 200
    except OSError:
        return False


def _fast_rules(tmp: Path) -> Path:
    """The shipped rules with every ``for:`` cut to 2 s, so the test need not wait minutes."""
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            if "alert" in rule:
                rule["for"] = "2s"
    path = tmp / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    return path


@pytest.fixture
def stack(tmp_path, broker, model):
    """Worker (metrics on a free port) + Prometheus + Alertmanager, all on 127.0.0.1."""
    topics = topics_for(broker)
    config = worker_config(broker, model, topics, "observe", interval=0.5)
    registry = CollectorRegistry()
    worker = Worker(config, registry)
    worker.metrics.top_streams = 5
    server = serve(registry, "127.0.0.1", 0, ready=worker.readiness)
    am_port, prom_port = free_port(), free_port()
    (tmp_path / "am.yml").write_text(
        "route: {receiver: sink, group_by: [alertname], group_wait: 1s, group_interval: 1s}\n"
        "receivers: [{name: sink}]\n"
    )
    am = _start(
        [
            "prometheus-alertmanager",
            f"--config.file={tmp_path / 'am.yml'}",
            f"--storage.path={tmp_path / 'am'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
        ],
        am_port,
    )
    prom_cfg = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(_fast_rules(tmp_path))],
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
        },
        "scrape_configs": [
            {
                "job_name": "detector",
                "static_configs": [
                    {"targets": [f"127.0.0.1:{server.server_port}"], "labels": {"group": "observe"}}
                ],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prom_cfg))
    prom = _start(
        [
            "prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--rules.alert.resend-delay=2s",
        ],
        prom_port,
    )
    worker.start()
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield {
            "worker": worker,
            "topics": topics,
            "metrics": server.server_port,
            "prom": prom_port,
            "am": am_port,
        }
    finally:
        worker.stop()
        thread.join(30)
        server.shutdown()
        for proc in (prom, am):
            proc.terminate()
            proc.wait(10)


def _query(port: int, expr: str) -> dict:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    return json.loads(_get(url)[1])


def _spike_last(broker, topic: str, sim) -> None:
    """End one stream on a huge spike: its alert opens and, with no reading after, stays open."""
    s = sim.series[0]
    values = s.values[len(s) - 1].copy()
    values[0] += 1e6
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    producer.send(
        topic,
        key=s.name.encode(),
        value=encode_json(s.name, float(s.timestamps[-1]) + 60.0, values.tolist()),
    )
    producer.flush()
    producer.close()


def test_dashboard_queries_return_data_and_the_alert_reaches_alertmanager(stack, broker, sim):
    worker, port = stack["worker"], stack["prom"]
    n = produce(broker, stack["topics"]["readings"], sim)
    _spike_last(broker, stack["topics"]["readings"], sim)
    wait_for(lambda: worker.metrics.value("detector_readings_consumed_total") >= n + 1)
    wait_for(lambda: worker.metrics.value("detector_alerts_open") >= 1)

    status, body = _get(f"http://127.0.0.1:{stack['metrics']}/healthz")
    assert status == 200 and body.strip() == "ok"
    wait_for(lambda: _get(f"http://127.0.0.1:{stack['metrics']}/readyz")[0] == 200)

    queries = dashboard_queries(DEPLOY / "grafana" / "dashboards" / "detector.json")
    assert queries

    def empty() -> list[str]:
        missing = []
        for title, expr in queries:
            answer = _query(port, expr)
            assert answer["status"] == "success", (title, expr, answer)
            if not answer["data"]["result"]:
                missing.append(f"{title}: {expr}")
        return missing

    wait_for(lambda: not empty(), timeout=90)

    def delivered() -> bool:
        alerts = json.loads(_get(f"http://127.0.0.1:{stack['am']}/api/v2/alerts")[1])
        return any(
            a["labels"].get("alertname") == "DetectorAnomalyAlertsOpen"
            and a["labels"].get("group") == "observe"
            for a in alerts
        )

    wait_for(delivered, timeout=90)
    rules = json.loads(_get(f"http://127.0.0.1:{port}/api/v1/rules")[1])["data"]["groups"]
    health = {r["name"]: r["health"] for g in rules for r in g["rules"]}
    assert all(h == "ok" for h in health.values()), health
