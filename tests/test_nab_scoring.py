"""NAB v1.1 scoring: hand-computed cases, a literal port of NAB's sweeper, the real labels."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest

from detector import cli_nab_score
from detector.csvio import load_nab_windows, read_series
from detector.errors import DataError
from detector.nab_scoring import (
    PROFILES,
    NabFile,
    load_nab_results,
    nab_report,
    nab_report_detections,
    probation_length,
    sigma,
    sweep_scores,
    sweep_thresholds,
)

STD = PROFILES["standard"]


def _s(p: float) -> float:
    return -1.0 if p >= 3 else 2 / (1 + math.exp(5 * p)) - 1


def make_file(n: int, windows: list[tuple[int, int]], flags: list[int], name: str = "f"):
    """``n`` rows a minute apart, windows as inclusive row ranges, score 1 on ``flags`` rows."""
    ts = 1.4e9 + 60.0 * np.arange(n)
    scores = np.zeros(n)
    scores[flags] = 1.0
    return NabFile(name, ts, scores, [(ts[a], ts[b]) for a, b in windows])


def raw_at_one(files: list[NabFile], profile: str = "standard") -> dict:
    return nab_report(files, threshold=1.0)["profiles"][profile]


def test_sigma_and_probation():
    assert float(sigma(3.0)) == -1.0 and float(sigma(10.0)) == -1.0
    assert float(sigma(0.0)) == 0.0
    assert float(sigma(-1.0)) == pytest.approx(0.98661, abs=1e-5)
    assert probation_length(100) == 15 and probation_length(100_000) == 750


def test_perfect_detector_scores_100_and_nothing_scores_0():
    files = [make_file(100, [(30, 39), (70, 79)], [30, 70]), make_file(200, [(50, 69)], [50])]
    for name in PROFILES:
        assert raw_at_one(files, name)["normalised"] == pytest.approx(100.0)
    empty = [make_file(100, [(30, 39), (70, 79)], []), make_file(200, [(50, 69)], [])]
    for r in nab_report(empty)["profiles"].values():
        assert r["normalised"] == 0.0 and r["raw"] == r["null"] and r["fp"] == 0


def test_detection_before_any_window_costs_fp_weight():
    f = make_file(100, [(50, 59)], [20])
    for name, p in PROFILES.items():
        r = raw_at_one([f], name)
        assert r["raw"] == pytest.approx(-p.fn - p.fp)
        assert (r["fp"], r["tp"], r["windows_detected"]) == (1, 0, 0)


def test_detection_at_last_row_and_earliest_detection_counts_once():
    r = raw_at_one([make_file(100, [(50, 59)], [59])])
    assert r["raw"] == pytest.approx(_s(-1 / 10) / _s(-1))
    r = raw_at_one([make_file(100, [(50, 59)], [52, 57])])
    assert r["raw"] == pytest.approx(_s(-8 / 10) / _s(-1))
    assert (r["tp"], r["windows_detected"], r["fn"]) == (2, 1, 8)


def test_false_positive_after_window_decays():
    r = raw_at_one([make_file(100, [(50, 59)], [65])])
    assert r["raw"] == pytest.approx(-1.0 + _s(6 / 9) * 0.11)
    _, sweep, win = sweep_scores(make_file(100, [(50, 59)], []), STD)
    assert sweep[59 + 9] == pytest.approx(_s(1.0) * 0.11)
    assert sweep[59 + 27] == -0.11  # position 3: the full cost
    assert win[49] == -1 and win[50] == 0 and win[59] == 0 and win[60] == -1


def test_one_row_window_is_followed_by_full_fp_cost():
    _, sweep, _ = sweep_scores(make_file(100, [(50, 50)], []), STD)
    assert sweep[50] == pytest.approx(1.0)
    assert sweep[51] == -0.11


def test_probationary_rows_are_ignored():
    # n = 100: rows 0-14 are probationary; the first window lies wholly inside it.
    f = make_file(100, [(2, 5), (50, 59)], [3, 10])
    r = raw_at_one([f])
    assert r["windows"] == 1 and r["raw"] == r["null"] == -1.0
    assert r["tp"] + r["fp"] + r["fn"] + r["tn"] == 85


def test_profiles_weigh_fp_and_fn_differently():
    f = make_file(100, [(40, 49), (70, 79)], [20, 40])  # one FP, one hit, one miss
    assert raw_at_one([f], "standard")["normalised"] == pytest.approx(100 * 1.89 / 4)
    assert raw_at_one([f], "reward_low_FP_rate")["normalised"] == pytest.approx(100 * 1.78 / 4)
    assert raw_at_one([f], "reward_low_FN_rate")["normalised"] == pytest.approx(100 * 2.89 / 6)


def test_detections_must_be_binary():
    f = make_file(100, [(50, 59)], [50])
    assert nab_report_detections([f])["profiles"]["standard"]["normalised"] == 100.0
    f.scores[0] = 0.5
    with pytest.raises(DataError, match="0 or 1"):
        nab_report_detections([f])


def _nab_reference(files: list[NabFile], p) -> list[tuple[float, float]]:
    """A literal port of NAB's calcSweepScore + calcScoreByThreshold (windows on exact rows)."""
    rows = []
    for f in files:
        ts, wins = list(f.timestamps), list(f.windows)
        prob = min(math.floor(0.15 * len(ts)), 750)
        cur = name = width = right = prev_w = prev_r = None
        for i, (t, a) in enumerate(zip(ts, f.scores, strict=True)):
            if wins and t == wins[0][0]:
                cur = wins.pop(0)
                name, right = f"{f.name}|{cur[0]}", ts.index(cur[1])
                width = float(right - ts.index(cur[0]) + 1)
            if cur is not None:
                w = _s(-(right - i + 1) / width) * p.tp / _s(-1)
            else:
                w = _s(3.0 if prev_r is None else abs(prev_r - i) / (prev_w - 1)) * p.fp
            rows.append((a, w, name if i >= prob else "probationary"))
            if cur is not None and t == cur[1]:
                prev_r, prev_w, cur, name = i, width, None, None
    rows = sorted((r for r in rows if r[2] != "probationary"), key=lambda r: -r[0])
    parts = {"fp": 0.0} | {r[2]: -p.fn for r in rows if r[2] is not None}
    out, thr = [], 1.1
    for a, w, name in rows:
        if a != thr:
            out.append((thr, sum(parts.values())))
            thr = a
        if name is None:
            parts["fp"] += w
        else:
            parts[name] = max(parts[name], w)
    return out + [(thr, sum(parts.values()))]


