"""The engine-free run core both delta modules share: the chunk walk, the per-table workers, verify.

Pure code: the "servers" here are a sorted list of keys and dictionaries of chunk answers.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta import tables
from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.checksum import TableCounts
from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.chunking import FIRST_CHUNK_ROWS, Chunk
from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.errors import DeltaError, VerifyFailed
from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.schema import Column, TableSchema
from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.tables import (
    DeltaRun,
    for_each_table,
    verify_tables,
    walk_chunks,
)

KEYED = TableSchema("items", (Column("id", "int", "int"), Column("v", "text", "text")), key=("id",), key_kind="primary")
KEYLESS = TableSchema("log", (Column("line", "text", "text"),))


def upper_bound_over(keys: list[int], asked: list[tuple]):
    """The source's ``upper_bound(lower, rows)`` over ``keys``, recording every question."""
    def upper_bound(lower, rows):
        asked.append((lower, rows))
        after = [key for key in keys if lower is None or key > lower[0]]
        return (after[rows - 1],) if len(after) >= rows else None
    return upper_bound


def test_walk_covers_every_key_once_from_open_start_to_open_end_with_a_fixed_size():
    keys = list(range(1, 26))
    asked: list[tuple] = []
    walked = list(walk_chunks(KEYED, 10, upper_bound_over(keys, asked), lambda chunk: ("s", "t")))
    chunks = [entry[0] for entry in walked]
    assert [(c.index, c.lower, c.upper) for c in chunks] == [(0, None, (10,)), (1, (10,), (20,)), (2, (20,), None)]
    assert all(entry[1:] == ("s", "t") for entry in walked)
    assert [rows for _lower, rows in asked] == [10, 10, 10]
    covered = [key for key in keys for c in chunks
               if (c.lower is None or key > c.lower[0]) and (c.upper is None or key <= c.upper[0])]
    assert covered == keys


def test_walk_resumes_after_the_given_key():
    asked: list[tuple] = []
    walked = list(walk_chunks(KEYED, 10, upper_bound_over(list(range(1, 26)), asked), lambda chunk: (), lower=(20,)))
    assert [(c.index, c.lower, c.upper) for (c,) in walked] == [(0, (20,), None)]


def test_walk_without_a_fixed_size_grows_fast_chunks(monkeypatch):
    # Each comparison "takes" 0.05 s: a tenth of the 0.5 s aim, so the next chunk may be 4x larger.
    clock = iter(value * 0.05 for value in range(100))
    monkeypatch.setattr(tables, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    asked: list[tuple] = []
    list(walk_chunks(KEYED, None, upper_bound_over(list(range(1, 200_001)), asked), lambda chunk: ()))
    sizes = [rows for _lower, rows in asked]
    assert sizes[:3] == [FIRST_CHUNK_ROWS, FIRST_CHUNK_ROWS * 4, FIRST_CHUNK_ROWS * 16]


def test_a_keyless_table_is_one_chunk_and_asks_no_bound():
    asked: list[tuple] = []
    walked = list(walk_chunks(KEYLESS, None, upper_bound_over([], asked), lambda chunk: (1, 2)))
    assert walked == [(Chunk("log", 0, None, None), 1, 2)]
    assert asked == []


def run_over(*schemas: TableSchema, parallel: int = 2) -> DeltaRun:
    return DeltaRun(options=SimpleNamespace(parallel_tables=parallel), check_mode=False,
                    schemas={schema.name: schema for schema in schemas}, state={})


def test_for_each_table_finishes_every_table_before_raising_the_first_error():
    run = run_over(KEYED, KEYLESS)
    release = threading.Event()

    def work(run, schema):
        if schema.name == "items":
            raise DeltaError("items failed", side="target")
        release.wait(5)      # still running when "items" fails
        return TableCounts(rows_inserted=3)

    threading.Timer(0.2, release.set).start()
    with pytest.raises(DeltaError, match="items failed"):
        for_each_table(run, ["items", "log"], work)
    assert run.counts["log"].rows_inserted == 3
    assert "items" not in run.counts


def test_for_each_table_adds_a_second_pass_to_the_first():
    run = run_over(KEYED)
    run.counts["items"] = TableCounts(rows_inserted=2, chunks_checked=1)
    for_each_table(run, ["items"], lambda run, schema: TableCounts(rows_deleted=1, chunks_checked=4))
    counts = run.counts["items"]
    assert (counts.rows_inserted, counts.rows_deleted, counts.chunks_checked) == (2, 1, 5)


def test_verify_names_every_differing_chunk_of_every_table():
    run = run_over(KEYED, KEYLESS, TableSchema("same", (Column("id", "int", "int"),), key=("id",)))
    differing = {"items": [Chunk("items", 3, (30,), (40,))], "log": [Chunk("log", 0, None, None)], "same": []}
    with pytest.raises(VerifyFailed) as failed:
        verify_tables(run, ["items", "log", "same"], lambda run, schema: differing[schema.name])
    assert failed.value.details["tables"] == ["items", "log"]
    assert failed.value.details["differing_chunks"] == ["items#3 (30 .. 40]", "log#0 (-inf .. +inf]"]
    assert failed.value.side == "target" and failed.value.option == "verify"
    assert "freeze_source=read_only" in str(failed.value)


def test_verify_passes_when_no_chunk_differs():
    run = run_over(KEYED, KEYLESS)
    verify_tables(run, ["items", "log"], lambda run, schema: [])
