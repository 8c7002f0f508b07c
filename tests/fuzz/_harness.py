"""Shared pieces of the atheris harnesses: instrumented imports, a tiny model, the entry point.

Each ``fuzz_*.py`` beside this file is a libFuzzer program::

    .venv/bin/python tests/fuzz/fuzz_codec_json.py -runs=100000 -seed=1
    .venv/bin/python tests/fuzz/fuzz_codec_json.py -max_total_time=300 corpus_dir/

Any libFuzzer flag works; a finding stops the run and is written to ``crash-<sha1>`` (or
``-artifact_prefix=DIR/``). A finding is an exception other than the one the entry point
documents for bad input, or a broken invariant (an ``AssertionError``).
"""

from __future__ import annotations

import logging
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import atheris
import numpy as np

with atheris.instrument_imports(include=["detector"]):
    from detector.checkpoint import Checkpoint
    from detector.model import LSTMForecaster, ModelArgs
    from detector.scaling import Scaler

__all__ = ["tiny_checkpoint", "main", "write_seeds"]


def tiny_checkpoint(n_inputs: int = 3, n_targets: int = 2) -> Checkpoint:
    """An untrained two-layer model: enough for the engine, built in milliseconds."""
    model = LSTMForecaster(ModelArgs(n_inputs=n_inputs, n_targets=n_targets, hidden=4)).eval()
    scaler = Scaler("standard", np.zeros(n_inputs), np.ones(n_inputs))
    return Checkpoint(
        model,
        ("a", "b", "c", "d")[:n_targets],
        ("cov1", "cov2")[: n_inputs - n_targets],
        "per_stream",
        {"known": scaler},
        scaler,
        {"timesteps": 3},
        {},
        {},
    )


def write_seeds(seeds: Iterable[bytes], argv: list[str]) -> list[str]:
    """Add a corpus directory holding ``seeds`` unless the command line names one."""
    if any(not a.startswith("-") for a in argv[1:]):
        return argv
    corpus = Path(tempfile.mkdtemp(prefix=f"{Path(argv[0]).stem}-corpus-"))
    for i, seed in enumerate(seeds):
        (corpus / f"seed-{i}").write_bytes(seed)
    return [*argv, str(corpus)]


def main(test_one: Callable[[bytes], None], seeds: Iterable[bytes] = ()) -> None:
    warnings.simplefilter("ignore")  # numpy's invalid-value notes on hostile input are expected
    logging.disable(logging.CRITICAL)  # and so are the warnings logged for each bad record
    atheris.Setup(write_seeds(seeds, sys.argv), test_one)
    atheris.Fuzz()