def _random_files(seed: int) -> list[NabFile]:
    rng = np.random.default_rng(seed)
    files = []
    for k in range(3):
        n = int(rng.integers(20, 150))
        cuts = np.sort(rng.choice(n, 2 * int(rng.integers(0, 4)), replace=False))
        f = make_file(n, [(int(a), int(b)) for a, b in cuts.reshape(-1, 2)], [], f"f{k}")
        f.scores = np.round(rng.random(n), 1)  # coarse, so thresholds tie across rows
        files.append(f)
    return files


def _brute_force_raw(files: list[NabFile], p, threshold: float) -> float:
    """Corpus raw score at one threshold, straight from the rules."""
    total = 0.0
    for f in files:
        scorable, sweep, win = sweep_scores(f, p)
        det = scorable & (f.scores >= threshold)
        total += sweep[det & (win < 0)].sum()
        for k in np.unique(win[scorable & (win >= 0)]):
            hits = sweep[det & (win == k)]
            total += max(-p.fn, hits.max()) if hits.size else -p.fn
    return total


@pytest.mark.parametrize("seed", range(6))
def test_sweep_matches_nab_reference_and_brute_force(seed):
    files = _random_files(seed)
    for name, p in PROFILES.items():
        ref = _nab_reference(files, p)
        sw = sweep_thresholds(files, p)
        np.testing.assert_allclose(sw["raw"], [r for _, r in ref], atol=1e-9)
        np.testing.assert_allclose(sw["threshold"][1:], [t for t, _ in ref][1:])
        brute = [_brute_force_raw(files, p, t) for t in np.unique(sw["threshold"])]
        fixed = [nab_report(files, t, {name: p})["profiles"][name]["raw"] for t, _ in ref]
        np.testing.assert_allclose(fixed, [r for _, r in ref], atol=1e-9)
        best = nab_report(files, profiles={name: p})["profiles"][name]
        assert best["raw"] == pytest.approx(max(brute))
        assert best["raw"] == pytest.approx(max(r for _, r in ref))
        # Ties go to the highest threshold, as in NAB.
        assert best["threshold"] == max(t for t, r in ref if r >= best["raw"] - 1e-9)
        r_at = nab_report(files, best["threshold"], {name: p})["profiles"][name]
        assert r_at["raw"] == pytest.approx(best["raw"]) and r_at["tp"] == best["tp"]


