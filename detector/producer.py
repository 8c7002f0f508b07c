"""Publish simulated readings to Kafka at a steady rate: for demos, compose and load tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from kafka import KafkaProducer

from detector.codec import encode_binary, encode_json
from simulators import Simulation

__all__ = ["produce_chunks"]


def produce_chunks(
    producer: KafkaProducer,
    topic: str,
    chunks: Iterable[Simulation],
    rate: float,
    duration: float | None = None,
    binary: bool = False,
    stop: threading.Event | None = None,
    on_send: Callable[[str, float, float, int], None] | None = None,
) -> int:
    """Send every reading of the chunks, interleaved in time, keyed by stream, at ``rate``/s.

    Stops after ``duration`` seconds (None = when the chunks end) or when ``stop`` is set.
    ``on_send(stream, ts, first_value, label)`` sees each reading sent. Returns the count.
    """
    start = time.monotonic()
    sent = 0
    for sim in chunks:
        for t in range(len(sim.series[0])):
            for s in sim.series:
                elapsed = time.monotonic() - start
                if (stop is not None and stop.is_set()) or (duration and elapsed > duration):
                    return sent
                ts, v = float(s.timestamps[t]), s.values[t]
                value = encode_binary(ts, v) if binary else encode_json(s.name, ts, v.tolist())
                producer.send(topic, key=s.name.encode(), value=value)
                sent += 1
                if on_send is not None:
                    on_send(s.name, ts, float(v[0]), int(s.labels[t]))
                pause = start + sent / rate - time.monotonic()  # pace to the rate
                if pause > 0:
                    time.sleep(pause)
    return sent
