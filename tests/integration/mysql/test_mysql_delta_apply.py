"""mysql_delta_apply against the lab's two MariaDB servers (old -> new)."""

from __future__ import annotations

import pytest
from mysql_delta_lab import (
    TABLES,
    ScratchServer,
    assert_same,
    binlog_end,
    binlog_events_for,
    churn,
    create_database,
    drop_database,
    execute,
    fill,
    query,
    side,
    unique_name,
)

from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta import binlog as binlog_module
from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.apply import run_delta
from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.errors import (
    BinlogNotReady,
    DeltaError,
    InvalidOptions,
    SchemaDrift,
)
from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.options import delta_options


def delta(old, new, source_db, target_db, **options):
    check_mode = options.pop("check_mode", False)
    after_chunk = options.pop("after_chunk", None)
    params = {"source": side(old, source_db), "target": side(new, target_db), **options}
    return run_delta(delta_options(params), check_mode=check_mode, after_chunk=after_chunk)


def test_initial_load_into_empty_target_copies_every_type_byte_for_byte(mysql_sides):
    old, new, source_db, target_db = mysql_sides
    fill(old, source_db)
    result = delta(old, new, source_db, target_db)
    assert_same(old, new, source_db, target_db)
    assert result["changed"] and result["verified"]
    assert result["tables"]["items"]["rows_inserted"] == 300
    assert result["tables"]["audit_log"]["copied_whole"] is True
    assert result["keyless_tables"] == ["audit_log"]
    # Generated columns are computed by the target, never written: the virtual one still matches.
    assert query(new, target_db, "SELECT COUNT(*) FROM items WHERE title_length <=> CHAR_LENGTH(title)")[0][0] == 300
    assert result["binlog_position"]["file"]


def test_checksum_delta_after_churn_converges_and_a_new_row_gets_a_new_id(mysql_sides):
    old, new, source_db, target_db = mysql_sides
    fill(old, source_db)
    delta(old, new, source_db, target_db)
    churn(old, source_db)
    source_next = int(query(old, source_db, "SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE "
                            "TABLE_SCHEMA = %s AND TABLE_NAME = 'items'", [source_db])[0][0] or 0)
    source_max = query(old, source_db, "SELECT MAX(id) FROM items")[0][0]
    result = delta(old, new, source_db, target_db, chunk_size=40)
    assert_same(old, new, source_db, target_db)
    items = result["tables"]["items"]
    assert items["rows_inserted"] >= 18 and items["rows_updated"] > 0 and items["rows_deleted"] > 0
    assert items["chunks_checked"] >= items["chunks_differing"] > 0
    # The source deleted its highest id after the churn: the target must not hand that id out again.
    assert items["auto_increment"] >= max(source_next, source_max + 1)
    execute(new, target_db, "INSERT INTO items (title) VALUES ('after cutover')")
    new_id = query(new, target_db, "SELECT id FROM items WHERE title = 'after cutover'")[0][0]
    assert new_id > source_max + 1 - 1 and new_id >= items["auto_increment"]


@pytest.mark.parametrize("rewritten", [0, 300], ids=["changed rows", "whole chunks"])
def test_checksum_applies_a_unique_value_moved_to_a_row_of_an_earlier_chunk(mysql_sides, rewritten):
    """Values of another unique key move from rows near the end of the table to rows of earlier
    chunks (an update, and a row inserted with a value freed by a delete): the target's later row
    still holds each value when the earlier chunk is written."""
    old, new, source_db, target_db = mysql_sides
    for params, database in ((old, source_db), (new, target_db)):
        execute(params, database, "CREATE TABLE handles (id int PRIMARY KEY, handle varchar(40) NOT NULL UNIQUE, "
                                  "payload varchar(40))")
    execute(old, source_db, "INSERT INTO handles SELECT seq, CONCAT('h', seq), 'v1' FROM seq_1_to_1000")
    delta(old, new, source_db, target_db, tables=["handles"], chunk_size=100)
    execute(old, source_db, "UPDATE handles SET handle = 'moved away' WHERE id = 990",
            "UPDATE handles SET handle = 'h990' WHERE id = 5",
            "DELETE FROM handles WHERE id = 980",
            "DELETE FROM handles WHERE id = 60",
            "INSERT INTO handles VALUES (60, 'h980', 'again')",
            f"UPDATE handles SET payload = 'v2' WHERE id <= {rewritten}")
    delta(old, new, source_db, target_db, tables=["handles"], chunk_size=100)
    expected = query(old, source_db, "SELECT * FROM handles ORDER BY id")
    assert query(new, target_db, "SELECT * FROM handles ORDER BY id") == expected
    assert (5, "h990") in [(row[0], row[1]) for row in expected]
    before = binlog_end(new)
    again = delta(old, new, source_db, target_db, tables=["handles"], chunk_size=100)
    assert again["changed"] is False and again["target_writes"] == 0
    assert binlog_events_for(new, target_db, before) == 0


