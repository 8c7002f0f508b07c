"""Bench results: the targets they are held to, and the tables people read."""

from __future__ import annotations

import os
import platform

import torch
from rich.console import Console
from rich.table import Table

__all__ = ["device_info", "check_targets", "print_tables"]

# The performance targets, on a 2-core CPU machine (GPU: its own absolute target).
TARGETS = {
    "engine_x_naive_at_4096": 30.0,
    "engine_of_bound_at_4096": 0.60,
    "e2e_of_ceiling": 0.80,
    "e2e_p99_ms": 100.0,
    "state_bytes_per_stream": 4.5 * 1024,
    "rss_bytes_at_1m_streams": 6 * 1024**3,
    "cuda_stream_steps_per_s": 10e6,
}


def device_info(device: torch.device) -> dict[str, object]:
    info: dict[str, object] = {
        "device": str(device),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu": _cpu_name(),
        "cpu_count": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def check_targets(results: dict) -> dict[str, dict[str, object]]:
    """Each target this run measured: the figure, the target, and whether it is met."""
    out: dict[str, dict[str, object]] = {}

    def put(name: str, value: float | None, at_least: bool) -> None:
        if value is None:
            return
        goal = TARGETS[name]
        out[name] = {
            "value": value,
            "target": goal,
            "met": value >= goal if at_least else value <= goal,
        }

    cuda = str(results.get("device", {}).get("device", "cpu")).startswith("cuda")
    for row in results.get("engine", []):
        if row.get("shape") == "sensor" and row.get("streams") == 4096 and not cuda:
            put("engine_x_naive_at_4096", row["x_naive"], True)
            put("engine_of_bound_at_4096", row["of_bound"], True)
    if cuda:
        big = [r for r in results.get("engine", []) if r.get("streams", 0) >= 65536]
        if big:
            put("cuda_stream_steps_per_s", max(r["step_per_s"] for r in big), True)
    e2e = results.get("kafka")
    if e2e:
        put("e2e_of_ceiling", e2e["of_ceiling"], True)
        put("e2e_p99_ms", e2e["latency"]["p99_ms"], False)
    for row in results.get("memory", []):
        if "rss_bytes_per_stream" in row:
            put("state_bytes_per_stream", row["rss_bytes_per_stream"], False)
            if row["streams"] >= 1_000_000:
                put("rss_bytes_at_1m_streams", row["rss_total_bytes"], False)
    return out


def _k(x: float) -> str:
    return f"{x / 1e6:.2f} M" if x >= 1e6 else f"{x / 1e3:.1f} k"


def print_tables(results: dict, console: Console) -> None:
    d = results["device"]
    console.print(
        f"[bold]detector bench[/] on {d['device']} ({d.get('gpu') or d['cpu']}, "
        f"{d['cpu_count']} cores, torch {d['torch']}, {d['torch_threads']} torch thread(s))"
    )
    if results.get("engine"):
        kernels = sorted({r["kernel"] for r in results["engine"] if "kernel" in r})
        threads = sorted({r["score_threads"] for r in results["engine"] if "score_threads" in r})
        t = Table(
            title="engine only (readings/s; one reading per stream per wave; "
            f"model step: {', '.join(kernels) or '?'} kernel; "
            f"score threads: {', '.join(map(str, threads)) or '?'})"
        )
        for col in ("shape", "streams", "engine", "naive", "x naive", "step", "bound", "of bound"):
            t.add_column(col, justify="right")
        for r in results["engine"]:
            if "skipped" in r:
                t.add_row(r["shape"], f"{r['streams']:,}", f"skipped: {r['skipped']}", *[""] * 5)
                continue
            t.add_row(
                r["shape"],
                f"{r['streams']:,}",
                _k(r["engine_per_s"]),
                _k(r["naive_per_s"]),
                f"{r['x_naive']:.0f}x",
                _k(r["step_per_s"]),
                _k(r["bound_per_s"]),
                f"{r['of_bound']:.0%}",
            )
        console.print(t)
    if results.get("decode"):
        t = Table(title="decode (readings/s)")
        for col in ("format", "features", "decode_batch", "bare loop", "ratio"):
            t.add_column(col, justify="right")
        for r in results["decode"]:
            t.add_row(
                r["format"],
                str(r["features"]),
                _k(r["decode_per_s"]),
                _k(r["baseline_per_s"]),
                f"{r['ratio']:.2f}",
            )
        console.print(t)
    e2e = results.get("kafka")
    if e2e:
        lat = e2e["latency"]
        t = Table(title=f"end to end through Tansu ({e2e['streams']:,} streams)")
        for col in ("worker", "consume+decode", "of ceiling", "alerts", "p50", "p99"):
            t.add_column(col, justify="right")
        t.add_row(
            _k(e2e["worker_per_s"]) + "/s",
            _k(e2e["ceiling_per_s"]) + "/s",
            f"{e2e['of_ceiling']:.0%}",
            str(e2e["alerts_published"]),
            f"{lat['p50_ms']:.1f} ms" if lat["p50_ms"] is not None else "-",
            f"{lat['p99_ms']:.1f} ms" if lat["p99_ms"] is not None else "-",
        )
        console.print(t)
    if results.get("memory"):
        t = Table(title="state memory (sensor shape, window 64)")
        for col in ("streams", "payload/stream", "slabs/stream", "RSS/stream", "RSS total"):
            t.add_column(col, justify="right")
        for r in results["memory"]:
            if "error" in r:
                t.add_row(f"{r['streams']:,}", f"error: {r['error']}", "", "", "")
                continue
            t.add_row(
                f"{r['streams']:,}",
                f"{r['payload_bytes_per_stream']:,} B",
                f"{r['slab_bytes_per_stream']:,} B",
                f"{r['rss_bytes_per_stream']:,.0f} B",
                f"{r['rss_total_bytes'] / 1024**3:.2f} GiB",
            )
        console.print(t)
    targets = results.get("targets", {})
    if targets:
        t = Table(title="targets")
        for col in ("target", "measured", "goal", "met"):
            t.add_column(col, justify="right")
        for name, v in targets.items():
            t.add_row(
                name, f"{v['value']:,.3g}", f"{v['target']:,.3g}", "yes" if v["met"] else "NO"
            )
        console.print(t)
