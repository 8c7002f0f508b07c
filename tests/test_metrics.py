import urllib.error
import urllib.request

import numpy as np
from prometheus_client import CollectorRegistry, Histogram

from detector.metrics import REASONS, Metrics, observe_many, serve


def test_observe_many_equals_observing_one_by_one() -> None:
    values = np.array([0.05, 0.1, 0.1000001, 0.5, 0.95, 1.0, 7.0, np.nan])
    bulk_reg, loop_reg = CollectorRegistry(), CollectorRegistry()
    bulk = Histogram("h", "h", buckets=(0.1, 0.5, 1.0), registry=bulk_reg)
    loop = Histogram("h", "h", buckets=(0.1, 0.5, 1.0), registry=loop_reg)
    observe_many(bulk, values)
    for v in values[np.isfinite(values)]:
        loop.observe(v)
    for le in ("0.1", "0.5", "1.0", "+Inf"):
        assert bulk_reg.get_sample_value("h_bucket", {"le": le}) == loop_reg.get_sample_value(
            "h_bucket", {"le": le}
        )
    assert bulk_reg.get_sample_value("h_sum") == loop_reg.get_sample_value("h_sum")


def test_every_reject_reason_is_exported_from_the_start() -> None:
    m = Metrics(CollectorRegistry())
    for reason in REASONS:
        assert (
            m.registry.get_sample_value("detector_readings_rejected_total", {"reason": reason})
            == 0.0
        )


def test_top_streams_gauge_is_opt_in_and_capped() -> None:
    off = Metrics(CollectorRegistry())
    off.set_top(["a", "b"], np.array([0.9, 0.1]))
    assert off.value("detector_top_stream_score", stream="a") == 0.0
    on = Metrics(CollectorRegistry(), top_streams=2)
    on.set_top(["a", "b", "c"], np.array([0.2, 0.9, 0.5]))
    samples = {s.labels["stream"]: s.value for s in on.top.collect()[0].samples}
    assert samples == {"b": 0.9, "c": 0.5}


def test_health_and_readiness_endpoints() -> None:
    state = {"ready": False}
    server = serve(
        CollectorRegistry(),
        "127.0.0.1",
        0,
        ready=lambda: (state["ready"], "ok" if state["ready"] else "no partitions"),
    )
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        assert urllib.request.urlopen(base + "/healthz").read() == b"ok\n"
        try:
            urllib.request.urlopen(base + "/readyz")
            raise AssertionError("/readyz answered 200 while not ready")
        except urllib.error.HTTPError as e:
            assert e.code == 503 and e.read() == b"no partitions\n"
        state["ready"] = True
        assert urllib.request.urlopen(base + "/readyz").status == 200
        assert urllib.request.urlopen(base + "/metrics").status == 200
    finally:
        server.shutdown()
