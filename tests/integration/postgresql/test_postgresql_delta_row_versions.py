"""postgresql_delta_apply's ``checksum`` passes that compare changed rows only (trust_row_versions),
against the lab's two PostgreSQL servers: every kind of change on either side is still found, and
what could change a row without a new row version makes the pass compare every row."""

from __future__ import annotations

import pytest
from pg_delta_lab import TABLES, assert_equal, churn, connect, seed, table_digest, target_write_count
from test_postgresql_delta_apply import assert_no_write_on_rerun, run

from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.errors import DeltaError
from ansible_collections.cutover.migration.plugins.module_utils.pg_delta import postgres as pg

KEYED = [name for name in TABLES if name != "public.audit_log"]


def compared(result: dict) -> dict[str, str]:
    return {name: counts["compared"] for name, counts in result["tables"].items()}


def test_a_pass_after_a_load_compares_changed_rows_and_finds_every_change_on_either_side(pg_sides):
    old, new, source_db, target_db = pg_sides
    seed(old, source_db)
    loaded = run(old, new, source_db, target_db)
    assert loaded["tables"]["public.items"]["compared_reason"] == "the target table was empty: loaded"
    changes = churn(old, source_db)
    with connect(old, source_db) as connection:
        # Frozen after the change: the row's xmin must still read as new.
        connection.execute("VACUUM (FREEZE) items")
    with connect(new, target_db) as connection:
        # Drift on the target: an old row edited, an old row deleted, a row the source never had.
        connection.execute("UPDATE items SET title = 'edited on the target' WHERE id = 7")
        connection.execute("DELETE FROM items WHERE id = 8")
        connection.execute("INSERT INTO items (id, title) OVERRIDING SYSTEM VALUE VALUES (100000, 'target only')")
        connection.execute("DELETE FROM memberships WHERE member_id = 9 AND group_code = 'ab'")
        connection.execute("UPDATE codes SET label = 'drifted' WHERE code = 'code-10'")
        connection.execute("VACUUM (FREEZE) items")
    assert 7 not in changes["updated"] + changes["deleted"] and 8 not in changes["updated"] + changes["deleted"]
    result = run(old, new, source_db, target_db, chunk_size=10)
    keyed = {name: how for name, how in compared(result).items() if name in KEYED}
    assert keyed == dict.fromkeys(KEYED, "changed_rows")
    assert compared(result)["public.audit_log"] == "every_row"
    assert_equal(old, source_db, new, target_db)
    items = result["tables"]["public.items"]
    assert items["rows_inserted"] == 30 + 1          # the churn's inserts and row 8 back
    assert items["rows_deleted"] == 15 + 1           # the churn's deletes and the target-only row
    assert 27 <= items["rows_updated"] <= 29         # 25 + '' + NULL + row 7 (+ the re-inserted key)
    assert_no_write_on_rerun(old, new, source_db, target_db, chunk_size=10)


def test_rows_rewritten_with_the_same_values_are_compared_and_nothing_is_written(pg_sides):
    old, new, source_db, target_db = pg_sides
    seed(old, source_db)
    run(old, new, source_db, target_db, tables=["public.parents", "public.items"])
    with connect(old, source_db) as connection:
        connection.execute("UPDATE items SET title = title WHERE id <= 50")
    before = target_write_count(new, target_db)
    again = run(old, new, source_db, target_db, tables=["public.parents", "public.items"])
    assert compared(again)["public.items"] == "changed_rows"
    assert again["changed"] is False and again["target_writes"] == 0
    assert target_write_count(new, target_db) == before


def test_a_column_added_with_different_defaults_makes_the_next_pass_compare_every_row(pg_sides):
    """A default filled in without rewriting rows changes their content without a new row version."""
    old, new, source_db, target_db = pg_sides
    seed(old, source_db)
    tables = ["public.parents", "public.items"]
    run(old, new, source_db, target_db, tables=tables)
    with connect(old, source_db) as connection:
        connection.execute("ALTER TABLE items ADD COLUMN grade int DEFAULT 5")
    with connect(new, target_db) as connection:
        connection.execute("ALTER TABLE items ADD COLUMN grade int DEFAULT 6")
    result = run(old, new, source_db, target_db, tables=tables)
    items = result["tables"]["public.items"]
    assert items["compared"] == "every_row"
    assert items["compared_reason"] == "the source table's columns, defaults or column types changed"
    assert items["rows_updated"] == 400
    assert_equal(old, source_db, new, target_db, tables=tables)
    again = run(old, new, source_db, target_db, tables=tables)
    assert compared(again)["public.items"] == "changed_rows" and again["changed"] is False


