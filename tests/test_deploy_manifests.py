"""The deployment files under deploy/: Grafana dashboard and provisioning, docker-compose,
Kubernetes manifests and the CUDA Dockerfile.

Offline checks only: every file parses; Kubernetes built-in kinds validate against the bundled
JSON schemas of ``kubernetes-validate`` where it is installed (the CRDs, and everything without
it, get structural checks); settings given to the worker (ConfigMap, env) load through
``detector.config.load_config``; every dashboard query names only the worker's metrics (and
``up``) and passes ``promtool check rules`` where promtool is installed.

``dashboard_queries(path)`` is for tests that run every panel's query against a real Prometheus.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from detector.config import load_config

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
GRAFANA = DEPLOY / "grafana"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "docker-compose.yml"
DASHBOARD = GRAFANA / "dashboards" / "detector.json"
DOCKERFILE_CUDA = DEPLOY / "Dockerfile.cuda"

METRICS_PORT = 9108
COUNTERS = {
    "detector_readings_consumed_total",
    "detector_readings_scored_total",
    "detector_readings_rejected_total",
    "detector_alerts_opened_total",
    "detector_alerts_resolved_total",
    "detector_streams_evicted_total",
}
GAUGES = {
    "detector_alerts_open",
    "detector_consumer_lag_records",
    "detector_streams_tracked",
    "detector_checkpoint_timestamp_seconds",
    "detector_model_loaded",
    "detector_model_info",
    "detector_ready",
    "detector_top_stream_score",
}
HISTOGRAMS = {
    "detector_anomaly_score",
    "detector_batch_readings",
    "detector_stage_seconds",
    "detector_event_lag_seconds",
}
#: Every series name a dashboard query may select: the worker's metrics, plus ``up``.
ALLOWED_SERIES = (
    COUNTERS
    | GAUGES
    | {f"{h}{suffix}" for h in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}
    | {"up"}
)
#: Metrics the worker exports only when configured to (metrics.top_streams > 0): a panel
#: querying them is empty against a worker without that setting.
OPT_IN_METRICS = frozenset({"detector_top_stream_score"})

# What a PromQL expression may call or say besides series names (the ones the dashboard uses,
# and their close relatives).
PROMQL_FUNCTIONS = {
    "sum", "max", "min", "avg", "count", "topk", "bottomk", "quantile", "stddev",
    "rate", "irate", "increase", "delta", "deriv", "histogram_quantile", "time", "timestamp",
    "clamp_min", "clamp_max", "abs", "vector", "scalar", "label_replace", "sort", "sort_desc",
    "max_over_time", "min_over_time", "avg_over_time", "changes", "resets", "absent",
}  # fmt: skip
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                   "and", "or", "unless"}  # fmt: skip

DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
FILTER_MATCHERS = ('group=~"$group"', 'instance=~"$instance"')


# -- loading -------------------------------------------------------------------------------------


def yaml_documents(path: Path) -> list[Any]:
    """Every non-empty YAML document in ``path``."""
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def deploy_files() -> list[Path]:
    """The YAML and JSON files this module checks."""
    found = [COMPOSE]
    for base in (GRAFANA, K8S):
        found += sorted(p for p in base.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))
    return found


def k8s_manifests() -> list[tuple[Path, dict[str, Any]]]:
    """(file, document) for every Kubernetes object under deploy/k8s, kustomization excluded."""
    return [
        (path, doc)
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in yaml_documents(path)
    ]


def k8s_object(kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [
        doc
        for _, doc in k8s_manifests()
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def compose() -> dict[str, Any]:
    return yaml_documents(COMPOSE)[0]


def _walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _walk_panels(panel.get("panels", []))


def dashboard_panels(path: Path = DASHBOARD) -> list[dict[str, Any]]:
    """Every panel of a dashboard, rows and the panels of collapsed rows included."""
    return list(_walk_panels(json.loads(Path(path).read_text(encoding="utf-8"))["panels"]))


def dashboard_queries(path: str | Path = DASHBOARD) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query target of the dashboard at ``path``, ready to send
    to Prometheus: template variables become ``.*`` (every group, every instance, as the "All"
    choice does), ``$__rate_interval``/``$__interval`` become ``1m`` and ``$__range`` ``5m``.
    Panels with several targets give one tuple per target, in order."""
    board = json.loads(Path(path).read_text(encoding="utf-8"))
    variables = [v["name"] for v in board.get("templating", {}).get("list", [])]
    builtins = {"__rate_interval": "1m", "__interval": "1m", "__range": "5m"}

    def substitute(expr: str) -> str:
        for name, value in builtins.items():
            expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
        # Longest names first, so that $instance is not cut by a variable named $inst.
        for name in sorted(variables, key=len, reverse=True):
            expr = expr.replace("${" + name + "}", ".*")
            expr = re.sub(r"\$" + re.escape(name) + r"\b", ".*", expr)
        return expr

    out = []
    for panel in _walk_panels(board["panels"]):
        for target in panel.get("targets", []):
            if target.get("expr"):
                out.append((panel.get("title", ""), substitute(target["expr"])))
    return out


