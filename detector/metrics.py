"""Every Prometheus metric of the worker, in one place, and the HTTP endpoint that serves them.

Names follow Prometheus' guide: ``detector_`` prefix, base units, ``_total`` for counters. No
metric carries a per-stream label, except the opt-in ``detector_top_stream_score``, capped at K
streams. ``/metrics`` serves the registry, ``/healthz`` says the process is alive, ``/readyz``
whether the worker holds partitions, has a model and reaches the broker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from detector.codec import REJECT_REASONS
from detector.engine import STATUS

__all__ = ["Metrics", "MetricsServer", "serve", "observe_many", "STAGES"]

REASONS = tuple(dict.fromkeys(REJECT_REASONS + STATUS[1:]))  # decode rejects, then the engine's
STAGES = ("decode", "score", "publish", "checkpoint")
SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60, 300, 3600, 86400)


def observe_many(histogram: Histogram, values: np.ndarray) -> None:
    """Observe a whole array at once: one count per bucket, not one call per value.

    Uses prometheus_client's per-bucket counters (non-cumulative, upper-bound inclusive); a test
    checks the result equals observing the values one by one.
    """
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return
    bounds = np.asarray(histogram._upper_bounds)
    counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
    for bucket, n in zip(histogram._buckets, counts.tolist(), strict=True):
        if n:
            bucket.inc(n)
    histogram._sum.inc(float(values.sum()))


class Metrics:
    """The worker's metrics; pre-creates every reject reason and stage so dashboards see zeros."""

    def __init__(self, registry: CollectorRegistry, top_streams: int = 0) -> None:
        r = self.registry = registry
        self.top_streams = top_streams
        self.consumed = Counter(
            "detector_readings_consumed_total",
            "Records polled from the readings topics",
            registry=r,
        )
        self.scored = Counter("detector_readings_scored_total", "Readings scored", registry=r)
        self.rejected = Counter(
            "detector_readings_rejected_total",
            "Records rejected, by reason; each is dead-lettered",
            ["reason"],
            registry=r,
        )
        for reason in REASONS:
            self.rejected.labels(reason)
        self.alerts_opened = Counter("detector_alerts_opened_total", "Alerts opened", registry=r)
        self.alerts_resolved = Counter(
            "detector_alerts_resolved_total", "Alerts resolved", registry=r
        )
        self.alerts_open = Gauge("detector_alerts_open", "Anomaly alerts open now", registry=r)
        self.score = Histogram(
            "detector_anomaly_score",
            "Anomaly scores of scored readings",
            buckets=SCORE_BUCKETS,
            registry=r,
        )
        self.batch = Histogram(
            "detector_batch_readings",
            "Records per poll",
            buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000),
            registry=r,
        )
        self.stage = Histogram(
            "detector_stage_seconds", "Time per poll in each stage", ["stage"], registry=r
        )
        for stage in STAGES:
            self.stage.labels(stage)
        self.poll_to_alert = Histogram(
            "detector_poll_to_alert_seconds",
            "From a poll's records returned to their alerts handed to the producer",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.event_lag = Histogram(
            "detector_event_lag_seconds",
            "Scoring time minus the reading's event time",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.lag = Gauge(
            "detector_consumer_lag_records",
            "Records not yet read, per partition",
            ["topic", "partition"],
            registry=r,
        )
        self.streams = Gauge(
            "detector_streams_tracked", "Streams with state in this worker", registry=r
        )
        self.evicted = Counter(
            "detector_streams_evicted_total",
            "Streams forgotten: idle, over the cap, or moved away",
            registry=r,
        )
        self.checkpoint_ts = Gauge(
            "detector_checkpoint_timestamp_seconds",
            "Unix time of the last state checkpoint and commit",
            registry=r,
        )
        self.model_loaded = Gauge("detector_model_loaded", "1 when a model is loaded", registry=r)
        self.model_info = Gauge(
            "detector_model_info",
            "The model being served (value 1)",
            ["version", "device", "scorer"],
            registry=r,
        )
        self.ready = Gauge(
            "detector_ready",
            "1 when partitions are held, the model loaded and the broker reachable",
            registry=r,
        )
        self.top = Gauge(
            "detector_top_stream_score",
            "Latest score of the most anomalous streams (opt-in, capped)",
            ["stream"],
            registry=r,
        )

    def set_model(self, version: str, device: str, scorer: str) -> None:
        self.model_info.clear()
        self.model_info.labels(version, device, scorer).set(1)
        self.model_loaded.set(1)

    def set_top(self, names: list[str], scores: np.ndarray) -> None:
        """Replace the top-K gauge with the ``top_streams`` highest of these scores."""
        self.top.clear()
        if not self.top_streams or not len(names):
            return
        order = np.argsort(-scores, kind="stable")[: self.top_streams]
        for i in order:
            self.top.labels(names[i]).set(float(scores[i]))

    def value(self, name: str, **labels: str) -> float:
        """Current value of a sample (``name`` as exposed, e.g. ``..._total``); 0 if absent."""
        return self.registry.get_sample_value(name, labels or None) or 0.0


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args) -> None:  # scrapes every few seconds would flood the log
        pass


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper never holds up shutdown


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on a background thread."""

    def __init__(
        self,
        registry: CollectorRegistry,
        address: str,
        port: int,
        ready: Callable[[], tuple[bool, str]] | None = None,
    ) -> None:
        metrics_app = make_wsgi_app(registry)
        self.ready = ready or (lambda: (True, "ok"))

        def app(environ, start_response):
            path = environ.get("PATH_INFO", "")
            if path == "/healthz":
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [b"ok\n"]
            if path == "/readyz":
                ok, why = self.ready()
                start_response(
                    "200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")]
                )
                return [why.encode() + b"\n"]
            return metrics_app(environ, start_response)

        self.httpd: WSGIServer = make_server(
            address, port, app, server_class=_ThreadingServer, handler_class=_Quiet
        )
        self.port = self.httpd.server_port
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def server_port(self) -> int:
        return self.port

    def shutdown(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serve(
    registry: CollectorRegistry,
    address: str,
    port: int,
    ready: Callable[[], tuple[bool, str]] | None = None,
) -> MetricsServer:
    """Serve the endpoints on ``address:port`` (port 0 picks a free one)."""
    return MetricsServer(registry, address, port, ready)
