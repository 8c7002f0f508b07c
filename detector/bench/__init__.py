"""``detector bench``: throughput, latency and memory, each as a ratio to a baseline measured in
the same run on the same machine (absolute rates mean little on shared hardware).

Sections, each its own module:

* :mod:`~detector.bench.engine_bench`: the scoring engine alone, against the naive per-reading
  loop and against the compute bound (the step's matrix multiplications alone);
* :mod:`~detector.bench.decode_bench`: the wire decoders against a bare ``orjson.loads`` /
  ``numpy.frombuffer`` loop;
* :mod:`~detector.bench.kafka_bench`: the worker end to end through the real broker, against a
  consume+decode-only consumer of the same records; poll-to-alert latency under a steady rate;
* :mod:`~detector.bench.memory_bench`: bytes of state per stream and RSS at 100 k and 1 M streams.
"""
