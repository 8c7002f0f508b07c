"""Every Prometheus metric of the worker, in one place, on a registry passed in.

No metric carries a per-stream label: label sets stay bounded by reasons and partitions.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from detector.codec import REJECT_REASONS
from detector.engine import STATUS

__all__ = ["Metrics", "serve"]

REASONS = tuple(REJECT_REASONS) + STATUS[1:]  # decode rejects, then the engine's


class Metrics:
    """The worker's metrics; pre-creates every reject reason so dashboards see zeros."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.consumed = Counter(
            "detector_readings_consumed_total",
            "Records polled from the readings topics",
            registry=registry,
        )
        self.scored = Counter(
            "detector_readings_scored_total", "Readings scored", registry=registry
        )
        self.rejected = Counter(
            "detector_readings_rejected_total",
            "Readings rejected, by reason (each is dead-lettered)",
            ["reason"],
            registry=registry,
        )
        for reason in REASONS:
            self.rejected.labels(reason)
        self.alerts_opened = Counter(
            "detector_alerts_opened_total", "Alerts opened", registry=registry
        )
        self.alerts_resolved = Counter(
            "detector_alerts_resolved_total", "Alerts resolved", registry=registry
        )
        self.alerts_open = Gauge("detector_alerts_open", "Alerts open now", registry=registry)
        self.streams = Gauge(
            "detector_streams_tracked", "Streams with state in this worker", registry=registry
        )
        self.lag = Gauge(
            "detector_consumer_lag_records",
            "Records not yet read, per partition",
            ["topic", "partition"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "detector_batch_seconds",
            "Time to decode, score and publish one poll",
            registry=registry,
        )
        self.checkpoint_ts = Gauge(
            "detector_checkpoint_timestamp_seconds",
            "Unix time of the last state checkpoint and commit",
            registry=registry,
        )

    def value(self, name: str, **labels: str) -> float:
        """Current value of a sample (``name`` as exposed, e.g. ``..._total``); 0 if absent."""
        return self.registry.get_sample_value(name, labels or None) or 0.0


def serve(registry: CollectorRegistry, address: str, port: int):
    """Serve ``/metrics`` on ``address:port`` (port 0 picks a free one); returns the server."""
    server, _thread = start_http_server(port, addr=address, registry=registry)
    return server
