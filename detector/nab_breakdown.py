"""Where a NAB score is won and lost: each file's part of the corpus raw score at one threshold.

NAB reports one number for a corpus. To improve it one needs to know which files cost the most
and how: windows missed (``-fnWeight`` each), false detections (their sweep penalties), or
windows found late (a reward well under ``tpWeight``). The parts add up to the corpus raw score
of :func:`detector.nab_scoring.nab_report` at the same threshold, to rounding.

Each missed window also says what the detector's scores did inside it: the highest score there
(under the threshold, or the window would not be missed) and whether a detection shortly before
the window (within its own width) had fired, which NAB counts as a false positive and a detector
that reports an event once will not repeat inside the window.
"""

from __future__ import annotations

import numpy as np

from detector.nab_scoring import PROFILES, NabFile, Profile, sweep_scores

__all__ = ["file_breakdown", "with_breakdown", "worst_files"]


def _missed(file: NabFile, first: int, last: int, flagged: np.ndarray) -> dict:
    width = last - first + 1
    before = flagged[max(0, first - width) : first]
    return {
        "start": float(file.timestamps[first]),
        "end": float(file.timestamps[last]),
        "rows": int(width),
        "max_score": float(file.scores[first : last + 1].max()),
        "detected_just_before": bool(before.any()),
    }


def file_breakdown(files: list[NabFile], profile: Profile, threshold: float) -> list[dict]:
    """Each file's ``raw`` part of the corpus score when rows with ``score >= threshold`` are
    detections: ``found`` and ``windows`` (with scorable rows), ``reward`` (the found windows'
    sweep scores), ``missed_cost`` (``-fn`` per missed window), ``fp`` (detections outside
    windows) and ``fp_cost``, and ``missed``: one dict per missed window (see the module doc)."""
    out = []
    for f in files:
        scorable, sweep, window_id = sweep_scores(f, profile)
        flagged = scorable & (f.scores >= threshold)
        false = flagged & (window_id < 0)
        reward, found, windows, missed = 0.0, 0, 0, []
        for k in range(int(window_id.max(initial=-1)) + 1):
            rows = np.flatnonzero(window_id == k)  # a window is one run of rows
            first, last = int(rows[0]), int(rows[-1])
            if not scorable[last]:
                continue  # wholly in probation: NAB does not count it
            hits = rows[flagged[rows]]  # flagged rows are scorable
            windows += 1
            if len(hits):
                found += 1
                reward += max(float(sweep[hits[0]]), -profile.fn)
            else:
                missed.append(_missed(f, first, last, flagged))
        fp_cost = float(sweep[false].sum())
        missed_cost = -profile.fn * len(missed)
        out.append(
            {
                "file": f.name,
                "windows": windows,
                "found": found,
                "reward": reward,
                "missed_cost": missed_cost,
                "fp": int(false.sum()),
                "fp_cost": fp_cost,
                "raw": reward + missed_cost + fp_cost,
                "missed": missed,
            }
        )
    return out


def with_breakdown(files: list[NabFile], report: dict) -> dict:
    """``report`` (from :func:`detector.nab_scoring.nab_report` on ``files``) with ``by_file``:
    each file's part of the standard profile's raw score at that profile's threshold."""
    threshold = report["profiles"]["standard"]["threshold"]
    return {**report, "by_file": file_breakdown(files, PROFILES["standard"], threshold)}


def worst_files(breakdown: list[dict], profile: Profile, k: int = 10) -> list[dict]:
    """The ``k`` files furthest below a perfect detector's part (``tp`` per window, no false
    detection), largest shortfall first; ties keep file order."""
    short = [profile.tp * b["windows"] - b["raw"] for b in breakdown]
    order = sorted(range(len(breakdown)), key=lambda i: -short[i])
    return [dict(breakdown[i], shortfall=short[i]) for i in order[:k] if short[i] > 1e-12]
