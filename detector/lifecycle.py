"""The served model's life in a running worker: which version, hot swaps, online fine-tuning."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

from detector import finetune
from detector.checkpoint import load_checkpoint
from detector.engine import Engine
from detector.errors import DetectorError
from detector.metrics import Metrics

__all__ = ["ModelLifecycle", "model_version"]

log = logging.getLogger(__name__)


def model_version(path: str | Path) -> str:
    """Content hash of a checkpoint file: which model raised an alert."""
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:12]


class ModelLifecycle:
    """Swaps a changed checkpoint file in, and fine-tunes online when asked; keeps the version.

    ``due(now)`` runs whatever is due; the worker calls it between polls.
    """

    def __init__(
        self,
        engine: Engine,
        metrics: Metrics,
        path: str,
        reload_check_s: float,
        finetune_interval_s: float = 0.0,
        finetune_budget_s: float = 2.0,
    ) -> None:
        self.engine, self.metrics, self.path = engine, metrics, Path(path)
        self.reload_check_s, self.finetune_interval_s = reload_check_s, finetune_interval_s
        self.finetune_budget_s = finetune_budget_s
        self.version = model_version(path)
        self.mtime = self.path.stat().st_mtime_ns
        self.last_reload_check = self.last_finetune = time.monotonic()
        self.rounds = 0  # fine-tuning rounds applied to the current file's model
        self._publish()

    def _publish(self) -> None:
        self.metrics.set_model(
            self.version, str(self.engine.device), self.engine.config.scorer.kind
        )

    def due(self, now: float) -> None:
        if self.reload_check_s and now - self.last_reload_check >= self.reload_check_s:
            self.reload_if_changed()
        if self.finetune_interval_s and now - self.last_finetune >= self.finetune_interval_s:
            self.fine_tune()

    def reload_if_changed(self) -> bool:
        """Swap in the checkpoint file if it changed; a bad file is logged and ignored."""
        self.last_reload_check = time.monotonic()
        try:
            mtime = self.path.stat().st_mtime_ns
            if mtime == self.mtime:
                return False
            self.mtime = mtime
            primed = self.engine.swap_model(load_checkpoint(self.path))
        except (OSError, DetectorError) as exc:
            log.error("model reload skipped, still serving %s: %s", self.version, exc)
            return False
        self.version, self.rounds = model_version(self.path), 0
        self._publish()
        log.info("model %s swapped in; %d stream(s) re-primed", self.version, primed)
        return True

    def fine_tune(self) -> bool:
        """One bounded round of online fine-tuning on recent normal windows, then swap."""
        self.last_finetune = time.monotonic()
        tuned = finetune.fine_tune(self.engine, self.finetune_budget_s)
        if tuned is None:
            return False
        self.engine.swap_model(tuned)
        self.rounds += 1
        self.version = f"{model_version(self.path)}+ft{self.rounds}"
        self._publish()
        return True
