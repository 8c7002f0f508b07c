"""Per-slot arrays that grow with the engine's slot table: the shared base of scorers and alerts."""

from __future__ import annotations

import numpy as np

__all__ = ["Slabs", "as_run", "rows"]


def as_run(slots: np.ndarray) -> slice | None:
    """``slots`` as a slice when they are consecutive and ascending, else ``None``.

    Slots are handed out in first-seen order, so a fleet whose streams report in a stable order
    (one producer per site, partitions read in order) fills waves whose slots are a run; their
    rows are then views, read and updated in place without a gather or a scatter.
    """
    n = len(slots)
    if n == 0:
        return None
    first = int(slots[0])
    if int(slots[-1]) - first != n - 1 or (n > 1 and not (np.diff(slots) == 1).all()):
        return None
    return slice(first, first + n)


def rows(slots: np.ndarray) -> np.ndarray | slice:
    """An index for the slabs' rows of distinct ``slots``: a slice (views) when they are a run.

    Only for code that reads every row it needs before writing any: a view sees the writes.
    """
    run = as_run(slots)
    return slots if run is None else run


class Slabs:
    """A dict of arrays, one row per slot; subclasses say what a fresh row holds."""

    capacity: int = 0
    # Slabs added after snapshots were first written: a snapshot without them restores them
    # fresh (as a new stream has them) instead of being refused, so an upgrade keeps its state.
    added_later: frozenset[str] = frozenset()
    # Slabs the owner of the model sets on every start, swap and restore (not learnt from the
    # stream): a snapshot leaves them out, and a restore starts them fresh, as it does the
    # missing ones of ``added_later``, before the model's are set.
    from_model: frozenset[str] = frozenset()
    slabs: dict[str, np.ndarray]

    def _fresh(self, n: int) -> dict[str, np.ndarray]:
        """``n`` rows in the state of a slot never used."""
        raise NotImplementedError

    def upgraded(
        self, missing: list[str], have: dict[str, np.ndarray], n: int
    ) -> dict[str, np.ndarray]:
        """Rows for the ``missing`` slabs (of ``added_later``) of ``n`` streams restored from an
        older snapshot, whose slabs' rows are ``have`` (all it holds, slabs since renamed or
        reshaped included): fresh, unless a subclass can start them from what the stream has
        learnt."""
        row = self._fresh(1)  # every fresh row is alike; one, not a whole slab's worth
        return {k: np.repeat(row[k], n, axis=0) for k in missing}

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