def _nab_corpus(datasets) -> tuple[dict, list]:
    windows = load_nab_windows(datasets / "nab" / "labels" / "combined_windows.json")
    data = [
        (key, read_series(datasets / "nab" / "data" / key, preset="nab").timestamps)
        for key in sorted(windows)
    ]
    return windows, data


def test_real_nab_labels_oracle_scores_100(datasets):
    windows, data = _nab_corpus(datasets)
    oracle, zeros = [], []
    for key, ts in data:
        scores = np.zeros(len(ts))
        for start, _ in windows[key]:
            scores[np.flatnonzero(ts == start)[0]] = 1.0
        oracle.append(NabFile(key, ts, scores, windows[key]))
        zeros.append(NabFile(key, ts, np.zeros(len(ts)), windows[key]))
    report = nab_report(oracle)
    assert report["windows"] == 116 and report["files"] == 58
    for r in report["profiles"].values():
        assert r["normalised"] == pytest.approx(100.0, abs=1e-9)
        assert r["windows_detected"] == 116 and r["fp"] == 0
    for r in nab_report(zeros)["profiles"].values():
        assert r["normalised"] == 0.0


# A tiny NAB results tree ------------------------------------------------------------------


def write_results(tmp_path, detector="mydet", score_col="anomaly_score"):
    root = tmp_path / "results" / detector
    (root / "catA").mkdir(parents=True)
    stamps = [f"2015-01-01 00:{m:02d}:00" for m in range(40)]
    for fname, hit in (("one", 20), ("two_parts", 30)):
        lines = [f"timestamp,value,{score_col},label"]
        lines += [f"{t},{i},{1.0 if i == hit else 0.1},0" for i, t in enumerate(stamps)]
        (root / "catA" / f"{detector}_{fname}.csv").write_text("\n".join(lines) + "\n")
    (root / f"{detector}_standard_scores.csv").write_text("Detector,Score\nmydet,1\n")
    windows = {
        "catA/one.csv": [["2015-01-01 00:20:00.000000", "2015-01-01 00:24:00.000000"]],
        "catA/two_parts.csv": [["2015-01-01 00:30:00.000000", "2015-01-01 00:34:00.000000"]],
    }
    labels = tmp_path / "windows.json"
    labels.write_text(json.dumps(windows))
    return root, labels


def test_load_nab_results(tmp_path):
    root, labels = write_results(tmp_path)
    files = load_nab_results(root, labels)
    assert [f.name for f in files] == ["catA/one.csv", "catA/two_parts.csv"]
    assert len(files[0].scores) == 40 and files[0].scores[20] == 1.0
    assert nab_report(files)["profiles"]["standard"]["normalised"] == pytest.approx(100.0)


def test_load_nab_results_errors(tmp_path):
    root, labels = write_results(tmp_path)
    with pytest.raises(DataError, match="pass"):
        load_nab_results(root.parent, labels)
    (root / "catA" / "mydet_other.csv").write_text("timestamp,anomaly_score\n2015-01-01,0\n")
    with pytest.raises(DataError, match="no entry"):
        load_nab_results(root, labels)
    root2, labels2 = write_results(tmp_path / "b", score_col="score")
    with pytest.raises(DataError, match="anomaly_score"):
        load_nab_results(root2, labels2)
    with pytest.raises(DataError, match="no such"):
        load_nab_results(tmp_path / "nope", labels)


def test_cli_nab_score(tmp_path, capsys):
    root, labels = write_results(tmp_path)
    parser = argparse.ArgumentParser()
    cli_nab_score.register(parser.add_subparsers())
    args = parser.parse_args(["nab-score", str(root), "--labels", str(labels), "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["detector"] == "mydet"
    assert out["profiles"]["standard"]["normalised"] == pytest.approx(100.0)
    assert [(f["file"], f["found"], f["missed"]) for f in out["by_file"]] == [
        ("catA/one.csv", 1, []),
        ("catA/two_parts.csv", 1, []),
    ]
    args = parser.parse_args(["nab-score", str(root), "--labels", str(labels), "--threshold", "2"])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "reward_low_FN_rate" in text and "ARTime" in text
    assert "where the NAB standard score is lost" in text  # nothing detected: both files lose
