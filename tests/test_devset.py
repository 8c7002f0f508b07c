"""The development benchmark generator (scripts/devset.py): fixed seeds, clean training parts,
anomalies only in the test parts, readable by `detector evaluate --train --test`."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from detector.csvio import read_dataset

_PATH = Path(__file__).resolve().parents[1] / "scripts" / "devset.py"


@pytest.fixture(scope="module")
def devset():
    spec = importlib.util.spec_from_file_location("devset", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["devset"] = module
    spec.loader.exec_module(module)
    return module


def test_generate_is_deterministic_and_labels_only_the_test_parts(devset, tmp_path) -> None:
    devset.generate(tmp_path / "a", seed=0)
    devset.generate(tmp_path / "b", seed=0)
    devset.generate(tmp_path / "c", seed=1)
    for group in devset.GROUPS:
        train = read_dataset(tmp_path / "a" / group / "train")
        test = read_dataset(tmp_path / "a" / group / "test")
        assert [s.name for s in train] == [s.name for s in test]
        assert all(s.columns == test[0].columns for s in train + test)
        assert all(not s.labels.any() for s in train)
        assert all(s.labels.any() for s in test)
        for part in ("train", "test"):
            for f in sorted((tmp_path / "a" / group / part).glob("*.csv")):
                same = tmp_path / "b" / group / part / f.name
                assert f.read_bytes() == same.read_bytes()
    assert read_dataset(tmp_path / "a" / "uni" / "test")[0].values.shape[1] == 1
    assert read_dataset(tmp_path / "a" / "telemetry" / "test")[0].values.shape[1] == 5
    a = read_dataset(tmp_path / "a" / "uni" / "test")[0].values
    c = read_dataset(tmp_path / "c" / "uni" / "test")[0].values
    assert not np.array_equal(a, c, equal_nan=True)  # another seed, another set


def test_parse_variant(devset) -> None:
    name, cfg = devset.parse_variant("x:scorer.tail_clip=5,scorer.level=off,alerts.quiet=0")
    assert name == "x"
    assert (cfg.scorer.tail_clip, cfg.scorer.level, cfg.alerts.quiet) == (5, False, 0)
    _, default = devset.parse_variant("defaults:")
    assert default.scorer == type(default.scorer)()
    with pytest.raises(SystemExit):
        devset.parse_variant("bad:tail_clip=5")