def test_second_run_changes_nothing_and_writes_nothing(mysql_sides):
    old, new, source_db, target_db = mysql_sides
    fill(old, source_db)
    delta(old, new, source_db, target_db)
    churn(old, source_db)
    delta(old, new, source_db, target_db)
    before = binlog_end(new)
    again = delta(old, new, source_db, target_db)
    assert again["changed"] is False and again["target_writes"] == 0
    assert again["rows_inserted"] == again["rows_updated"] == again["rows_deleted"] == 0
    assert binlog_events_for(new, target_db, before) == 0


def test_binlog_delta_applies_row_events_since_the_recorded_position(mysql_sides):
    old, new, source_db, target_db = mysql_sides
    fill(old, source_db)
    loaded = delta(old, new, source_db, target_db)
    churn(old, source_db)
    result = delta(old, new, source_db, target_db, strategy="binlog")
    assert_same(old, new, source_db, target_db)
    assert result["rows_inserted"] > 0 and result["rows_deleted"] > 0
    assert result["binlog_position"]["position"] != loaded["binlog_position"]["position"] or \
        result["binlog_position"]["file"] != loaded["binlog_position"]["file"]
    stored = query(new, target_db, "SELECT value FROM _cutover_delta_state WHERE table_name = 'items' AND item = 'binlog'")
    assert f'"position":{result["binlog_position"]["position"]}' in stored[0][0]
    before = binlog_end(new)
    again = delta(old, new, source_db, target_db, strategy="binlog")
    assert again["changed"] is False and binlog_events_for(new, target_db, before) == 0


def test_binlog_delta_copies_a_table_truncated_on_the_source_whole(mysql_sides):
    """TRUNCATE is logged as a statement even in ROW format: no row event says the rows went."""
    old, new, source_db, target_db = mysql_sides
    fill(old, source_db)
    delta(old, new, source_db, target_db)
    assert query(new, target_db, "SELECT COUNT(*) FROM codes")[0][0] > 0
    execute(old, source_db, "TRUNCATE TABLE codes", "INSERT INTO codes (code, label) VALUES ('after', 'truncate')")
    churn(old, source_db)
    result = delta(old, new, source_db, target_db, strategy="binlog")
    assert_same(old, new, source_db, target_db)
    assert ("after", "truncate") in query(new, target_db, "SELECT code, label FROM codes")
    before = binlog_end(new)
    again = delta(old, new, source_db, target_db, strategy="binlog")
    assert again["changed"] is False and binlog_events_for(new, target_db, before) == 0
    assert result["changed"] is True


def test_binlog_delta_passes_over_other_databases_and_tables_not_copied(mysql_sides, monkeypatch):
    old, new, source_db, target_db = mysql_sides
    dropped = []
    original_filter = binlog_module.event_filter

    def counting_filter(stream):
        keep = original_filter(stream)

        def counted(data):
            kept = keep(data)
            if not kept:
                dropped.append(data[5])
            return kept
        return counted

    monkeypatch.setattr(binlog_module, "event_filter", counting_filter)
    other_db = unique_name("delta_other")
    create_database(old, other_db)
    try:
        fill(old, source_db)
        delta(old, new, source_db, target_db, exclude_tables=["codes"])
        # Tables of the same names in another database, written between the load and the delta: their
        # row events are dropped unparsed, and must not reach the target's tables of those names.
        fill(old, other_db, seed=5)
        churn(old, source_db)
        execute(old, other_db, "UPDATE items SET title = 'not ours'", "DELETE FROM memberships")
        result = delta(old, new, source_db, target_db, strategy="binlog", exclude_tables=["codes"])
        assert_same(old, new, source_db, target_db, tables=[name for name in TABLES if name != "codes"])
        assert result["tables"]["items"]["rows_inserted"] == 21   # churn's 20 new rows and id 5 re-inserted
        assert "codes" not in result["tables"]
        assert query(new, target_db, "SELECT COUNT(*) FROM codes")[0][0] == 0
        assert dropped, "the other database's row events were not dropped before parsing"
    finally:
        drop_database(old, other_db)