def test_trust_row_versions_false_compares_every_row(pg_sides):
    old, new, source_db, target_db = pg_sides
    seed(old, source_db)
    run(old, new, source_db, target_db)
    with connect(new, target_db) as connection:
        connection.execute("UPDATE items SET title = 'drifted' WHERE id = 3")
    result = run(old, new, source_db, target_db, trust_row_versions=False)
    assert set(compared(result).values()) == {"every_row"}
    assert result["tables"]["public.items"]["compared_reason"] == "trust_row_versions is off"
    assert result["tables"]["public.items"]["rows_updated"] == 1
    assert_equal(old, source_db, new, target_db)


def test_a_crash_in_a_changed_rows_pass_resumes_it_and_converges(pg_sides):
    old, new, source_db, target_db = pg_sides
    seed(old, source_db)
    run(old, new, source_db, target_db)
    churn(old, source_db)

    def crash(table, index):
        if table == "public.items" and index >= 1:
            raise DeltaError("injected crash in the second differing chunk of items")

    with pytest.raises(DeltaError, match="injected crash"):
        run(old, new, source_db, target_db, chunk_size=50, parallel_tables=1, after_chunk=crash)
    assert table_digest(old, source_db, "public.items") != table_digest(new, target_db, "public.items")
    # Between the two runs the source changes again, in a chunk the first attempt already passed.
    with connect(old, source_db) as connection:
        connection.execute("UPDATE items SET title = 'after the crash' WHERE id = 2")
    result = run(old, new, source_db, target_db, chunk_size=50, verify=False)
    items = result["tables"]["public.items"]
    assert items["compared"] == "changed_rows" and items["resumed_from"]
    # The resumed pass starts after its committed chunks; the next one finds row 2.
    final = run(old, new, source_db, target_db, chunk_size=50)
    assert final["verified"] is True
    assert_equal(old, source_db, new, target_db)
    assert_no_write_on_rerun(old, new, source_db, target_db, chunk_size=50)


@pytest.mark.parametrize("hashes", ["confirmed", "not confirmed"])
def test_buckets_that_differ_by_one_key_are_named_by_their_sums_not_listed(pg_sides, monkeypatch, hashes):
    """Scattered single deletes on the source and one on the target: each bucket's sums name the
    key (versions.lone_keys), the source confirms its hash, and only the bucket with two deletes is
    listed. With hashes that do not confirm, every such bucket is listed instead: same end state."""
    old, new, source_db, target_db = pg_sides
    tables = ["public.parents", "public.items"]
    seed(old, source_db, items=2000)
    run(old, new, source_db, target_db, tables=tables)
    with connect(old, source_db) as connection:
        deleted = [row[0] for row in connection.execute(
            "DELETE FROM items WHERE id % 97 = 5 OR id IN (1500, 1501) RETURNING id").fetchall()]
    with connect(new, target_db) as connection:
        connection.execute("DELETE FROM items WHERE id = 1203")
    listed: list[int] = []
    hashed: list[int] = []
    bucket_keys, key_hashes = pg.bucket_keys, pg.integer_key_hashes

    def recorded_listing(server, schema, lower, upper, buckets, chosen):
        if buckets.width:
            listed.extend(chosen)
        return bucket_keys(server, schema, lower, upper, buckets, chosen)

    def recorded_hashes(server, keys):
        hashed.extend(keys)
        found = key_hashes(server, keys)
        return found if hashes == "confirmed" else {key: value ^ 1 for key, value in found.items()}

    monkeypatch.setattr(pg, "bucket_keys", recorded_listing)
    monkeypatch.setattr(pg, "integer_key_hashes", recorded_hashes)
    result = run(old, new, source_db, target_db, tables=tables, chunk_size=500)
    assert_equal(old, source_db, new, target_db, tables=tables)
    items = result["tables"]["public.items"]
    assert items["compared"] == "changed_rows"
    assert (items["rows_deleted"], items["rows_inserted"], items["rows_updated"]) == (len(deleted), 1, 0)
    # The first and last chunks (open at one end) bucket by hash and list; the others name their
    # lone keys, each bucket listed is listed on both sides.
    assert 1203 in hashed and len(hashed) >= 8 and set(hashed) <= set(deleted) | {1203}
    if hashes == "confirmed":
        assert len(listed) <= 2, listed          # the bucket of 1500 and 1501
    else:
        assert len(listed) >= 2 * len(hashed)
    monkeypatch.undo()
    assert_no_write_on_rerun(old, new, source_db, target_db, tables=tables, chunk_size=500)