def _load_worker_config(yaml_text: str, env: dict[str, str], tmp_path: Path):
    path = tmp_path / "detector.yaml"
    path.write_text(yaml_text, encoding="utf-8")
    return load_config(path, env=env)


def _deployment_container() -> dict[str, Any]:
    containers = k8s_object("Deployment", "detector")["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "detector")


def _deployment_env() -> dict[str, str]:
    """The container's env, a placeholder standing in for each value from a Secret."""
    return {
        e["name"]: e["value"] if "value" in e else "from-secret"
        for e in _deployment_container()["env"]
    }


def _k8s_worker_config(tmp_path: Path):
    text = k8s_object("ConfigMap", "detector-config")["data"]["detector.yaml"]
    return _load_worker_config(text, _deployment_env(), tmp_path)


def _readings_partitions() -> int:
    """Partitions of the readings topic, as the compose topic-creation service makes it."""
    script = " ".join(_as_list(compose()["services"]["kafka-init"]["command"]))
    m = re.search(r"--topic\s+readings\s+--partitions\s+(\d+)", script)
    assert m, "kafka-init does not create the readings topic with --partitions"
    return int(m.group(1))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# -- every file ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", deploy_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_file_parses(path: Path) -> None:
    if path.suffix == ".json":
        assert isinstance(json.loads(path.read_text(encoding="utf-8")), dict)
    else:
        docs = yaml_documents(path)
        assert docs and all(isinstance(d, dict) for d in docs)


def test_expected_files_exist() -> None:
    for rel in (
        "grafana/dashboards/detector.json",
        "grafana/provisioning/datasources/prometheus.yml",
        "grafana/provisioning/dashboards/detector.yml",
        "docker-compose.yml",
        "Dockerfile.cuda",
        "k8s/configmap.yaml",
        "k8s/deployment.yaml",
        "k8s/service.yaml",
        "k8s/servicemonitor.yaml",
        "k8s/keda-scaledobject.yaml",
        "k8s/kustomization.yaml",
    ):
        assert (DEPLOY / rel).is_file(), rel


# -- Kubernetes ----------------------------------------------------------------------------------

CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
}
K8S_VERSION = "1.30"


@pytest.mark.parametrize(
    "path,doc",
    k8s_manifests(),
    ids=[f"{p.name}:{d.get('kind')}" for p, d in k8s_manifests()],
)
def test_k8s_manifest_schema(path: Path, doc: dict[str, Any]) -> None:
    assert isinstance(doc.get("apiVersion"), str) and doc["apiVersion"]
    assert isinstance(doc.get("kind"), str) and doc["kind"]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", doc["metadata"]["name"])
    if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
        return  # no schema bundled: the tests below check what matters
    import kubernetes_validate as kv  # a test dependency: offline, bundled schemas

    try:
        kv.validate(doc, K8S_VERSION, strict=True)
    except kv.ValidationError as e:
        where = ".".join(str(p) for p in e.path)
        pytest.fail(f"{path.name}: {doc['kind']}: {where}: {e.message}")


def test_k8s_only_known_kinds() -> None:
    builtin = {("v1", "ConfigMap"), ("v1", "Service"), ("v1", "PersistentVolumeClaim"),
               ("apps/v1", "Deployment")}  # fmt: skip
    for path, doc in k8s_manifests():
        assert (doc["apiVersion"], doc["kind"]) in builtin | CRD_KINDS, path.name


def test_kustomization_lists_every_manifest() -> None:
    kust = yaml_documents(K8S / "kustomization.yaml")[0]
    assert kust["apiVersion"].startswith("kustomize.config.k8s.io/")
    assert kust["kind"] == "Kustomization"
    listed = kust["resources"]
    assert len(listed) == len(set(listed))
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(listed) == on_disk