def test_binlog_crash_between_batches_resumes_and_applies_each_event_once(mysql_sides, monkeypatch):
    old, new, source_db, target_db = mysql_sides
    fill(old, source_db)
    delta(old, new, source_db, target_db)
    for round_number in range(6):
        execute(old, source_db, f"UPDATE items SET body = CONCAT(COALESCE(body, ''), '+{round_number}') WHERE id <= 50")
    monkeypatch.setattr(binlog_module, "BATCH_KEYS", 10)
    batches = []

    def crash_after_two(table, position):
        batches.append(position)
        if len(batches) == 2:
            raise DeltaError("injected crash after the second batch")

    with pytest.raises(DeltaError, match="injected crash"):
        delta(old, new, source_db, target_db, strategy="binlog", after_chunk=crash_after_two)
    stored = query(new, target_db, "SELECT value FROM _cutover_delta_state WHERE table_name = 'items' AND item = 'binlog'")
    assert f'"position":{batches[1]}' in stored[0][0]
    result = delta(old, new, source_db, target_db, strategy="binlog")
    assert_same(old, new, source_db, target_db)
    # The rerun starts after the stored position: it reads only the four UPDATE statements left.
    assert result["rows_updated"] == 4 * 50


def test_failed_chunk_rolls_back_and_rerun_converges(mysql_sides):
    old, new, source_db, target_db = mysql_sides
    fill(old, source_db)
    execute(new, target_db, "CREATE TRIGGER refuse_id_150 BEFORE INSERT ON items FOR EACH ROW "
                            "IF NEW.id = 150 THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'injected failure'; END IF")
    with pytest.raises(DeltaError, match="injected failure") as failure:
        delta(old, new, source_db, target_db, chunk_size=50, parallel_tables=1, tables=["parents", "items"])
    assert "rerun" in str(failure.value)
    # Chunks before the failing one were committed with their progress; the failing one left nothing.
    assert query(new, target_db, "SELECT COUNT(*), MAX(id) FROM items")[0] == (100, 100)
    execute(new, target_db, "DROP TRIGGER refuse_id_150")
    result = delta(old, new, source_db, target_db, chunk_size=50, tables=["parents", "items"])
    assert result["tables"]["items"]["resumed_from"] == ["100"]
    assert result["tables"]["items"]["rows_inserted"] == 200
    assert_same(old, new, source_db, target_db, tables=("parents", "items"))


def test_a_pass_whose_last_chunks_are_equal_is_done_and_the_next_compares_every_chunk(mysql_sides):
    old, new, source_db, target_db = mysql_sides
    fill(old, source_db)
    tables = ["parents", "items"]
    delta(old, new, source_db, target_db, chunk_size=50, tables=tables)
    # A change in the second of six chunks only: the pass writes it, then finds the rest equal.
    execute(old, source_db, "UPDATE items SET title = 'second chunk' WHERE id = 60")
    first = delta(old, new, source_db, target_db, chunk_size=50, tables=tables, verify=False)
    assert first["tables"]["items"]["rows_updated"] == 1
    # Then a change before that chunk: the next pass must compare from the first chunk again.
    execute(old, source_db, "UPDATE items SET title = 'first chunk' WHERE id = 10")
    second = delta(old, new, source_db, target_db, chunk_size=50, tables=tables)
    assert "resumed_from" not in second["tables"]["items"]
    assert second["tables"]["items"]["rows_updated"] == 1 and second["verified"] is True
    assert query(new, target_db, "SELECT title FROM items WHERE id IN (10, 60) ORDER BY id") == [
        ("first chunk",), ("second chunk",)]
    assert_same(old, new, source_db, target_db, tables=tuple(tables))


def test_watermark_delta_copies_rows_above_the_mark_and_says_deletes_are_not_seen(mysql_sides):
    old, new, source_db, target_db = mysql_sides
    fill(old, source_db)
    delta(old, new, source_db, target_db, tables=["codes"])
    execute(old, source_db, "UPDATE codes SET label = 'changed' WHERE code IN ('C0001', 'C0002')",
            "INSERT INTO codes (code, label) VALUES ('N1', 'new'), ('N2', NULL)")
    result = delta(old, new, source_db, target_db, tables=["codes"], strategy="watermark",
                   watermark_columns={"codes": "updated_at"})
    assert result["tables"]["codes"]["rows_inserted"] == 2 and result["tables"]["codes"]["rows_updated"] == 2
    assert result["deletes_seen"] is False and result["warnings"]
    assert_same(old, new, source_db, target_db, tables=("codes",))
    before = binlog_end(new)
    again = delta(old, new, source_db, target_db, tables=["codes"], strategy="watermark",
                  watermark_columns={"codes": "updated_at"})
    assert again["changed"] is False and binlog_events_for(new, target_db, before) == 0


