"""Run each atheris harness briefly, so CI keeps them working; longer runs are by hand (see the
harness docstrings and docs/input-handling.md)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
RUNS = {  # a few seconds each; coverage-guided, so even short runs reach the reject paths
    "fuzz_codec.py": 5000,
    "fuzz_state_chunks.py": 5000,
    "fuzz_snapshot.py": 400,
    "fuzz_checkpoint.py": 300,
    "fuzz_engine.py": 300,
}

pytestmark = [
    pytest.mark.fuzz,
    pytest.mark.skipif(
        importlib.util.find_spec("atheris") is None,
        reason="atheris is not installed (pip install -e '.[test]' brings it on CPython x86_64)",
    ),
]


def test_every_harness_is_run() -> None:
    assert sorted(p.name for p in HERE.glob("fuzz_*.py")) == sorted(RUNS)


@pytest.mark.parametrize("harness", sorted(RUNS))
def test_harness_finds_nothing(harness: str, tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        str(HERE / harness),
        f"-runs={RUNS[harness]}",
        "-seed=1",
        f"-artifact_prefix={tmp_path}/",
    ]
    # The harnesses' scratch directories (seed corpora, checkpoint files) go under tmp_path, which
    # pytest prunes, not into /tmp, where each CI run would leave a few behind.
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, errors="replace", env=env
    )
    tail = (proc.stdout + proc.stderr)[-3000:]
    assert proc.returncode == 0, tail
    # libFuzzer stops at the first check after -runs, which can be a few inputs later (a
    # mutation batch finishes), so "Done 312 runs" for -runs=300 is a full run.
    done = re.search(r"Done (\d+) runs", proc.stderr)
    assert done and int(done.group(1)) >= RUNS[harness], tail
    assert not list(tmp_path.glob("crash-*")), tail
    assert list(tmp_path.glob("*-corpus-*")), "the harness wrote its seeds outside tmp_path"
