"""docs/input-handling.md cannot go stale: its table names every reject reason and engine
status, and every metric it cites exists."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from detector.codec import REJECT_REASONS
from detector.engine import STATUS
from detector.metrics import REASONS, Metrics

DOC = Path(__file__).resolve().parents[1] / "docs" / "input-handling.md"


def _readings_table() -> list[list[str]]:
    text = DOC.read_text(encoding="utf-8").split("## Readings", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[1:]]


def test_table_names_every_reject_reason_and_status() -> None:
    named = {m for row in _readings_table() for m in re.findall(r"`(\w+)`", row[2])}
    assert set(REJECT_REASONS) | set(STATUS[1:]) <= named
    assert named <= set(REASONS), named - set(REASONS)  # and nothing the code does not have


def test_rejected_rows_name_a_counted_reason() -> None:
    for outcome, reason in ((row[1], row[2]) for row in _readings_table()):
        if outcome.startswith("rejected"):
            assert re.fullmatch(r"`\w+`", reason), (outcome, reason)


def test_cited_metrics_exist() -> None:
    cited = set(re.findall(r"detector_\w+", DOC.read_text(encoding="utf-8")))
    exported = {s.name for m in Metrics(CollectorRegistry()).registry.collect() for s in m.samples}
    assert cited and cited <= exported, cited - exported