def test_check_mode_counts_the_delta_without_writing(mysql_sides):
    old, new, source_db, target_db = mysql_sides
    fill(old, source_db)
    before = binlog_end(new)
    planned = delta(old, new, source_db, target_db, check_mode=True)
    assert planned["tables"]["items"]["rows_inserted"] == 300 and planned["verified"] is None
    assert binlog_events_for(new, target_db, before) == 0
    assert query(new, target_db, "SELECT COUNT(*) FROM items")[0][0] == 0


def test_schema_drift_fails_before_writing_and_names_table_and_column(mysql_sides):
    old, new, source_db, target_db = mysql_sides
    fill(old, source_db)
    execute(new, target_db, "ALTER TABLE memberships DROP COLUMN since")
    before = binlog_end(new)
    with pytest.raises(SchemaDrift, match="table memberships: column since"):
        delta(old, new, source_db, target_db)
    assert binlog_events_for(new, target_db, before) == 0
    assert query(new, target_db, "SELECT COUNT(*) FROM items")[0][0] == 0


def test_unknown_table_is_refused_naming_the_option(mysql_sides):
    old, new, source_db, target_db = mysql_sides
    with pytest.raises(InvalidOptions, match="tables: nosuch not found in source database") as refused:
        delta(old, new, source_db, target_db, tables=["nosuch"])
    assert refused.value.side == "source" and refused.value.option == "tables"


@pytest.fixture(scope="module")
def statement_binlog_server(lab):
    server = ScratchServer("--log-bin=mysql-bin", "--binlog-format=STATEMENT", "--server-id=77")
    yield server
    server.stop()


def test_binlog_strategy_refuses_a_source_without_row_binlog(statement_binlog_server, lab):
    from mysql_delta_lab import server_params
    new = server_params(lab["LAB_MYSQL_NEW"])
    old = statement_binlog_server.params
    source_db, target_db = unique_name("delta_stmt"), unique_name("delta_stmt")
    create_database(old, source_db)
    create_database(new, target_db)
    try:
        before = binlog_end(new)
        with pytest.raises(BinlogNotReady, match="binlog_format is STATEMENT \\(set binlog_format=ROW\\)") as refused:
            delta(old, new, source_db, target_db, strategy="binlog")
        assert refused.value.side == "source"
        assert binlog_events_for(new, target_db, before) == 0
    finally:
        drop_database(new, target_db)


def test_freeze_source_sets_read_only_before_the_final_pass(statement_binlog_server, lab):
    from mysql_delta_lab import server_params
    new = server_params(lab["LAB_MYSQL_NEW"])
    old = statement_binlog_server.params
    source_db, target_db = unique_name("delta_frz"), unique_name("delta_frz")
    create_database(old, source_db)
    create_database(new, target_db)
    try:
        fill(old, source_db, items=20)
        result = delta(old, new, source_db, target_db, freeze_source="read_only")
        assert result["source_frozen_at"] and result["source_read_only"] is True
        assert query(old, source_db, "SELECT @@GLOBAL.read_only")[0][0] == 1
        assert_same(old, new, source_db, target_db)
    finally:
        execute(old, source_db, "SET GLOBAL read_only = OFF")
        drop_database(new, target_db)


def test_module_check_mode_then_apply_then_rerun_unchanged(mysql_sides, ansible_module):
    old, new, source_db, target_db = mysql_sides
    fill(old, source_db, items=60)
    args = {"source": side(old, source_db), "target": side(new, target_db), "tables": ["parents", "items", "audit_log"]}
    planned = ansible_module("mysql_delta_apply", args, check=True, diff=True)
    assert planned.get("failed") is not True, planned.get("msg")
    assert planned["changed"] is True and planned["tables"]["items"]["rows_inserted"] == 60
    assert "items: +60" in planned["diff"]["after"]
    assert query(new, target_db, "SELECT COUNT(*) FROM items")[0][0] == 0
    applied = ansible_module("mysql_delta_apply", args)
    assert applied["changed"] is True and applied["verified"] is True
    assert_same(old, new, source_db, target_db, tables=("parents", "items", "audit_log"))
    assert "'lab'" not in applied["_stdout"]
    again = ansible_module("mysql_delta_apply", args)
    assert again["changed"] is False and again["target_writes"] == 0


def test_module_refuses_a_missing_target_database_naming_side_and_option(mysql_sides, ansible_module):
    old, new, source_db, _unused = mysql_sides
    result = ansible_module("mysql_delta_apply", {"source": side(old, source_db), "target": side(new, "no_such_db_here")})
    assert result["failed"] is True
    assert "target.database 'no_such_db_here' does not exist" in result["msg"]
    assert result["side"] == "target" and result["option"] == "database"
