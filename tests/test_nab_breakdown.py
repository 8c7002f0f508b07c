"""A file's part of a NAB score: the parts add up to the corpus score and say how it was lost."""

from __future__ import annotations

import pytest

from detector.nab_breakdown import file_breakdown, worst_files
from detector.nab_scoring import PROFILES, nab_report
from tests.test_nab_scoring import _random_files, make_file

STD = PROFILES["standard"]


@pytest.mark.parametrize("seed", range(6))
def test_the_files_parts_add_up_to_the_corpus_score_at_every_threshold(seed):
    files = _random_files(seed)
    for name, profile in PROFILES.items():
        for threshold in (0.0, 0.3, 0.5, 0.9, 1.0, 1.1, None):
            report = nab_report(files, threshold, {name: profile})["profiles"][name]
            parts = file_breakdown(files, profile, report["threshold"])
            assert sum(p["raw"] for p in parts) == pytest.approx(report["raw"], abs=1e-9)
            assert sum(p["found"] for p in parts) == report["windows_detected"]
            assert sum(p["windows"] for p in parts) == report["windows"]
            assert sum(p["fp"] for p in parts) == report["fp"]


def test_a_file_says_which_windows_it_missed_and_why():
    # Rows 0-14 are probation. Window A (30-39) is found at its first row; window B (70-79) is
    # missed, with a detection at row 65, within B's width before it, and a weak score inside.
    f = make_file(100, [(30, 39), (70, 79)], [30, 65], "one")
    f.scores[75] = 0.4
    (part,) = file_breakdown([f], STD, 1.0)
    assert (part["windows"], part["found"], part["fp"]) == (2, 1, 1)
    assert part["reward"] == pytest.approx(STD.tp)  # found at its first row: the full reward
    assert part["missed_cost"] == -1.0 and part["fp_cost"] < 0
    (missed,) = part["missed"]
    assert missed["rows"] == 10 and missed["max_score"] == pytest.approx(0.4)
    assert missed["detected_just_before"] is True
    assert missed["start"] == f.timestamps[70] and missed["end"] == f.timestamps[79]
    # A detection further back than the window's width does not count as just before it.
    g = make_file(100, [(30, 39), (70, 79)], [30, 55], "two")
    assert file_breakdown([g], STD, 1.0)[0]["missed"][0]["detected_just_before"] is False


def test_worst_files_rank_by_shortfall_and_leave_out_perfect_ones():
    perfect = make_file(100, [(30, 39)], [30], "perfect")
    missed = make_file(100, [(30, 39), (70, 79)], [30], "missed one")
    noisy = make_file(100, [(30, 39)], [30, 50, 90], "two false")
    parts = file_breakdown([perfect, missed, noisy], STD, 1.0)
    worst = worst_files(parts, STD)
    assert [w["file"] for w in worst] == ["missed one", "two false"]
    assert worst[0]["shortfall"] == pytest.approx(2.0 - parts[1]["raw"])
    assert worst_files(parts, STD, k=1)[0]["file"] == "missed one"
