"""Chunk bounds from a sample of a table's keys (pg.sample_keys): a load, a changed-rows pass and an
every-row pass cut each table exactly, whether the sample holds every key, a third of the pages, or
overflows (bounds walked instead)."""

from __future__ import annotations

import pytest
from pg_delta_lab import TABLES, assert_equal, churn, connect, seed, side, target_write_count
from test_postgresql_delta_apply import run

from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.errors import DeltaError
from ansible_collections.cutover.migration.plugins.module_utils.pg_delta import postgres as pg
from ansible_collections.cutover.migration.plugins.module_utils.pg_delta.options import delta_options

KEYED = [name for name in TABLES if name != "public.audit_log"]


def analyze(params, database):
    with connect(params, database) as connection:
        connection.execute("ANALYZE")
        return dict(connection.execute(
            "SELECT n.nspname || '.' || c.relname, c.reltuples FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'").fetchall())


@pytest.mark.parametrize("sample", ["every key", "a third", "overflow"])
def test_sampled_bounds_cut_every_table_exactly(pg_sides, monkeypatch, sample):
    old, new, source_db, target_db = pg_sides
    seed(old, source_db, items=1500)
    estimates = analyze(old, source_db)
    assert estimates["public.items"] >= 1500
    monkeypatch.setattr(pg, "SAMPLED_BOUNDS_ROWS", 1)
    # SYSTEM samples whole pages: 100 % reads every key; a third of the rows' worth of keys reads
    # about a third of the pages; a cap of 5 keys makes the sample overflow, and bounds are walked.
    monkeypatch.setattr(pg, "SAMPLE_KEYS", {"every key": 10 ** 9, "a third": 500, "overflow": 10 ** 9}[sample])
    if sample == "overflow":
        monkeypatch.setattr(pg, "SAMPLE_KEYS_MAX", 5)
    walked: list[str] = []
    samples: list[tuple[str, pg.KeySample | None]] = []
    walk, take_sample = pg.chunk_upper_bound, pg.sample_keys

    def counted_walk(server, schema, lower, rows):
        walked.append(schema.name)
        return walk(server, schema, lower, rows)

    def recorded_sample(server, schema, lower):
        samples.append((schema.name, take_sample(server, schema, lower)))
        return samples[-1][1]

    monkeypatch.setattr(pg, "chunk_upper_bound", counted_walk)
    monkeypatch.setattr(pg, "sample_keys", recorded_sample)

    def crash(table, index):
        if table == "public.items" and index == 2:
            raise DeltaError("injected crash after the third chunk of items")

    with pytest.raises(DeltaError, match="injected crash"):
        run(old, new, source_db, target_db, chunk_size=100, parallel_tables=1, after_chunk=crash)
    # The resumed load samples the keys above where the first stopped.
    load = run(old, new, source_db, target_db, chunk_size=100, parallel_tables=1)
    assert load["tables"]["public.items"]["resumed_from"]
    assert_equal(old, source_db, new, target_db)
    churn(old, source_db)
    delta = run(old, new, source_db, target_db, chunk_size=100, parallel_tables=1)
    assert_equal(old, source_db, new, target_db)
    items = delta["tables"]["public.items"]
    assert items["compared"] == "changed_rows"
    assert items["rows_inserted"] == 30 and items["rows_deleted"] == 15
    every_row = run(old, new, source_db, target_db, chunk_size=100, parallel_tables=1, trust_row_versions=False)
    assert every_row["tables"]["public.items"]["compared"] == "every_row"
    assert every_row["changed"] is False and every_row["target_writes"] == 0
    assert every_row["tables"]["public.items"]["chunks_checked"] > 3

    taken = [found for name, found in samples if found is not None]
    if sample == "overflow":
        assert not taken and "public.items" in walked
        return
    assert taken and not [name for name in walked if name in KEYED], walked
    items_per_key = {found.rows_per_key for name, found in samples if name == "public.items" and found}
    assert items_per_key == {1.0} if sample == "every key" else min(items_per_key) > 2
    writes = target_write_count(new, target_db)
    again = run(old, new, source_db, target_db, chunk_size=100, parallel_tables=1)
    assert again["changed"] is False and target_write_count(new, target_db) == writes


def test_bucket_digests_do_not_depend_on_how_the_server_groups(pg_sides):
    """A table never analyzed can be grouped by sorting on the bucket (GroupAggregate), which does
    not keep the key order within a bucket; the digests must still equal the other side's."""
    old, new, source_db, target_db = pg_sides
    for params, database in ((old, source_db), (new, target_db)):
        with connect(params, database) as connection:
            connection.execute("INSERT INTO parents (id, name) OVERRIDING SYSTEM VALUE "
                               "SELECT n, 'parent ' || n FROM generate_series(1, 3000) AS n")
    options = delta_options({"source": side(old, source_db), "target": side(new, target_db)})
    source, target = pg.Server(options.source), pg.Server(options.target)
    try:
        schema = pg.read_schemas(source, ["public.parents"])["public.parents"]
        buckets = pg.chunk_buckets(schema, (100,), None, 40)
        target.execute("SET enable_hashagg = off")
        plan = "\n".join(str(row[0]) for row in target.query(
            "EXPLAIN SELECT (id % 40) AS b, count(*) FROM parents WHERE id > 100 GROUP BY b"))
        assert "GroupAggregate" in plan
        sides = [pg.bucket_digests(server, schema, (100,), None, buckets) for server in (source, target)]
        assert len(sides[0]) == 40 and sides[0] == sides[1]
    finally:
        source.close()
        target.close()
