"""The development benchmark: simulated labelled streams for tuning without NAB or SKAB.

Every scoring and alerting default that was *tuned* (rather than set by reasoning) was chosen on
this set, never on a test benchmark's labels (see docs/accuracy.md). It is made by our own
simulators with fixed seeds, so the same command writes the same bytes:

    python scripts/devset.py generate --out /tmp/devset
    python scripts/devset.py generate --out /tmp/devset1 --seed 1
    python scripts/devset.py compare --dir /tmp/devset --dir /tmp/devset1 --variant ...

Six simulated groups, each a ``train/`` directory (anomaly-free) and a ``test/`` directory
(labelled anomalies, in the test part only), each readable by
``detector evaluate --train DIR/<group>/train --test DIR/<group>/test``:

* ``uni``: univariate streams of many shapes, one column ``value``: seasonal or not (periods of
  48 to 288 rows, one or two harmonics), trending or random-walk drift, Gaussian, heavy-tailed
  (Student t), autocorrelated (AR(1)) or count (Poisson) noise, noise levels from a tenth to
  the whole of the signal's spread;
* ``telemetry``: 5-channel streams built the same way from two shared latent factors, channels
  of different noise kinds side by side;
* ``sensors``: the sensor-fleet simulator (``detector simulate sensors``), 4 channels;
* ``driven``: the sensor-fleet simulator with 2 setpoint covariates driving 3 targets
  (evaluate with ``--covariates setpoint_0,setpoint_1``);
* ``regimes``: built as ``telemetry``, with two long faults (150-600 rows) per stream;
* ``bursty``: built as ``uni``, plus routine bursts in training and test alike (a burst every
  150 to 400 rows on average, a median 4 sigmas high, decaying over a few rows), as in request
  counts, social-media volumes or disk writes: a stream whose normal includes excursions larger
  than many anomalies. A detector that reports each burst anew drowns its real detections.
  Its test parts are three times as long (7,200 rows, 3 anomalies), like NAB's files.

A seventh simulated group, ``shapes``, is diagnostic and outside the dev score (``compare``
reads it only with ``--groups shapes``): seasonal streams whose anomalies each last one cycle
and stay inside the usual range (a missing, mirrored, double-speed or half-phase cycle), changes
of shape rather than size.

With ``generate --datasets ../shared/datasets``, two more groups put the injected anomalies on
real backgrounds taken from the benchmarks' training rows only, read without labels:
``skab_free`` (SKAB's anomaly-free run) and ``nab_probation`` (NAB's probationary rows).

Anomalies are the simulators' injectors (``simulators.injectors``): spikes, level shifts,
drifts, stuck values, noise bursts, correlation breaks (multivariate groups) and dropouts.
Generated data is never committed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from detector.alerts import replay
from detector.baselines import PersistenceForecaster
from detector.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from detector.cli_evaluate import PROFILES
from detector.csvio import read_dataset, read_series, write_series
from detector.detection_metrics import evaluate_streams, event_counts, events
from detector.engine import EngineConfig
from detector.evaluation import (
    EvalSpec,
    StreamScores,
    continued,
    discord_score,
    discord_streams,
    metrics_for,
    nab_at_optimal_threshold,
    score_streams,
)
from detector.level_tail import level_tails
from detector.nab_scoring import probation_length
from detector.scoring import evidence_of_score, surprise_log10
from detector.series import Series
from detector.training import train
from simulators.anomalies import SENSOR_KINDS, AnomalySpec, inject_anomalies
from simulators.injectors import Scale
from simulators.sensors import DEFAULT_START, SensorFleetConfig, simulate_sensors

# New groups go last: a group's index seeds its streams, so the others keep their bytes.
GROUPS = ("uni", "telemetry", "sensors", "driven", "regimes", "bursty")
REAL_GROUPS = ("skab_free", "nab_probation")  # with `generate --datasets DIR` only
COVARIATES = {"driven": ("setpoint_0", "setpoint_1")}
TRAIN_ROWS, TEST_ROWS, ANOMALIES = 1200, 2400, 3
UNI_KINDS = tuple(k for k in SENSOR_KINDS if k != "correlation_break")
# `regimes`: faults that last, as in a process plant (SKAB's valve and rotor faults run for
# hundreds of readings) or a service whose behaviour changes for hours (NAB): two per stream.
REGIME_DURATIONS = {
    "level_shift": (200, 600),
    "drift": (200, 600),
    "noise_burst": (150, 500),
    "correlation_break": (200, 600),
    "stuck": (150, 400),
}
REGIME_ANOMALIES = 2
# `bursty`: test parts three times as long, as NAB's files are (4,000 to 22,000 rows, a few
# windows each): false detections then cost what they cost there.
BURSTY_TEST_ROWS = 3 * TEST_ROWS
# `shapes` (stage 25): a diagnostic group, written by `generate` but outside the dev score and
# outside `compare`'s default groups (`--groups shapes` reads it). Each anomaly lasts one cycle
# and stays inside the stream's usual range: it changes the pattern's shape, not its size.
SHAPE_GROUP = "shapes"
SHAPE_KINDS = ("missing_cycle", "mirrored_cycle", "double_speed", "half_phase")


def _noise(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    """Unit-variance noise of ``kind``."""
    if kind == "t":  # heavy tails: routine outliers that are not anomalies
        return rng.standard_t(3, n) / np.sqrt(3.0)
    if kind == "ar":
        phi = rng.uniform(0.5, 0.9)
        e = rng.standard_normal(n) * np.sqrt(1 - phi**2)
        out = np.empty(n)
        out[0] = rng.standard_normal()
        for i in range(1, n):
            out[i] = phi * out[i - 1] + e[i]
        return out
    return rng.standard_normal(n)


def _latent(rng: np.random.Generator, n: int) -> np.ndarray:
    """One latent factor in standard units: seasonality, trend or drift, or nothing much."""
    t = np.arange(n, dtype=np.float64)
    out = np.zeros(n)
    if rng.random() < 0.75:
        period = float(rng.choice([48, 96, 144, 288]))
        out += rng.uniform(0.7, 1.5) * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
        if rng.random() < 0.5:  # a second harmonic: a sharper daily shape
            out += rng.uniform(0.2, 0.6) * np.sin(4 * np.pi * t / period + rng.uniform(0, 6.3))
    trend = rng.choice(["none", "linear", "walk"], p=[0.4, 0.3, 0.3])
    if trend == "linear":
        out += rng.uniform(-1.5, 1.5) * t / n
    elif trend == "walk":
        walk = np.cumsum(rng.standard_normal(n)) * 0.02
        out += walk - walk[0]
    return out


def _custom(
    name: str, features: int, rng: np.random.Generator, test_rows: int = TEST_ROWS
) -> tuple[np.ndarray, Scale]:
    """``(TRAIN_ROWS + test_rows, features)`` clean values of one stream, and its scale."""
    n = TRAIN_ROWS + test_rows
    latents = np.stack([_latent(rng, n) for _ in range(2 if features > 1 else 1)], axis=1)
    loadings = rng.standard_normal((latents.shape[1], features))
    loadings /= np.linalg.norm(loadings, axis=0, keepdims=True)
    signal = latents @ loadings
    values = np.empty((n, features))
    sigma, noise_sd = np.empty(features), np.empty(features)
    for j in range(features):
        spread = max(float(signal[:TRAIN_ROWS, j].std()), 0.3)
        kind = rng.choice(["gauss", "t", "ar", "count"], p=[0.4, 0.25, 0.2, 0.15])
        ratio = 10.0 ** rng.uniform(-1.0, 0.0)  # noise sd from 0.1 to 1 of the signal spread
        scale, offset = 10.0 ** rng.uniform(-2, 3), rng.uniform(2.0, 10.0)
        if kind == "count":  # a count metric (requests per interval): Poisson around a rate
            rate = rng.uniform(5.0, 50.0)
            lam = rate * np.exp(0.4 * signal[:, j] / spread)
            values[:, j] = rng.poisson(lam).astype(np.float64)
            sigma[j], noise_sd[j] = float(values[:TRAIN_ROWS, j].std()), float(np.sqrt(rate))
            continue
        sd = ratio * spread
        values[:, j] = scale * (offset + signal[:, j] + sd * _noise(rng, str(kind), n))
        sigma[j] = scale * float(np.sqrt(spread**2 + sd**2))
        noise_sd[j] = scale * sd
    return values, Scale(sigma=sigma, noise=noise_sd)


def _split(
    name: str,
    t: np.ndarray,
    values: np.ndarray,
    columns: tuple[str, ...],
    targets: int,
    kinds: tuple[str, ...],
    scale: Scale,
    rng: np.random.Generator,
    count: int = ANOMALIES,
    durations: dict[str, tuple[int, int]] | None = None,
    train_rows: int = TRAIN_ROWS,
) -> tuple[Series, Series, list]:
    """Train part (the first ``train_rows``) clean; anomalies injected into the test part only."""
    n = train_rows
    train = Series(name, t[:n], values[:n].copy(), columns, np.zeros(n, np.uint8))
    test_values = values[n:].copy()
    labels, specs = inject_anomalies(
        test_values,
        t[n:],
        name,
        columns,
        np.arange(targets),
        count,
        kinds,
        rng,
        scale,
        durations,
    )
    return train, Series(name, t[n:], test_values, columns, labels), specs


def _scale_of(values: np.ndarray) -> Scale:
    """A real stream's scale for the injectors: its spread, and its noise as read from first
    differences (``sd(diff) / sqrt(2)`` is the noise sd of a smooth signal plus white noise)."""
    sigma = np.maximum(np.nanstd(values, axis=0), 1e-9)
    noise = np.maximum(np.nanstd(np.diff(values, axis=0), axis=0) / np.sqrt(2.0), 1e-9)
    return Scale(sigma=sigma, noise=np.minimum(noise, sigma))


def _skab_free_group(datasets: Path, seed: int) -> list[tuple]:
    """SKAB's ``anomaly-free.csv`` cut into 3 streams; each trains on its first 1000 rows and
    is tested on the rest (about 2100 rows) with 3 anomalies."""
    free = read_series(datasets / "skab" / "data" / "anomaly-free" / "anomaly-free.csv", "skab")
    out = []
    for k, part in enumerate(np.array_split(np.arange(len(free)), 3)):
        rng = np.random.default_rng([seed, 100, k])
        values, t = free.values[part], free.timestamps[part]
        name, cols = f"skab-free-{k}", tuple(free.columns)
        scale = _scale_of(values[:1000])
        out.append(
            _split(name, t, values, cols, len(cols), SENSOR_KINDS, scale, rng, train_rows=1000)
        )
    return out


def _nab_probation_group(datasets: Path, seed: int) -> list[tuple]:
    """Each NAB file's probationary rows (which NAB's protocol gives to fitting and never
    scores); the first 60% train, the rest (up to 300 rows) is tested with one anomaly."""
    out = []
    for k, f in enumerate(sorted((datasets / "nab" / "data").glob("*/*.csv"))):
        s = read_series(f, "nab", name=f"nab-{k:02d}")  # values only: no label is read
        rows = int(probation_length(len(s)))
        fit = int(0.6 * rows)
        rng = np.random.default_rng([seed, 101, k])
        values, t = s.values[:rows], s.timestamps[:rows]
        scale = _scale_of(values[:fit])
        out.append(_split(s.name, t, values, ("value",), 1, UNI_KINDS, scale, rng, 1, None, fit))
    return out


def _real_groups(datasets: Path, seed: int) -> dict[str, list[tuple]]:
    """Groups on real backgrounds, from the benchmarks' *training* data only, read without
    labels. The simulators' anomalies are injected into them, so the noise, tails, quantisation
    and drift are real, and so are the false alerts they cause."""
    return {
        "skab_free": _skab_free_group(datasets, seed),
        "nab_probation": _nab_probation_group(datasets, seed),
    }


def _bursts(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Routine positive bursts: Poisson arrivals (one per 150 to 400 rows on average), heights
    log-normal around 4 ``sigma``, each decaying exponentially over 1 to 4 rows."""
    out = np.zeros(n)
    gap, tau = rng.uniform(150.0, 400.0), rng.uniform(1.0, 4.0)
    decay = np.exp(-np.arange(int(6 * tau) + 1) / tau)
    for start in np.flatnonzero(rng.random(n) < 1.0 / gap):
        height = sigma * 4.0 * np.exp(0.7 * rng.standard_normal())
        end = min(start + len(decay), n)
        out[start:end] += height * decay[: end - start]
    return out


