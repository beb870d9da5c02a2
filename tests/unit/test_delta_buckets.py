"""The shared bucket planning of a differing chunk (mysql_delta.buckets), no server needed."""

from __future__ import annotations

from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.buckets import (
    Buckets,
    bucket_rows,
    chunk_buckets,
    differing_buckets,
)


def test_a_chunk_bounded_at_both_ends_by_integers_splits_into_key_intervals():
    assert chunk_buckets((100,), (181,), 10, integer_key=True) == Buckets(10, 100, 9)
    # Every key of the chunk falls in one of the count buckets.
    buckets = chunk_buckets((100,), (181,), 10, integer_key=True)
    assert {(key - buckets.start - 1) // buckets.width for key in range(101, 182)} <= set(range(buckets.count))
    assert chunk_buckets((5,), (6,), 10, integer_key=True) == Buckets(10, 5, 1)


def test_open_chunks_text_keys_and_restored_keys_hash_the_key():
    assert chunk_buckets(None, (181,), 10, integer_key=True) == Buckets(10)
    assert chunk_buckets((100,), None, 10, integer_key=True) == Buckets(10)
    assert chunk_buckets(("100",), (181,), 10, integer_key=True) == Buckets(10)   # read back from the state table
    assert chunk_buckets(("a", 1), ("b", 2), 10, integer_key=False) == Buckets(10)
    assert chunk_buckets((1,), (2,), 0, integer_key=False) == Buckets(1)


def test_differing_buckets_are_the_entries_on_one_side_only():
    source = frozenset({"0 8 aa", "1 8 bb", "-2 7 cc", "3 8 dd"})
    target = frozenset({"0 8 aa", "1 8 bx", "3 8 dd", "4 1 ee"})
    assert differing_buckets(source, target) == [-2, 1, 4]
    assert differing_buckets(source, source) == []
    assert bucket_rows(source) == 31 and bucket_rows(frozenset()) == 0


def test_entries_as_rows_read_the_same_as_entries_as_text():
    """PostgreSQL answers with (bucket, rows, digest) tuples, MySQL with text."""
    source = frozenset({(0, 8, b"aa"), (1, 8, b"bb"), (-2, 7, b"cc"), (3, 8, -5)})
    target = frozenset({(0, 8, b"aa"), (1, 8, b"bx"), (3, 8, -5), (4, 1, 17)})
    assert differing_buckets(source, target) == [-2, 1, 4]
    assert differing_buckets(target, target) == []
    assert bucket_rows(source) == 31 and bucket_rows(target) == 25
