"""The command-telemetry generator (scripts/command_telemetry.py): fixed seeds, labels only in
the test part, command columns that the trainer reads as indicators."""

import importlib.util
from pathlib import Path

import numpy as np

from detector.csvio import read_dataset
from detector.trainset import resolve_features

_PATH = Path(__file__).resolve().parents[1] / "scripts" / "command_telemetry.py"


def _module():
    spec = importlib.util.spec_from_file_location("command_telemetry", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_same_seed_same_bytes_and_the_commands_are_indicators(tmp_path: Path) -> None:
    gen = _module()
    gen.generate(tmp_path / "a", seed=3)
    gen.generate(tmp_path / "b", seed=3)
    for f in sorted((tmp_path / "a").rglob("*.csv")):
        assert f.read_bytes() == (tmp_path / "b" / f.relative_to(tmp_path / "a")).read_bytes()
    train = read_dataset(tmp_path / "a" / "train")
    test = read_dataset(tmp_path / "a" / "test")
    assert len(train) == len(test) == gen.STREAMS
    assert all(s.labels is None for s in train)
    assert all(0 < s.labels.sum() < len(s) for s in test)
    spec = resolve_features(train, None)
    assert spec.targets == ("value",) and len(spec.covariates + spec.ignored) == gen.COMMANDS
    # Each test stream sends at least one command its training stream never sent.
    for tr, te in zip(train, test, strict=True):
        unseen = (te.values[:, 1:].max(axis=0) == 1) & (tr.values[:, 1:].max(axis=0) == 0)
        assert np.any(unseen)