def _custom_group(group: str, streams: int, features: int, seed: int) -> list[tuple]:
    out = []
    columns = ("value",) if features == 1 else tuple(f"m{j}" for j in range(features))
    kinds = UNI_KINDS if features == 1 else SENSOR_KINDS
    count, durations = ANOMALIES, None
    if group == "regimes":
        kinds, count, durations = tuple(REGIME_DURATIONS), REGIME_ANOMALIES, REGIME_DURATIONS
    for s in range(streams):
        rng = np.random.default_rng([seed, GROUPS.index(group), s])
        name = f"{group}-{s:02d}"
        values, scale = _custom(
            name, features, rng, BURSTY_TEST_ROWS if group == "bursty" else TEST_ROWS
        )
        if group == "bursty":
            values[:, 0] += _bursts(rng, len(values), float(scale.sigma[0]))
        t = DEFAULT_START + 300.0 * np.arange(len(values))
        out.append(_split(name, t, values, columns, features, kinds, scale, rng, count, durations))
    return out


def _cycle(rng: np.random.Generator, period: int):
    """A daily-like profile of ``period`` rows: high for part of the cycle (a smooth step up and
    down, like a service's working hours), with a second harmonic on top; about unit range."""
    day, sharp, phase = rng.uniform(0.3, 0.6), rng.uniform(8.0, 30.0), rng.uniform(0.0, 1.0)

    def profile(t: np.ndarray) -> np.ndarray:
        x = (t / period + phase) % 1.0
        up = 1.0 / (1.0 + np.exp(-sharp * (x - 0.2)))
        down = 1.0 / (1.0 + np.exp(-sharp * (x - 0.2 - day)))
        return up - down + 0.25 * np.sin(4.0 * np.pi * x)

    return profile


