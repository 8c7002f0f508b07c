"""Per-slot arrays that grow with the engine's slot table: the shared base of scorers and alerts."""

from __future__ import annotations

import numpy as np

__all__ = ["Slabs"]


class Slabs:
    """A dict of arrays, one row per slot; subclasses say what a fresh row holds."""

    capacity: int = 0
    slabs: dict[str, np.ndarray]

    def _fresh(self, n: int) -> dict[str, np.ndarray]:
        """``n`` rows in the state of a slot never used."""
        raise NotImplementedError

    def grow(self, capacity: int) -> None:
        """Add rows up to ``capacity``, keeping the existing ones."""
        fresh = self._fresh(capacity - self.capacity)
        old = getattr(self, "slabs", None)
        self.slabs = (
            fresh if not old else {k: np.concatenate([v, fresh[k]]) for k, v in old.items()}
        )
        self.capacity = capacity

    def reset(self, slots: np.ndarray) -> None:
        """Return ``slots`` to their fresh state."""
        for k, v in self._fresh(len(slots)).items():
            self.slabs[k][slots] = v
