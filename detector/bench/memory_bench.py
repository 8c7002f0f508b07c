"""Memory of per-stream state: bytes per stream by account and as resident memory (RSS).

Each stream count runs in a fresh interpreter (``python -m detector.bench.memory_bench``) so
RSS is not muddied by earlier cases. The engine (sensor shape, window 64) takes two readings of
every stream, which writes a row of every slab (the window included, so its pages are resident);
``rss_per_stream`` is the growth of RSS over the process before any stream arrived, divided by
the streams: slabs, the stream-id table and allocator overhead, all included.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

__all__ = ["bench_memory", "measure", "rss_bytes"]

WINDOW = 64  # readings kept per stream in the reference shape


def rss_bytes() -> int:
    """Resident memory of this process now (Linux), else its peak."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(streams: int) -> dict[str, object]:
    import gc

    import numpy as np
    import torch

    from detector.bench.synthetic import SHAPES, synthetic_checkpoint
    from detector.engine import Engine, EngineConfig

    torch.set_num_threads(1)
    features, hidden, layers = SHAPES["sensor"]
    ckpt = synthetic_checkpoint(features, hidden, layers, timesteps=32)
    names = np.array([f"sensor-{i:07d}" for i in range(streams)], dtype=object)
    values = np.random.default_rng(0).standard_normal((streams, features))
    gc.collect()
    before = rss_bytes()
    engine = Engine(
        ckpt,
        EngineConfig(device="cpu", window=WINDOW, capacity=streams, max_streams=streams),
    )
    for tick in range(2):
        engine.process(names, np.full(streams, float(tick)), values)
    gc.collect()
    after = rss_bytes()
    payload = (2 * layers * hidden + WINDOW * features) * 4  # h, c and the window, float32
    return {
        "streams": streams,
        "payload_bytes_per_stream": payload,
        "slab_bytes_per_stream": engine.bytes_per_stream(),
        "rss_bytes_per_stream": (after - before) / streams,
        "rss_total_bytes": after,
        "of_payload": (after - before) / streams / payload,
    }


def bench_memory(stream_counts: list[int]) -> list[dict[str, object]]:
    out = []
    for n in stream_counts:
        proc = subprocess.run(
            [sys.executable, "-m", "detector.bench.memory_bench", str(n)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            out.append({"streams": n, "error": proc.stderr.strip().splitlines()[-1:]})
        else:
            out.append(json.loads(proc.stdout))
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="state memory at N streams (JSON to stdout)")
    parser.add_argument("streams", type=int)
    print(json.dumps(measure(parser.parse_args().streams)))
