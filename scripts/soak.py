#!/usr/bin/env python
"""Soak: a steady load through ``detector run`` for N minutes; RSS, scoring rate and lag over time.

Starts the embedded broker, trains a small model on the simulated fleet (or takes ``--model``),
produces the fleet's readings at ``--rate`` per second (a fixed stream set), runs the worker as
a child process and samples it every ``--every`` seconds. Writes ``soak.json`` and ``soak.png``
to ``--out`` and prints a summary. Exits 1 if RSS grows by more than ``--max-growth-mb`` over
the second half of the run (once the stream set is stable nothing should grow).

    .venv/bin/python scripts/soak.py --minutes 30 --out soak-30min     # the opt-in long run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def rss_mb(pid: int) -> float:
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--rate", type=float, default=1000.0, help="readings per second")
    p.add_argument("--streams", type=int, default=200)
    p.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    p.add_argument("--model", help="checkpoint to serve (default: train a small one)")
    p.add_argument("--out", default="soak", help="folder for soak.json and soak.png")
    p.add_argument("--max-growth-mb", type=float, default=20.0)
    args = p.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from detector.broker import EmbeddedBroker, free_port
    from detector.checkpoint import save_checkpoint
    from detector.training import TrainConfig, train
    from simulators import SensorFleetConfig, simulate_sensors
    from tests.integration.faults import Load, WorkerProcess, fault_topics, overrides

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # Enough rows for the whole run at this rate, so the stream set stays the same throughout.
    rows = int(args.minutes * 60 * args.rate / args.streams) + 100
    fleet = SensorFleetConfig(streams=args.streams, features=2, length=rows, seed=5)
    print(f"soak: simulating {args.streams} streams x {rows} rows", flush=True)
    sim = simulate_sensors(fleet)
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    model = args.model
    if model is None:
        small = SensorFleetConfig(streams=8, features=2, length=500, seed=11)
        cfg = TrainConfig(timesteps=16, hidden=16, epochs=3, device="cpu", val_fraction=0.3)
        model = save_checkpoint(
            tmp / "m.pt", train(list(simulate_sensors(small).series), cfg).to_checkpoint()
        )
    samples = []
    with EmbeddedBroker() as broker:
        topics = fault_topics(broker.bootstrap)
        port = free_port()
        settings = overrides(broker.bootstrap, model, topics, "soak", interval=5.0)
        settings.append("kafka.scores_topic=")  # no per-reading scores: alerts only, as in prod
        worker = WorkerProcess(settings, tmp / "worker.log", port)
        load = Load(broker.bootstrap, topics["readings"], sim, args.rate)
        load.start()
        start = time.monotonic()
        end = start + args.minutes * 60
        last = None
        try:
            while time.monotonic() < end:
                time.sleep(args.every)
                if not worker.alive():
                    raise SystemExit(f"worker died:\n{worker.output()[-3000:]}")
                try:
                    m = scrape(port)
                except OSError:
                    continue
                t = time.monotonic() - start
                scored = m.get("detector_readings_scored_total", 0.0)
                rate = (scored - last[1]) / (t - last[0]) if last else 0.0
                last = (t, scored)
                sample = {
                    "t_s": round(t, 1),
                    "rss_mb": round(rss_mb(worker.pid), 1),
                    "cpu_s": round(worker.cpu_s(), 1),
                    "scored": scored,
                    "rate_per_s": round(rate, 1),
                    "lag_records": m.get("detector_consumer_lag_records", 0.0),
                    "streams": m.get("detector_streams_tracked", 0.0),
                    "produced": load.rows * args.streams,
                }
                samples.append(sample)
                print(json.dumps(sample), flush=True)
        finally:
            load.stopping.set()
            worker.terminate()
            load.join(30)

    half = [s for s in samples if s["t_s"] >= samples[-1]["t_s"] / 2] if samples else []
    growth = max(s["rss_mb"] for s in half) - half[0]["rss_mb"] if half else 0.0
    summary = {
        "minutes": args.minutes,
        "rate_target": args.rate,
        "streams": args.streams,
        "samples": len(samples),
        "rss_first_mb": samples[0]["rss_mb"] if samples else None,
        "rss_last_mb": samples[-1]["rss_mb"] if samples else None,
        "rss_growth_second_half_mb": round(growth, 1),
        "mean_rate_per_s": round(
            (samples[-1]["scored"] - samples[0]["scored"])
            / max(1e-9, samples[-1]["t_s"] - samples[0]["t_s"]),
            1,
        )
        if len(samples) > 1
        else None,
        "max_lag_records": max((s["lag_records"] for s in samples), default=None),
    }
    (out / "soak.json").write_text(json.dumps({"summary": summary, "samples": samples}, indent=1))

    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    t = [s["t_s"] / 60 for s in samples]
    for ax, key, label in zip(
        axes,
        ("rss_mb", "rate_per_s", "lag_records"),
        ("worker RSS (MB)", "readings scored / s", "consumer lag (records)"),
        strict=True,
    ):
        ax.plot(t, [s[key] for s in samples])
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("minutes")
    axes[0].set_title(
        f"detector soak: {args.streams} streams at {args.rate:g} readings/s, "
        f"RSS +{growth:.1f} MB over the second half"
    )
    fig.tight_layout()
    fig.savefig(out / "soak.png", dpi=100)
    print(json.dumps(summary), flush=True)
    if growth > args.max_growth_mb:
        print(f"soak: RSS grew {growth:.1f} MB over the second half", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
