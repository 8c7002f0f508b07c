"""Local Prometheus and Alertmanager for the demo, when their binaries are installed.

Prometheus scrapes the demo's worker every 2 s and evaluates the shipped rules
(``deploy/prometheus/rules.yml``), sending alerts to an Alertmanager with no receivers beyond its
own UI. Both listen on free loopback ports, keep their data in a temporary directory, and stop
with the context.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from detector.broker import free_port

__all__ = ["LocalMonitoring", "RULES"]

RULES = Path(__file__).resolve().parents[1] / "deploy" / "prometheus" / "rules.yml"
BINARIES = ("prometheus", "prometheus-alertmanager")


def _wait_ready(port: int, proc: subprocess.Popen, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    return False


class LocalMonitoring:
    """``with LocalMonitoring(metrics_port) as mon: mon.urls`` (empty if not installed)."""

    def __init__(self, metrics_port: int, group: str = "demo") -> None:
        self.metrics_port, self.group = metrics_port, group
        self.procs: list[subprocess.Popen] = []
        self.urls: dict[str, str] = {}
        self.tmp: tempfile.TemporaryDirectory | None = None

    @staticmethod
    def available() -> bool:
        return all(shutil.which(b) for b in BINARIES)

    def __enter__(self) -> LocalMonitoring:
        if not self.available():
            return self
        try:
            self._start_all()
        except BaseException:  # Ctrl-C while they start included: none left behind
            self.__exit__()
            raise
        return self

    def _start_all(self) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="detector-monitoring-")
        tmp = Path(self.tmp.name)
        am_port, prom_port = free_port(), free_port()
        (tmp / "am.yml").write_text("route: {receiver: ui}\nreceivers: [{name: ui}]\n")
        self._start(
            [
                "prometheus-alertmanager",
                f"--config.file={tmp / 'am.yml'}",
                f"--storage.path={tmp / 'am'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
            ],
            am_port,
            "alertmanager",
        )
        config = {
            "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
            "rule_files": [str(RULES)] if RULES.is_file() else [],
            "alerting": {
                "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
            },
            "scrape_configs": [
                {
                    "job_name": "detector",
                    "static_configs": [
                        {
                            "targets": [f"127.0.0.1:{self.metrics_port}"],
                            "labels": {"group": self.group},
                        }
                    ],
                }
            ],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        self._start(
            [
                "prometheus",
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--rules.alert.resend-delay=2s",
            ],
            prom_port,
            "prometheus",
        )

    def _start(self, argv: list[str], port: int, name: str) -> None:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        if _wait_ready(port, proc):
            self.urls[name] = f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.tmp is not None:
            self.tmp.cleanup()