def _reshape(profile, kind: str, t: np.ndarray, period: int) -> np.ndarray:
    """One cycle ``t`` of ``profile`` changed in shape by ``kind`` (one of SHAPE_KINDS)."""
    mean = float(profile(np.arange(period, dtype=np.float64)).mean())
    if kind == "missing_cycle":  # the pattern stops for a cycle: flat at its mean
        return np.full(len(t), mean)
    if kind == "mirrored_cycle":  # high when it should be low
        return 2.0 * mean - profile(t)
    if kind == "double_speed":  # two cycles in the time of one
        return profile(t[0] + 2.0 * (t - t[0]))
    return profile(t + period / 2.0)  # half_phase: the right values at the wrong time


def _shape_group(seed: int, streams: int = 8) -> list[tuple]:
    """Seasonal streams (periods of 96 to 288 rows, noise 3-15% of the range) whose test parts
    hold three anomalies of shape, one cycle each, separated by at least half a cycle."""
    out = []
    for s in range(streams):
        rng = np.random.default_rng([seed, 200, s])
        period = int(rng.choice([96, 144, 288]))
        profile = _cycle(rng, period)
        n = TRAIN_ROWS + TEST_ROWS
        t = np.arange(n, dtype=np.float64)
        clean = profile(t)
        slots = (TEST_ROWS - period) // (2 * period)  # two cycles each: an anomaly and a gap
        chosen = np.sort(rng.choice(slots, ANOMALIES, replace=False))
        name = f"{SHAPE_GROUP}-{s:02d}"
        stamps = DEFAULT_START + 300.0 * t
        labels = np.zeros(n, np.uint8)
        specs = []
        for k, slot in enumerate(chosen):
            a = TRAIN_ROWS + 2 * period * int(slot) + int(rng.integers(0, period // 2))
            b = a + period
            kind = SHAPE_KINDS[(s + k) % len(SHAPE_KINDS)]
            clean[a:b] = _reshape(profile, kind, t[a:b], period)
            labels[a:b] = 1
            start, end = a - TRAIN_ROWS, b - TRAIN_ROWS  # indices in the test part
            specs.append(AnomalySpec(name, kind, start, end, stamps[a], stamps[b - 1], ("value",)))
        noise, level = rng.uniform(0.03, 0.15), rng.uniform(10.0, 100.0)
        values = level * (1.0 + clean + noise * rng.standard_normal(n))[:, None]
        n0 = TRAIN_ROWS
        train = Series(name, stamps[:n0], values[:n0], ("value",), labels[:n0])
        test = Series(name, stamps[n0:], values[n0:], ("value",), labels[n0:])
        out.append((train, test, specs))
    return out


def _sensor_group(group: str, streams: int, features: int, covariates: int, seed: int):
    """The fleet simulator: an anomaly-free training run, then the test run that follows it."""
    base = SensorFleetConfig(
        streams=streams,
        features=features,
        covariates=covariates,
        seed=seed + 100 * GROUPS.index(group),
        interval_s=60.0,
    )
    train = simulate_sensors(dataclasses.replace(base, length=TRAIN_ROWS, anomalies_per_stream=0))
    test = simulate_sensors(
        dataclasses.replace(
            base,
            length=TEST_ROWS,
            anomalies_per_stream=ANOMALIES,
            start=DEFAULT_START + 60.0 * TRAIN_ROWS,
        )
    )
    return [
        (dataclasses.replace(a, labels=np.zeros(len(a), np.uint8)), b, specs)
        for a, b, specs in zip(
            train.series,
            test.series,
            [[x for x in test.anomalies if x.stream == b.name] for b in test.series],
            strict=True,
        )
    ]


def generate(out: Path, seed: int = 0, datasets: Path | None = None) -> None:
    """Write every group's ``train/`` and ``test/`` CSVs below ``out``; with ``datasets`` (the
    directory holding ``nab/`` and ``skab/``) also the groups on real backgrounds."""
    groups = {
        "uni": _custom_group("uni", 12, 1, seed),
        "telemetry": _custom_group("telemetry", 5, 5, seed),
        "sensors": _sensor_group("sensors", 4, 4, 0, seed),
        "driven": _sensor_group("driven", 4, 3, 2, seed),
        "regimes": _custom_group("regimes", 6, 4, seed),
        "bursty": _custom_group("bursty", 8, 1, seed),
        SHAPE_GROUP: _shape_group(seed),
    }
    if datasets is not None:
        groups |= _real_groups(datasets, seed)
    kinds: dict[str, int] = {}
    for group, pairs in groups.items():
        anomalies = []
        for fit, test, specs in pairs:
            for part, s in (("train", fit), ("test", test)):
                write_series(s, out / group / part / f"{s.name}.csv")
            anomalies += [a.to_dict() for a in specs]
        for a in anomalies:
            kinds[a["kind"]] = kinds.get(a["kind"], 0) + 1
        text = json.dumps({"anomalies": anomalies}, indent=2) + "\n"
        (out / group / "anomalies.json").write_text(text)
    print(
        f"dev set written to {out}: "
        + ", ".join(f"{g} {len(p)} streams" for g, p in groups.items())
        + "; anomalies: "
        + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
    )


def _value(text: str):
    low = text.lower()
    if low in ("true", "on", "false", "off"):
        return low in ("true", "on")
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


FORECASTERS = ("lstm", "persistence", "ensemble", "discord", "lstm+discord")
PARTNERS = {"ensemble": "persistence", "lstm+discord": "discord"}  # the LSTM's, per forecaster


def _variant_items(text: str) -> tuple[str, list[tuple[str, str]]]:
    """``name:key=value,...`` → ``(name, [(key, value), ...])``, stripped."""
    name, _, spec = text.partition(":")
    items = [item.partition("=") for item in filter(None, spec.split(","))]
    return name, [(key.strip(), value.strip()) for key, _, value in items]


def parse_variant(text: str, base: EngineConfig | None = None) -> tuple[str, EngineConfig]:
    """``name:scorer.tail_clip=5,alerts.quiet=0`` → ``(name, EngineConfig)`` off ``base``; a
    ``forecaster=`` item is read by :func:`variant_forecaster`."""
    base = base or EngineConfig(device="cpu")
    name, items = _variant_items(text)
    parts: dict[str, dict] = {"scorer": {}, "alerts": {}}
    for key, value in items:
        if key == "forecaster":
            continue
        section, _, field = key.partition(".")
        if section not in parts or not field:
            raise SystemExit(
                f"variant {name!r}: expected scorer.FIELD=V, alerts.FIELD=V or forecaster=NAME"
            )
        parts[section][field] = _value(value)
    return name, dataclasses.replace(
        base,
        scorer=dataclasses.replace(base.scorer, **parts["scorer"]),
        alerts=dataclasses.replace(base.alerts, **parts["alerts"]),
    )


def variant_forecaster(text: str) -> str:
    """The variant's forecaster: ``lstm`` (the group's model, the default), ``persistence``
    (the last reading, through the same scorer and the model's scalers and tails: what the LSTM
    adds over no model at all), ``ensemble`` (both, see :func:`ensemble_streams`),
    ``discord`` (no model: ``detector evaluate``'s shape baseline, :mod:`detector.discord`) or
    ``lstm+discord`` (the LSTM with the discord as its partner, as ``ensemble`` pairs it with
    persistence)."""
    name, items = _variant_items(text)
    chosen = [value for key, value in items if key == "forecaster"]
    if len(chosen) > 1 or (chosen and chosen[0] not in FORECASTERS):
        raise SystemExit(f"variant {name!r}: forecaster= takes one of {', '.join(FORECASTERS)}")
    return chosen[0] if chosen else "lstm"


def _forecaster(kind: str, ckpt: Checkpoint) -> PersistenceForecaster | None:
    """The model to score with in place of the checkpoint's (None: the checkpoint's own)."""
    if kind == "persistence":
        return PersistenceForecaster(ckpt.model.args.n_inputs, len(ckpt.targets))
    return None


def either_score(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per reading, the score of the stronger of two detectors' evidence, Bonferroni-corrected
    for asking two (``2 min(p_a, p_b)``); neutral (0) where neither has evidence."""
    e = np.maximum(evidence_of_score(a), evidence_of_score(b)) - np.log10(2.0) / 10.0
    return surprise_log10(-10.0 * np.maximum(e, 0.0))


def ensemble_streams(
    ckpt: Checkpoint,
    series: list[Series],
    engine: EngineConfig,
    warm: list[Series],
    partner: str = "persistence",
) -> list[StreamScores]:
    """The LSTM and a partner as one detector (issue 9's "ensemble with a cheap statistical
    score"): persistence through its own engine, or the discord (:func:`discord_score`, scaled
    by the training rows); their scores are combined per reading by :func:`either_score`, and
    the engine's alert rules run on the result (:func:`detector.alerts.replay`), from the state
    left by the readings of the ``warm`` streams that ``series`` continue, as
    :func:`score_streams` starts from it. A probe, not an engine feature: a worker would need a
    second state per stream."""
    # Each stream read whole, its training rows first: the state they leave is the state
    # score_streams(warm=...) starts from, in one pass instead of two.
    before = {p.name: p for p in continued(warm, series)}
    whole = [
        Series(
            s.name,
            np.concatenate([before[s.name].timestamps, s.timestamps]),
            np.concatenate([before[s.name].select(s.columns), s.values]),
            s.columns,
        )
        if s.name in before
        else s
        for s in series
    ]
    lstm = score_streams(ckpt, whole, engine)
    if partner == "persistence":
        others = [
            o.score for o in score_streams(ckpt, whole, engine, model=_forecaster(partner, ckpt))
        ]
    elif partner == "discord":
        others = [
            discord_score(ckpt, w.name, w.select(list(ckpt.targets)), len(w) - len(s))
            for s, w in zip(series, whole, strict=True)
        ]
    else:
        raise ValueError(f"partner: persistence or discord, not {partner!r}")
    out = []
    for s, a, b in zip(series, lstm, others, strict=True):
        score = either_score(a.score, b)
        flag, onset = replay(score, engine.alerts)
        n0 = len(score) - len(s.timestamps)  # the training rows, dropped as score_streams does
        out.append(StreamScores(score[n0:], flag[n0:], a.forecast[n0:], onset[n0:]))
    return out


def _checkpoint(root: Path, group: str, spec: EvalSpec) -> Checkpoint:
    """The group's model, trained once (training seed fixed) and cached beside the data."""
    # The calendar setting changes the model, so it is part of the cache's name (models cached
    # before calendars were read have none in theirs and are not reused).
    tag = spec.train.calendar.replace(",", "+")
    path = root / ".models" / f"{group}-calendar-{tag}.pt"
    if path.exists():
        ckpt = load_checkpoint(path)
        training = ckpt.metrics.setdefault("training", {})
        if "level_tail" not in training:  # cached before training fitted the level test's tail
            streams = read_dataset(root / group / "train")
            scalers = [ckpt.scaler_for(s.name) for s in streams]
            training["level_tail"] = level_tails(streams, scalers, ckpt.targets)
        return ckpt
    cfg = dataclasses.replace(spec.train, covariates=COVARIATES.get(group, ()), device="cpu")
    ckpt = train(read_dataset(root / group / "train"), cfg).to_checkpoint()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, ckpt)
    return ckpt


def nab_windows(s: Series) -> list[tuple[float, float]]:
    """NAB-shaped windows of a labelled stream, as NAB builds them from its anomaly labels: one
    per labelled event, ``10% of the rows / number of events`` wide, centred on the event's
    first row (clipped to the stream). The exact labelled spans reward a detector only while an
    anomaly lasts; NAB's windows also reward early warning and forgive late alerts, so the dev
    set reports both."""
    spans = events(s.labels)
    if not spans:
        return []
    width = max(int(0.10 * len(s) / len(spans)), 1)
    out = []
    for start, _ in spans:
        a = max(start - width // 2, 0)
        b = min(a + width, len(s)) - 1
        out.append((float(s.timestamps[a]), float(s.timestamps[b])))
    return out


def recall_by_kind(anomalies: list[dict], flags: dict[str, np.ndarray]) -> dict[str, list[int]]:
    """``{kind: [detected, injected]}``: an injected anomaly (rows ``[start_index, end_index)`` of
    its stream, as ``anomalies.json`` lists them) is detected when an alert flags any of its rows.
    Pooled event recall hides which faults a setting finds; this says which."""
    out: dict[str, list[int]] = {}
    for a in anomalies:
        hit = bool(flags[a["stream"]][a["start_index"] : a["end_index"]].any())
        tally = out.setdefault(a["kind"], [0, 0])
        tally[0] += hit
        tally[1] += 1
    return out


def _event_f1(counts: np.ndarray) -> np.ndarray:
    """Pooled event F1 of summed ``[ranges, detected, alerts, alerts_true]`` rows (NaN where
    there is no range or no alert), as :func:`evaluate_streams` pools it."""
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = counts[..., 3] / counts[..., 2]
        recall = counts[..., 1] / counts[..., 0]
        total = precision + recall
        return np.where(total > 0, 2 * precision * recall / total, np.where(total == 0, 0.0, total))


def paired_interval(
    labels: list[np.ndarray],
    before: list[np.ndarray],
    after: list[np.ndarray],
    draws: int = 4000,
    level: float = 0.9,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``(difference, low, high)``: the pooled event F1 of ``after`` minus that of ``before``
    (flags of the same streams), and a paired bootstrap interval over streams (``level``,
    two-sided; percentiles of ``draws`` resamples, fixed ``seed``).

    A group of a few streams per seed moves by more than a guard's 0.01 from one seed set to
    the next with no change at all; the interval says how much a difference could owe to which
    streams and anomalies the seeds drew, so a rule can be written with a guard of that size."""

    def counts(flags: list[np.ndarray]) -> np.ndarray:
        out = [event_counts(y, f) for y, f in zip(labels, flags, strict=True)]
        keys = ("ranges", "ranges_detected", "alerts", "alerts_true")
        return np.array([[c[k] for k in keys] for c in out], np.float64)

    a, b = counts(before), counts(after)
    n = len(labels)
    times = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=draws)
    diff = _event_f1(times @ b) - _event_f1(times @ a)
    low, high = np.nanquantile(diff, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(_event_f1(b.sum(axis=0)) - _event_f1(a.sum(axis=0))), float(low), float(high)


def _paired(before: dict[str, list], after: dict[str, list]) -> dict[str, list[float]]:
    """:func:`paired_interval` of each group's ``(labels, flags)`` pairs, and of all of them
    pooled (``all``)."""
    out = {}
    for g in ["all", *before]:
        pairs_a = [p for v in before.values() for p in v] if g == "all" else before[g]
        pairs_b = [p for v in after.values() for p in v] if g == "all" else after[g]
        labels = [y for y, _ in pairs_a]
        out[g] = list(paired_interval(labels, [f for _, f in pairs_a], [f for _, f in pairs_b]))
    return out


def dev_score(row: dict) -> float:
    """The decision figure: the mean of pooled event F1, point F1 and the NAB-style standard
    score over NAB-shaped windows (/100), one for each of issue 9's checks (the held-out
    benchmark's event F1, SKAB's point F1, NAB)."""
    return (row["event_f1"] + row["point_f1"] + row["nabw_standard"] / 100.0) / 3.0


def compare(
    roots: list[Path],
    variants: list[str],
    groups: tuple[str, ...] | None = None,
    calendar: str = EvalSpec.train.calendar,
    warm: bool = EvalSpec.warm,
) -> list[dict]:
    """Score the test streams of ``groups`` (of every dev set in ``roots``, pooled) with each
    variant's engine (same models); print and return each variant's pooled metrics: event
    P/R/F1 of the alerts, point F1, composite F1, and NAB scores at the corpus-optimal threshold
    over the onset scores, as ``detector evaluate`` reports them; and event recall per injected
    anomaly kind."""
    spec = EvalSpec(train=dataclasses.replace(EvalSpec.train, calendar=calendar))
    wanted = groups or GROUPS + REAL_GROUPS
    keys = [(r, g) for r in roots for g in wanted if groups or (r / g).is_dir()]
    models = {k: _checkpoint(k[0], k[1], spec) for k in keys}
    tests = {k: read_dataset(k[0] / k[1] / "test") for k in keys}
    # As `detector evaluate --train --test [--no-warm]` does: with `warm`, test streams continue
    # their training streams.
    trains = {k: read_dataset(k[0] / k[1] / "train") if warm else [] for k in keys}
    injected = {
        k: json.loads((k[0] / k[1] / "anomalies.json").read_text())["anomalies"] for k in keys
    }
    rows, first = [], None
    for text in variants:
        name, engine = parse_variant(text)
        forecaster = variant_forecaster(text)
        t0 = time.perf_counter()
        series, outs, by_group, kinds = [], [], {}, {}
        for k in keys:
            if forecaster in PARTNERS:
                partner = PARTNERS[forecaster]
                out = ensemble_streams(models[k], tests[k], engine, trains[k], partner)
            elif forecaster == "discord":  # no forecast: the shape baseline of `evaluate`
                out = discord_streams(models[k], tests[k], engine.alerts, trains[k])
            else:
                model = _forecaster(forecaster, models[k])
                out = score_streams(models[k], tests[k], engine, model=model, warm=trains[k])
            by_group.setdefault(k[1], []).extend(
                (s.labels, o.flag) for s, o in zip(tests[k], out, strict=True)
            )
            flags = {s.name: o.flag for s, o in zip(tests[k], out, strict=True)}
            for kind, (hit, n) in recall_by_kind(injected[k], flags).items():
                kinds.setdefault(kind, [0, 0])
                kinds[kind][0] += hit
                kinds[kind][1] += n
            series += tests[k]
            outs += out
        per_group = {g: evaluate_streams(v)["event"]["f1"] for g, v in by_group.items()}
        m = metrics_for(series, outs)
        nab = m["nab_at_optimal_threshold"]["profiles"]
        wide = nab_at_optimal_threshold(series, outs, [nab_windows(s) for s in series])
        nabw = wide["profiles"]
        row = {
            "variant": name,
            "event_p": m["event"]["precision"],
            "event_r": m["event"]["recall"],
            "event_f1": m["event"]["f1"],
            "point_f1": m["point"]["f1"],
            "composite_f1": m["composite"]["f1"],
            **{f"nab_{k}": nab[k]["normalised"] for k in PROFILES},
            **{f"nabw_{k}": nabw[k]["normalised"] for k in PROFILES},
            **{f"f1_{g}": v for g, v in per_group.items()},
            **{f"recall_{kind}": hit / n for kind, (hit, n) in sorted(kinds.items())},
        }
        row["dev_score"] = dev_score(row)
        first = first or (name, by_group)
        if first[1] is not by_group:
            row["paired_event_f1"] = _paired(first[1], by_group)
        rows.append(row)
        print(
            f"{name:24s} dev {row['dev_score']:.3f} | "
            f"eventP {row['event_p']:.3f} R {row['event_r']:.3f} "
            f"F1 {row['event_f1']:.3f} | point F1 {row['point_f1']:.3f} | "
            f"composite F1 {row['composite_f1']:.3f} | NAB "
            + " / ".join(f"{row['nab_' + k]:.1f}" for k in PROFILES)
            + " | NAB windows "
            + " / ".join(f"{row['nabw_' + k]:.1f}" for k in PROFILES)
            + " | "
            + " ".join(f"{g} {v:.3f}" for g, v in per_group.items())
            + f" ({time.perf_counter() - t0:.0f}s)\n"
            + f"{'':24s} recall by kind: "
            + " ".join(f"{kind} {hit}/{n}" for kind, (hit, n) in sorted(kinds.items())),
            flush=True,
        )
        if "paired_event_f1" in row:
            print(
                f"{'':24s} event F1 minus {first[0]}'s, 90% paired bootstrap over streams: "
                + " ".join(
                    f"{g} {d:+.3f} ({lo:+.3f}..{hi:+.3f})"
                    for g, (d, lo, hi) in row["paired_event_f1"].items()
                ),
                flush=True,
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="write the dev set")
    g.add_argument("--out", required=True, type=Path)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument(
        "--datasets",
        type=Path,
        help="the directory holding nab/ and skab/ (e.g. ../shared/datasets): also write the "
        "groups on real backgrounds, from the benchmarks' training rows only",
    )
    c = sub.add_parser("compare", help="score the dev set's test streams with each variant")
    c.add_argument(
        "--dir",
        required=True,
        type=Path,
        action="append",
        help="a directory `generate` wrote (repeatable: the dev sets are pooled)",
    )
    c.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME:scorer.FIELD=V,alerts.FIELD=V"
        "[,forecaster=persistence|ensemble|discord] (repeatable); "
        "default: the shipped defaults, with each group's LSTM",
    )
    c.add_argument(
        "--groups", default=None, help="comma list of groups (default: every group written)"
    )
    c.add_argument(
        "--calendar",
        default=EvalSpec.train.calendar,
        help="the models' calendar inputs: auto, off or day,week (models are cached per setting)",
    )
    c.add_argument(
        "--warm",
        choices=("on", "off"),
        default="on" if EvalSpec.warm else "off",
        help="score each test stream after its training stream (`detector evaluate --warm`)",
    )
    c.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args(argv)
    if args.cmd == "generate":
        generate(args.out, args.seed, args.datasets)
        return 0
    groups = tuple(args.groups.split(",")) if args.groups else None
    rows = compare(
        args.dir, args.variant or ["defaults:"], groups, args.calendar, args.warm == "on"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
