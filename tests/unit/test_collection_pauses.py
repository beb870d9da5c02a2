"""older_objects_left_out_of_collection: what a full collection walks during a run (no server)."""

from __future__ import annotations

import gc

from ansible_collections.cutover.migration.plugins.module_utils.collection_pauses import (
    older_objects_left_out_of_collection,
)


class Node:
    """A container the collector tracks, to build reference cycles with."""

    def __init__(self):
        self.other = None


def test_objects_older_than_the_run_are_left_out_of_collections_and_put_back_after():
    older = Node()
    assert gc.get_freeze_count() == 0
    with older_objects_left_out_of_collection():
        assert not any(entry is older for entry in gc.get_objects())
        # Garbage the run makes is still collected.
        first, second = Node(), Node()
        first.other, second.other = second, first
        del first, second
        assert gc.collect() >= 2
    assert gc.get_freeze_count() == 0
    assert any(entry is older for entry in gc.get_objects())


def test_objects_are_put_back_when_the_run_fails():
    older = Node()
    try:
        with older_objects_left_out_of_collection():
            raise RuntimeError("the run failed")
    except RuntimeError:
        pass
    assert gc.get_freeze_count() == 0
    assert any(entry is older for entry in gc.get_objects())


def test_a_caller_that_froze_objects_itself_keeps_them_frozen():
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with older_objects_left_out_of_collection():
            pass
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
