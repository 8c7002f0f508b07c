"""The embedded Tansu broker starts on loopback and carries records for kafka-python."""

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from detector.broker import EmbeddedBroker

pytestmark = pytest.mark.integration


def test_round_trip_through_a_real_broker() -> None:
    with EmbeddedBroker() as broker:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        admin.create_topics([NewTopic("readings", num_partitions=2, replication_factor=1)])
        admin.close()
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        sent = [
            producer.send("readings", key=b"s%d" % i, value=b"%d" % i).get(10) for i in range(20)
        ]
        producer.close()
        assert {m.partition for m in sent} <= {0, 1}
        consumer = KafkaConsumer(
            "readings",
            bootstrap_servers=broker.bootstrap,
            auto_offset_reset="earliest",
            consumer_timeout_ms=5000,
        )
        got = sorted(int(m.value) for m in consumer)
        consumer.close()
        assert got == list(range(20))
    assert broker.proc.poll() is not None  # stopped, nothing left behind


def test_ctrl_c_while_the_broker_starts_leaves_no_broker(monkeypatch) -> None:
    from detector import broker as broker_module

    def interrupted(host, port, proc, timeout):
        raise KeyboardInterrupt

    monkeypatch.setattr(broker_module, "_wait_for_port", interrupted)
    broker = EmbeddedBroker()
    with pytest.raises(KeyboardInterrupt):
        broker.start()
    assert broker.proc is not None and broker.proc.poll() is not None


def test_ctrl_c_while_monitoring_starts_leaves_nothing_running(monkeypatch) -> None:
    from detector import monitoring

    assert monitoring.LocalMonitoring.available(), "install Prometheus and Alertmanager"
    calls, real = [], monitoring._wait_ready

    def second_interrupted(port, proc):  # Alertmanager starts, Prometheus is interrupted
        calls.append(proc)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(port, proc)

    monkeypatch.setattr(monitoring, "_wait_ready", second_interrupted)
    mon = monitoring.LocalMonitoring(metrics_port=1)
    with pytest.raises(KeyboardInterrupt):
        mon.__enter__()
    assert len(mon.procs) == 2 and all(p.poll() is not None for p in mon.procs)


def test_produce_command_publishes_simulated_readings(broker) -> None:
    from detector.cli import main
    from tests.integration.kafka_helpers import read_all, topics_for

    topic = topics_for(broker)["readings"]
    argv = [
        "produce",
        "--bootstrap",
        broker.bootstrap,
        "--topic",
        topic,
        "--streams",
        "3",
        "--rate",
        "300",
        "--duration",
        "1",
    ]
    assert main(argv) == 0
    records = read_all(broker, topic)
    assert 50 <= len(records) <= 400
    assert {r.key for r in records} == {b"sensor-0000", b"sensor-0001", b"sensor-0002"}
