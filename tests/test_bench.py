"""`detector bench` runs, reports every figure as a same-run ratio and checks its targets.

No timing is asserted (shared machines are noisy); the checks are on structure and on the
arithmetic that ties each ratio to the figures it is made of.
"""

import json

import pytest
import torch

from detector.bench.report import check_targets
from detector.cli import main


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """The bench sets torch's thread count for the process; give other tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_bench_engine_decode_memory_json(tmp_path, capsys) -> None:
    out = tmp_path / "bench.json"
    argv = [
        "bench", "--sections", "engine,decode,memory", "--shapes", "sensor", "--streams", "64",
        "--seconds", "0.05", "--memory-streams", "2000", "--device", "cpu", "--json",
        "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    (row,) = printed["engine"]
    assert row["streams"] == 64 and row["device"] == "cpu"
    assert row["x_naive"] == pytest.approx(row["engine_per_s"] / row["naive_per_s"])
    assert row["of_bound"] == pytest.approx(row["engine_per_s"] / row["bound_per_s"])
    assert {(d["format"], d["features"]) for d in printed["decode"]} == {
        ("json", 8), ("json", 128), ("binary", 8), ("binary", 128)
    }  # fmt: skip
    (mem,) = printed["memory"]
    assert mem["payload_bytes_per_stream"] == 3072  # h, c (2 x 2 x 64) and window (64 x 8)
    assert mem["slab_bytes_per_stream"] >= 3072 and mem["rss_bytes_per_stream"] > 0
    assert "state_bytes_per_stream" in printed["targets"]
    assert printed["device"]["torch_threads"] == 1


def test_oversized_cases_are_skipped_with_the_reason(capsys) -> None:
    argv = ["bench", "--sections", "engine", "--shapes", "video512", "--streams", "100k",
            "--max-state-gb", "1", "--device", "cpu", "--json", "--out", ""]  # fmt: skip
    assert main(argv) == 0
    (row,) = json.loads(capsys.readouterr().out)["engine"]
    assert row["streams"] == 100_000 and row["skipped"].startswith("needs ~")


def test_targets_read_the_figures_they_name() -> None:
    results = {
        "device": {"device": "cpu"},
        "engine": [
            {"shape": "sensor", "streams": 4096, "x_naive": 45.0, "of_bound": 0.5},
            {"shape": "sensor", "streams": 1000, "x_naive": 1.0, "of_bound": 0.1},
        ],
        "kafka": {"of_ceiling": 0.9, "latency": {"p99_ms": 150.0}},
        "memory": [{"streams": 1_000_000, "rss_bytes_per_stream": 4000, "rss_total_bytes": 4e9}],
    }
    t = check_targets(results)
    assert t["engine_x_naive_at_4096"] == {"value": 45.0, "target": 30.0, "met": True}
    assert not t["engine_of_bound_at_4096"]["met"] and t["e2e_of_ceiling"]["met"]
    assert not t["e2e_p99_ms"]["met"]
    assert t["state_bytes_per_stream"]["met"] and t["rss_bytes_at_1m_streams"]["met"]
    assert "cuda_stream_steps_per_s" not in t


def test_bad_arguments_fail_with_a_clear_message(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "--sections", "engine,warp"])
    assert "unknown ['warp']" in capsys.readouterr().err
