import numpy as np
import pytest
import torch

from detector.errors import DataError
from detector.state import StreamState


def _state(cap: int = 4, max_streams: int = 8) -> StreamState:
    return StreamState(1, 4, 2, 2, 5, torch.device("cpu"), cap, max_streams)


def _ids(*names: str) -> np.ndarray:
    return np.array(names, dtype=object)


def test_slots_per_reading_repeat_for_repeated_streams() -> None:
    st = _state()
    slots, fresh, evicted = st.slots_for(_ids("a", "b", "a", "c", "b"))
    assert slots[0] == slots[2] and slots[1] == slots[4] and len(set(slots.tolist())) == 3
    assert sorted(fresh.tolist()) == sorted(set(slots.tolist())) and evicted == []
    again, fresh, _ = st.slots_for(_ids("c", "a"))
    assert again.tolist() == [slots[3], slots[0]] and len(fresh) == 0


def test_slabs_grow_past_the_initial_capacity_in_one_step() -> None:
    st = _state(cap=2, max_streams=64)
    slots, fresh, _ = st.slots_for(_ids(*[f"s{i}" for i in range(20)]))
    assert st.capacity == 32 and len(set(slots.tolist())) == 20 and len(fresh) == 20
    assert st.window.shape[0] == st.capacity and st.h.shape[1] == st.capacity


def test_full_table_evicts_least_recently_used_never_this_batch() -> None:
    st = _state(cap=4, max_streams=4)
    for name in "abcd":  # a is the oldest, d the newest
        st.slots_for(_ids(name))
    st.window[st.slot_of["a"]] = 7.0
    slots, fresh, evicted = st.slots_for(_ids("b", "x", "y"))
    assert sorted(evicted) == ["a", "c"] and set(st.slot_of) == {"b", "d", "x", "y"}
    assert (st.window[slots[1]] == 0).all()  # a's reused slot starts clean
    with pytest.raises(DataError, match="max_streams=4"):
        st.slots_for(_ids("p", "q", "r", "s", "t"))


def test_evicted_slots_are_reused_before_growing() -> None:
    st = _state(cap=4, max_streams=8)
    st.slots_for(_ids("a", "b"))
    st.evict(["a"])
    st.slots_for(_ids("c", "d", "e"))
    assert st.capacity == 4 and len(st) == 4


def test_restored_streams_count_as_just_used_not_by_the_snapshots_clock(tmp_path) -> None:
    old = _state(cap=4, max_streams=4)
    for _ in range(50):  # the old process's batch counter runs far ahead
        old.slots_for(_ids("a", "b"))
    old.snapshot(tmp_path / "s.npz")
    st = _state(cap=4, max_streams=4)
    st.slots_for(_ids("x", "y"))
    st.restore(tmp_path / "s.npz")
    assert st.last_used[st.slot_of["a"]] == st.tick
    _, _, evicted = st.slots_for(_ids("p", "q"))  # full: the least recent two must make room
    assert sorted(evicted) == ["x", "y"]


def test_as_run_and_rows_tell_a_run_of_slots() -> None:
    from detector.slabs import as_run, rows

    assert as_run(np.arange(3, 9)) == slice(3, 9)
    assert as_run(np.array([4])) == slice(4, 5)
    for not_run in ([3, 5, 6], [5, 4, 3], [1, 2, 2, 3], []):
        assert as_run(np.array(not_run, np.int64)) is None
    slab = np.arange(20.0).reshape(10, 2)
    view = slab[rows(np.arange(2, 5))]
    view += 100.0  # a view: writes land in the slab
    assert slab[2, 0] == 104.0
    copy = slab[rows(np.array([5, 2]))]
    copy += 100.0
    assert slab[5, 0] == 10.0
