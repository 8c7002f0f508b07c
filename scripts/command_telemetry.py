"""Spacecraft-style telemetry: one reading driven by sparse command flags, with labelled faults.

A check the development set (``scripts/devset.py``) cannot make: none of its groups has
indicator columns. Each stream is one telemetry reading ``value`` and 25 command columns
``cmd_0`` .. ``cmd_24``, one-hot pulses of the commands sent at each reading, laid out as NASA's
SMAP / MSL telemetry is (Hundman et al., 2018). A command moves the reading towards that
command's level; on top sit a sine of its own period and Gaussian noise, rounded to two decimals
in half the streams. Each stream uses 2 to 5 commands routinely; in the test part, two commands
that training never saw are also sent once or twice each. Test faults (1 to 3 per stream, 50 to
400 readings) are level shifts, stuck readings, noise bursts, spikes and a faster oscillation.

    python scripts/command_telemetry.py --out /tmp/commands1 --seed 1
    detector evaluate --train /tmp/commands1/train --test /tmp/commands1/test

The same command writes the same bytes. Generated data is never committed.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

COMMANDS = 25
STREAMS = 10
TRAIN_ROWS, TEST_ROWS = 2500, 5000
FAULT_KINDS = ("shift", "stuck", "noise", "spike", "freq")


def _commands(rng: np.random.Generator, n: int, routine, unseen) -> np.ndarray:
    cmds = np.zeros((n, COMMANDS))
    for k in routine:
        cmds[np.flatnonzero(rng.random(n) < 1 / rng.uniform(150, 500)), k] = 1
    for k in unseen:
        cmds[rng.integers(0, n, rng.integers(1, 3)), k] = 1
    return cmds


@dataclass(frozen=True)
class Channel:
    """What makes one telemetry channel itself, in its training part and its test part alike."""

    levels: np.ndarray  # (COMMANDS,) the level each command moves the reading towards
    period: float  # of the sine on top, readings
    amp: float  # of the sine
    noise: float  # Gaussian noise's sd
    rounded: bool  # readings rounded to two decimals

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Channel:
        return cls(
            rng.uniform(-0.8, 0.8, COMMANDS),
            rng.uniform(50, 300),
            rng.uniform(0, 0.2),
            rng.uniform(0.005, 0.05),
            bool(rng.random() < 0.5),
        )


def stream(
    rng: np.random.Generator,
    channel: Channel,
    n: int,
    routine: np.ndarray,
    unseen: np.ndarray,
    faults: list[tuple[int, int, str]],
) -> tuple[np.ndarray, np.ndarray]:
    """``(values (n, 1 + COMMANDS), labels (n,))`` of one stream of ``channel`` with ``faults``
    injected; ``rng`` draws the commands sent, the noise and the faults' sizes."""
    cmds = _commands(rng, n, routine, unseen)
    value = np.empty(n)
    target = current = 0.0
    for t in range(n):
        sent = np.flatnonzero(cmds[t])
        if sent.size:
            target = channel.levels[int(sent[0])]
        current += 0.1 * (target - current)  # the reading settles towards the command's level
        value[t] = current + channel.amp * np.sin(2 * np.pi * t / channel.period)
    noise = channel.noise
    value += noise * rng.standard_normal(n)
    if channel.rounded:
        value = np.round(value, 2)
    labels = np.zeros(n, np.uint8)
    for start, length, kind in faults:
        span = slice(start, start + length)
        if kind == "shift":
            value[span] += rng.choice([-1, 1]) * rng.uniform(0.2, 0.6)
        elif kind == "stuck":
            value[span] = value[start]
        elif kind == "noise":
            burst = 5 * noise * rng.standard_normal(length)
            value[span] += burst + 0.05 * rng.standard_normal(length)
        elif kind == "spike":
            value[start : start + 3] += rng.choice([-1, 1]) * 1.0
        elif kind == "freq":
            value[span] += 0.3 * np.sin(2 * np.pi * np.arange(length) / (channel.period / 5))
        labels[span] = 1
    return np.column_stack([value, cmds]), labels


def _write(path: Path, values: np.ndarray, labels: np.ndarray | None) -> None:
    header = ["timestamp", "value", *(f"cmd_{k}" for k in range(COMMANDS))]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header + (["label"] if labels is not None else []))
        for t, row in enumerate(values):
            cells = [1_600_000_000 + 60 * t, *(f"{x:.4g}" for x in row)]
            w.writerow(cells + ([int(labels[t])] if labels is not None else []))


def generate(out: Path, seed: int) -> None:
    """Write ``out/train`` (anomaly-free) and ``out/test`` (labelled) for ``seed``."""
    rng = np.random.default_rng(seed)
    for part in ("train", "test"):
        (out / part).mkdir(parents=True, exist_ok=True)
    for s in range(STREAMS):
        routine = rng.choice(COMMANDS, rng.integers(2, 6), replace=False)
        unseen = rng.choice([k for k in range(COMMANDS) if k not in routine], 2, replace=False)
        # One channel, two parts: the same dynamics, different commands sent and noise drawn.
        channel = Channel.draw(np.random.default_rng((seed, s)))
        part = np.random.default_rng(seed * 100 + s)
        train, _ = stream(part, channel, TRAIN_ROWS, routine, [], [])
        _write(out / "train" / f"ch{s}.csv", train, None)
        starts = np.arange(500, TEST_ROWS - 600, 700)
        starts = sorted(rng.choice(starts, rng.integers(1, 4), replace=False))
        faults = [
            (int(st), int(rng.integers(50, 400)), str(rng.choice(FAULT_KINDS))) for st in starts
        ]
        test, labels = stream(
            np.random.default_rng(seed * 100 + 50 + s), channel, TEST_ROWS, routine, unseen, faults
        )
        _write(out / "test" / f"ch{s}.csv", test, labels)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="directory for train/ and test/")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    generate(Path(args.out), args.seed)
    print(f"wrote {STREAMS} streams to {args.out}/train and {args.out}/test")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