def test_deployment_probes_ports_and_security() -> None:
    deployment = k8s_object("Deployment", "detector")
    pod = deployment["spec"]["template"]
    assert _matches(deployment["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"])
    c = _deployment_container()

    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": METRICS_PORT}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c[probe]["httpGet"]
        assert get["path"] == path, probe
        assert get["port"] in ("metrics", METRICS_PORT), probe
    if "startupProbe" in c:
        assert c["startupProbe"]["httpGet"]["path"] == "/healthz"

    pod_sc = pod["spec"].get("securityContext", {})
    c_sc = c.get("securityContext", {})
    assert pod_sc.get("runAsNonRoot") is True or c_sc.get("runAsNonRoot") is True
    assert c_sc.get("runAsUser", pod_sc.get("runAsUser")) not in (None, 0)
    assert c_sc.get("readOnlyRootFilesystem") is True
    assert c_sc.get("allowPrivilegeEscalation") is False

    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][kind]), kind


def test_deployment_volumes_refer_to_manifests() -> None:
    pod = k8s_object("Deployment", "detector")["spec"]["template"]["spec"]
    c = _deployment_container()
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert set(mounts) <= set(volumes)

    config_volume = next(v for v in volumes.values() if "configMap" in v)
    k8s_object("ConfigMap", config_volume["configMap"]["name"])
    args = c["args"]
    config_file = args[args.index("--config") + 1]
    assert args[0] == "run"
    assert config_file == f"{mounts[config_volume['name']]}/detector.yaml"

    for v in volumes.values():
        if "persistentVolumeClaim" in v:
            k8s_object("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"])


def test_deployment_secrets_come_from_a_secret() -> None:
    for e in _deployment_container()["env"]:
        if any(word in e["name"].upper() for word in ("PASSWORD", "SECRET", "TOKEN")):
            assert "value" not in e, e["name"]
            assert e["valueFrom"]["secretKeyRef"]["name"], e["name"]
    names = {e["name"] for e in _deployment_container()["env"]}
    assert "DETECTOR_KAFKA_CLIENT_OPTIONS_SASL_PLAIN_PASSWORD" in names


def test_k8s_worker_settings_load(tmp_path: Path) -> None:
    """The ConfigMap plus the Deployment's env is a configuration the worker accepts."""
    config = _k8s_worker_config(tmp_path)
    assert config.metrics.port == METRICS_PORT
    assert config.metrics.address == "0.0.0.0"
    mounts = [m["mountPath"] for m in _deployment_container()["volumeMounts"]]
    assert any(config.model.path.startswith(m.rstrip("/") + "/") for m in mounts)


def test_service_selects_the_worker_pods() -> None:
    service = k8s_object("Service", "detector")
    pod_labels = k8s_object("Deployment", "detector")["spec"]["template"]["metadata"]["labels"]
    assert _matches(service["spec"]["selector"], pod_labels)
    (port,) = service["spec"]["ports"]
    assert port["name"] == "metrics"
    assert port["port"] == METRICS_PORT
    assert port["targetPort"] in ("metrics", METRICS_PORT)


