"""The command-telemetry generator (scripts/command_telemetry.py): fixed seeds, labels only in
the test part, command columns that the trainer reads as indicators."""

import importlib.util
import sys
from pathlib import Path

import numpy as np

from detector.csvio import read_dataset
from detector.trainset import resolve_features

_PATH = Path(__file__).resolve().parents[1] / "scripts" / "command_telemetry.py"


def _module():
    spec = importlib.util.spec_from_file_location("command_telemetry", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
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


def _settled_levels(values: np.ndarray, labels: np.ndarray | None) -> dict[int, float]:
    """Per command: the mean unlabelled reading 40 to 80 readings after it was sent, when no
    other command followed (the reading has settled; the sine averages out over many rows)."""
    cmds = values[:, 1:]
    normal = np.ones(len(values), bool) if labels is None else labels == 0
    sent = np.flatnonzero(cmds.any(axis=1))
    rows: dict[int, list[float]] = {}
    for a, b in zip(sent, [*sent[1:], len(values)], strict=True):
        if b - a > 80:
            span = slice(a + 40, a + 80)
            rows.setdefault(int(np.argmax(cmds[a])), []).extend(values[span, 0][normal[span]])
    return {k: float(np.mean(v)) for k, v in rows.items() if len(v) >= 200}


def test_a_channel_has_the_same_dynamics_in_training_and_test(tmp_path: Path) -> None:
    # A channel's test part is the same channel as its training part: a command moves the
    # reading towards the same level in both. (Each part used to draw its own levels, sine and
    # noise, so the test part asked a model to forecast a different channel.)
    gen = _module()
    gen.generate(tmp_path, seed=3)
    train = read_dataset(tmp_path / "train")
    test = read_dataset(tmp_path / "test")
    compared = 0
    for tr, te in zip(train, test, strict=True):
        a, b = _settled_levels(tr.values, None), _settled_levels(te.values, te.labels)
        for k in a.keys() & b.keys():
            assert abs(a[k] - b[k]) < 0.1, (tr.name, k, a[k], b[k])
            compared += 1
    assert compared >= 5