def test_servicemonitor_scrapes_the_service_and_sets_group(tmp_path: Path) -> None:
    monitor = k8s_object("ServiceMonitor")
    service = k8s_object("Service", "detector")
    assert _matches(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint.get("path", "/metrics") == "/metrics"
    group_rules = [r for r in endpoint["relabelings"] if r.get("targetLabel") == "group"]
    default = next(r for r in group_rules if "sourceLabels" not in r)
    assert default["replacement"] == _k8s_worker_config(tmp_path).kafka.group_id
    # job="detector", as the dashboard's `up` query and the alerting rules expect.
    job_label = monitor["spec"].get("jobLabel")
    job = service["metadata"]["labels"][job_label] if job_label else service["metadata"]["name"]
    assert job == "detector"


def test_scaledobject_scales_the_worker_within_the_partitions(tmp_path: Path) -> None:
    scaled = k8s_object("ScaledObject")
    spec = scaled["spec"]
    target = spec["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment"
    k8s_object("Deployment", target["name"])
    assert spec["minReplicaCount"] == 1
    partitions = _readings_partitions()
    assert spec["maxReplicaCount"] <= partitions
    assert spec["maxReplicaCount"] == partitions  # every partition can get its own worker

    (trigger,) = spec["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    config = _k8s_worker_config(tmp_path)
    default_group = yaml_documents(DEPLOY / "detector.yaml")[0]["kafka"]["group_id"]
    assert meta["consumerGroup"] == config.kafka.group_id == default_group == "detector"
    assert meta["topic"] in config.kafka.topics
    assert meta["bootstrapServers"] == config.kafka.bootstrap_servers
    assert str(meta.get("allowIdleConsumers", "false")).lower() == "false"
    int(meta["lagThreshold"])  # KEDA wants a number as a string


def test_keda_authentication_uses_the_workers_secret() -> None:
    trigger = k8s_object("ScaledObject")["spec"]["triggers"][0]
    auth = k8s_object("TriggerAuthentication", trigger["authenticationRef"]["name"])
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    env = {e["name"]: e for e in _deployment_container()["env"]}
    password = env["DETECTOR_KAFKA_CLIENT_OPTIONS_SASL_PLAIN_PASSWORD"]["valueFrom"]
    assert refs["password"] == (password["secretKeyRef"]["name"], password["secretKeyRef"]["key"])
    assert "username" in refs


# -- Grafana -------------------------------------------------------------------------------------


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def test_dashboard_identity_and_variables() -> None:
    board = _dashboard()
    assert board["uid"] == "detector"
    assert 36 <= board["schemaVersion"] <= 41
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert {"datasource", "group", "instance"} <= set(variables)
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("group", "instance"):
        var = variables[name]
        assert var["type"] == "query"
        assert var["datasource"] == DATASOURCE_REF
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        assert query.startswith("label_values(detector_readings_scored_total")
        assert query.endswith(f", {name})")
        assert var["includeAll"] and var.get("allValue") == ".*"


def test_dashboard_rows() -> None:
    rows = [p["title"] for p in dashboard_panels() if p["type"] == "row"]
    assert rows == ["Fleet overview", "Worker health"]


def test_dashboard_panels_are_well_formed() -> None:
    panels = dashboard_panels()
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    titles = [p.get("title", "").strip() for p in panels]
    assert all(titles), "every panel needs a title"
    assert len(titles) == len(set(titles)), "panel titles must be unique"
    for panel in panels:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE_REF, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target.get("expr", "").strip(), f"{panel['title']} {target['refId']}"
            assert target.get("datasource", DATASOURCE_REF) == DATASOURCE_REF


def _series_names(expr: str) -> list[str]:
    """The series names an expression selects: identifiers that are neither functions,
    keywords, label names (in braces or by/without clauses) nor inside strings or ranges."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = []
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        word, rest = m.group(), s[m.end() :].lstrip()
        if rest.startswith("("):
            assert word in PROMQL_FUNCTIONS, f"unexpected function {word} in {expr}"
        elif word in PROMQL_KEYWORDS:
            continue
        else:
            names.append(word)
    return names


def test_dashboard_queries_use_only_the_workers_metrics() -> None:
    for title, expr in dashboard_queries(DASHBOARD):
        mentioned = set(re.findall(r"\bdetector_[a-z_]+", expr))
        assert mentioned <= ALLOWED_SERIES, f"{title}: unknown {mentioned - ALLOWED_SERIES}"
        names = _series_names(expr)
        assert names, f"{title}: selects no series: {expr}"
        assert set(names) <= ALLOWED_SERIES, f"{title}: unknown {set(names) - ALLOWED_SERIES}"
        assert not re.search(r"\boffset\b", expr), f"{title}: offset delays the first data"


def test_dashboard_queries_filter_by_group_and_instance() -> None:
    for panel in dashboard_panels():
        for target in panel.get("targets", []):
            expr = target["expr"]
            for m in re.finditer(r"\b(detector_[a-z_]+|up)\b\s*(\{[^}]*\})?", expr):
                matchers = m.group(2) or ""
                for wanted in FILTER_MATCHERS:
                    assert wanted in matchers, f"{panel['title']}: {m.group(0)} lacks {wanted}"
                if m.group(1) == "up":
                    assert 'job="detector"' in matchers


def test_dashboard_ranges_are_short() -> None:
    """Short windows, so every panel has data after ~30 s of scoring (two scrapes)."""
    for title, expr in dashboard_queries(DASHBOARD):
        for window in re.findall(r"\[([^\]]+)\]", expr):
            assert window in ("1m", "5m"), f"{title}: range [{window}]"


def test_dashboard_heatmap_reads_score_buckets() -> None:
    heatmaps = [p for p in dashboard_panels() if p["type"] == "heatmap"]
    assert heatmaps
    for panel in heatmaps:
        (target,) = panel["targets"]
        assert "detector_anomaly_score_bucket" in target["expr"]
        assert "by (le)" in target["expr"]
        assert target["format"] == "heatmap"


def test_dashboard_covers_the_brief() -> None:
    exprs = " ".join(expr for _, expr in dashboard_queries(DASHBOARD))
    for needed in (
        "detector_readings_scored_total",
        "detector_consumer_lag_records",
        "detector_alerts_open",
        "detector_anomaly_score_bucket",
        "detector_top_stream_score",
        "detector_readings_rejected_total",
        "detector_stage_seconds_bucket",
        "detector_batch_readings",
        "detector_event_lag_seconds_bucket",
        "time() - max by (instance) (detector_checkpoint_timestamp_seconds",
        "detector_streams_tracked",
        "detector_streams_evicted_total",
        "detector_model_info",
        "detector_ready",
    ):
        assert needed in exprs, needed


def test_dashboard_queries_helper() -> None:
    queries = dashboard_queries(DASHBOARD)
    titles = {p["title"] for p in dashboard_panels() if p["type"] != "row"}
    assert {t for t, _ in queries} == titles
    for title, expr in queries:
        assert "$" not in expr, title
        assert '=~".*"' in expr, title


def test_dashboard_queries_parse_with_promtool(tmp_path: Path) -> None:
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": expr}
                    for i, (_, expr) in enumerate(dashboard_queries(DASHBOARD))
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    done = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_grafana_provisioning() -> None:
    (datasources,) = yaml_documents(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    (ds,) = datasources["datasources"]
    assert ds["type"] == "prometheus"
    assert ds["uid"] == "prometheus"
    assert ds["url"] == "http://prometheus:9090"
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    assert variables["datasource"]["current"]["value"] == ds["uid"]

    (dashboards,) = yaml_documents(GRAFANA / "provisioning" / "dashboards" / "detector.yml")
    (provider,) = dashboards["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


# -- docker-compose ------------------------------------------------------------------------------

COMPOSE_SERVICES = {"kafka", "kafka-init", "prometheus", "alertmanager", "grafana", "detector",
                    "simulator"}  # fmt: skip


def _bind_mounts() -> list[tuple[str, str, str]]:
    """(service, source, target) of every bind mount (a source starting with . or /)."""
    out = []
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith((".", "/")):
                out.append((name, source, target))
    return out


def test_compose_services_and_images() -> None:
    services = compose()["services"]
    assert COMPOSE_SERVICES <= set(services)
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        build = service.get("build")
        if build:
            context = (DEPLOY / build["context"]).resolve()
            assert context.is_dir(), name
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
    worker_build = services["detector"]["build"]
    assert (DEPLOY / worker_build["context"]).resolve() == ROOT
    assert worker_build["dockerfile"] == "deploy/Dockerfile"


def test_compose_dependencies_exist() -> None:
    services = compose()["services"]
    for name, service in services.items():
        depends = service.get("depends_on", [])
        targets = list(depends) if isinstance(depends, dict | list) else []
        for target in targets:
            assert target in services, f"{name} depends on unknown {target}"
            assert target != name


def test_compose_host_ports_unique() -> None:
    seen: dict[str, str] = {}
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            host = str(port).rsplit(":", 1)[0] if ":" in str(port) else str(port)
            assert host not in seen, f"host port {host}: {seen.get(host)} and {name}"
            seen[host] = name
    assert seen.get(str(METRICS_PORT)) == "detector"


def test_compose_named_volumes_declared() -> None:
    doc = compose()
    declared = set(doc.get("volumes") or {})
    for name, service in doc["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} not declared"


@pytest.mark.parametrize(
    "service,source,target", _bind_mounts(), ids=[f"{s}:{src}" for s, src, _ in _bind_mounts()]
)
def test_compose_mounted_files_exist(service: str, source: str, target: str) -> None:
    path = (DEPLOY / source).resolve()
    assert path.exists(), f"{service}: {source} (mounted at {target}) does not exist"


def test_compose_kafka_single_kraft_node() -> None:
    env = compose()["services"]["kafka"]["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    node = str(env["KAFKA_NODE_ID"])
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node}@kafka:9093"
    assert str(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == "1"


def test_compose_creates_the_workers_topics() -> None:
    settings = yaml_documents(DEPLOY / "detector.yaml")[0]["kafka"]
    script = " ".join(_as_list(compose()["services"]["kafka-init"]["command"]))
    created = {}
    for line in script.splitlines():
        m = re.search(r"--topic\s+(\S+)", line)
        if m and "--create" not in line and "--list" not in line:
            created[m.group(1)] = line
    wanted = [*settings["topics"], settings["alerts_topic"], settings["dead_letter_topic"],
              settings["state_topic"]]  # fmt: skip
    for topic in wanted:
        assert topic in created, f"kafka-init does not create {topic}"
    assert "cleanup.policy=compact" in created[settings["state_topic"]]
    assert _readings_partitions() == 8


def test_compose_worker(tmp_path: Path) -> None:
    worker = compose()["services"]["detector"]
    command = worker["command"]
    assert command[0] == "run"
    config_file = command[command.index("--config") + 1]
    mounts = {target: source for s, source, target in _bind_mounts() if s == "detector"}
    assert mounts[config_file] == "./detector.yaml"

    env = {k: str(v) for k, v in worker["environment"].items()}
    assert env["DETECTOR_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    config = load_config(DEPLOY / "detector.yaml", env=env)  # every variable is a known key
    assert config.metrics.address == "0.0.0.0"
    assert config.model.path == "/models/detector.pt"
    assert any(v.split(":")[1] == "/models" for v in worker["volumes"])
    assert f"{config.metrics.port}:{config.metrics.port}" in worker["ports"]

    check = " ".join(_as_list(worker["healthcheck"]["test"]))
    assert f"127.0.0.1:{config.metrics.port}/healthz" in check


def test_compose_simulator() -> None:
    services = compose()["services"]
    sim = services["simulator"]
    assert sim["command"] == [
        "produce", "--bootstrap", "kafka:9092", "--topic", "readings", "--rate", "200",
    ]  # fmt: skip
    assert sim.get("image") == services["detector"]["image"]


def test_compose_prometheus_alertmanager_grafana() -> None:
    services = compose()["services"]
    prom = services["prometheus"]
    assert any(a.startswith("--rules.alert.resend-delay=") for a in prom["command"])
    targets = {t for s, _, t in _bind_mounts() if s == "prometheus"}
    assert {"/etc/prometheus/prometheus.yml", "/etc/prometheus/rules.yml"} <= targets
    assert "9090:9090" in prom["ports"]

    am = services["alertmanager"]
    config = next(a for a in am["command"] if a.startswith("--config.file="))
    assert config.split("=", 1)[1] in {t for s, _, t in _bind_mounts() if s == "alertmanager"}

    grafana = services["grafana"]
    env = {k: str(v) for k, v in grafana["environment"].items()}
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    mounts = {t: src for s, src, t in _bind_mounts() if s == "grafana"}
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"
    assert mounts["/var/lib/grafana/dashboards"] == "./grafana/dashboards"


# -- CUDA image ----------------------------------------------------------------------------------


def test_dockerfile_cuda() -> None:
    lines = [
        line.strip()
        for line in DOCKERFILE_CUDA.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    froms = [line for line in lines if line.upper().startswith("FROM ")]
    assert froms and all("nvidia/cuda:" in f for f in froms)
    args = dict(
        line.split(None, 1)[1].split("=", 1)
        for line in lines
        if line.startswith("ARG ") and "=" in line
    )
    assert "runtime" in args.get("CUDA_TAG", froms[0])
    assert re.fullmatch(r"https://download\.pytorch\.org/whl/cu\d+", args["TORCH_INDEX"])
    assert "python3.11" in " ".join(lines)

    users = [line.split(None, 1)[1] for line in lines if line.upper().startswith("USER ")]
    assert users, "no USER: the image would run as root"
    last = users[-1].split(":")[0]
    assert last not in ("0", "root")
    assert lines.index(next(line for line in lines if line.startswith("ENTRYPOINT"))) > max(
        i for i, line in enumerate(lines) if line.upper().startswith("USER ")
    )
    entry = next(line for line in lines if line.startswith("ENTRYPOINT"))
    assert json.loads(entry.split(None, 1)[1]) == ["detector"]
