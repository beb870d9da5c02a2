"""postgresql_delta_apply against the lab's two PostgreSQL servers (old = source, new = target)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import psycopg
import pytest
from pg_delta_lab import (
    TABLES,
    assert_equal,
    assert_rerun_writes_nothing,
    churn,
    connect,
    seed,
    sequence_next,
    side,
    stop_server,
    table_digest,
    temporary_server,
)

from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.errors import DeltaError
from ansible_collections.cutover.migration.plugins.module_utils.pg_delta import run as pg_run
from ansible_collections.cutover.migration.plugins.module_utils.pg_delta.options import delta_options
from ansible_collections.cutover.migration.plugins.module_utils.pg_delta.run import run_delta

STATE_DIR = Path(__file__).resolve().parents[2] / "lab" / "state"


def run(old, new, source_db, target_db, check_mode=False, after_chunk=None, **params):
    options = delta_options({"source": side(old, source_db), "target": side(new, target_db), **params})
    return run_delta(options, check_mode=check_mode, after_chunk=after_chunk)


def assert_no_write_on_rerun(old, new, source_db, target_db, **params):
    assert_rerun_writes_nothing(lambda: run(old, new, source_db, target_db, **params), new, target_db)


def insert_on_new_side_gets_fresh_id(new, target_db, old, source_db):
    with connect(new, target_db) as connection:
        item = connection.execute("INSERT INTO items (title) VALUES ('after cutover') RETURNING id").fetchone()[0]
        parent = connection.execute("INSERT INTO parents (name) VALUES ('after cutover') RETURNING id").fetchone()[0]
        event = connection.execute("INSERT INTO events (region) VALUES ('eu') RETURNING id").fetchone()[0]
    with connect(old, source_db) as connection:
        highest = connection.execute("SELECT (SELECT max(id) FROM items), (SELECT max(id) FROM parents), "
                                     "(SELECT max(id) FROM events)").fetchone()
    assert item > highest[0] and parent > highest[1] and event > highest[2]


def index_definitions(params, database):
    with connect(params, database) as connection:
        return sorted(row[0] for row in connection.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'items'").fetchall())


def test_initial_load_copies_every_type_and_sets_sequences(pg_sides):
    old, new, source_db, target_db = pg_sides
    seed(old, source_db)
    with connect(old, source_db) as connection:
        # Ids handed out but never stored (a rolled-back insert): the target must not reuse them.
        connection.execute("SELECT nextval('items_id_seq') FROM generate_series(1, 5)")
    result = run(old, new, source_db, target_db)
    assert result["changed"] is True and result["verified"] is True
    assert result["rows_inserted"] == sum(table_digest(old, source_db, t)[0] for t in TABLES)
    assert result["keyless_tables"] == ["public.audit_log"]
    assert result["tables"]["public.audit_log"]["copied_whole"] is True
    assert_equal(old, source_db, new, target_db)
    assert index_definitions(new, target_db) == index_definitions(old, source_db)
    items = next(entry for entry in result["sequences"] if entry["table"] == "public.items")
    assert items["source_next"] == 406 and items["target_max"] == 400 and items["after"] == 406
    assert sequence_next(new, target_db, "items", "id") == 406
    insert_on_new_side_gets_fresh_id(new, target_db, old, source_db)


HANDLES = """
CREATE TYPE region AS ENUM ('eu', 'us');
CREATE TABLE handles (id int PRIMARY KEY, handle text NOT NULL UNIQUE, code char(3), area region, payload text,
                      UNIQUE (code, area));
"""


@pytest.mark.parametrize("rewritten", [0, 500], ids=["changed rows", "whole chunks"])
def test_checksum_applies_a_unique_value_moved_to_a_row_of_an_earlier_chunk(pg_sides, rewritten):
    """Values of two other unique keys (one of them composite, with an enum) move from rows near the
    end of the table to rows of earlier chunks: the target's later row still holds each value when
    the earlier chunk is copied, by key or (with its rows rewritten) whole."""
    old, new, source_db, target_db = pg_sides
    for params, database in ((old, source_db), (new, target_db)):
        with connect(params, database) as connection:
            connection.execute(HANDLES)
    with connect(old, source_db) as connection:
        connection.execute("INSERT INTO handles SELECT n, 'h' || n, lpad((n % 1000)::text, 3, '0'), "
                           "(CASE WHEN n <= 1000 THEN 'eu' ELSE 'us' END)::region, 'v1' "
                           "FROM generate_series(1, 2000) AS n")
    run(old, new, source_db, target_db, tables=["public.handles"], chunk_size=100)
    with connect(old, source_db) as connection:
        with connection.transaction():
            connection.execute("UPDATE handles SET handle = 'moved away' WHERE id = 1990")
            connection.execute("UPDATE handles SET handle = 'h1990' WHERE id = 5")
            connection.execute("UPDATE handles SET code = NULL WHERE id = 1500")
            connection.execute("UPDATE handles SET code = '500', area = 'us' WHERE id = 40")
        connection.execute("DELETE FROM handles WHERE id = 1800")
        connection.execute("UPDATE handles SET handle = 'h1800' WHERE id = 60")
        connection.execute("UPDATE handles SET payload = 'v2' WHERE id <= %s", [rewritten])
    run(old, new, source_db, target_db, tables=["public.handles"], chunk_size=100)
    with connect(old, source_db) as source, connect(new, target_db) as target:
        expected = source.execute("SELECT * FROM handles ORDER BY id").fetchall()
        assert target.execute("SELECT * FROM handles ORDER BY id").fetchall() == expected
    assert (5, "h1990") in [(row[0], row[1]) for row in expected]
    assert_no_write_on_rerun(old, new, source_db, target_db, tables=["public.handles"], chunk_size=100)


def test_checksum_delta_moves_only_the_churn_and_a_rerun_writes_nothing(pg_sides):
    old, new, source_db, target_db = pg_sides
    seed(old, source_db)
    run(old, new, source_db, target_db)
    churn(old, source_db)
    result = run(old, new, source_db, target_db, chunk_size=10)
    assert_equal(old, source_db, new, target_db)
    items = result["tables"]["public.items"]
    assert items["rows_inserted"] == 30 and items["rows_deleted"] == 15
    # 25 updated, body '' and NULL, and the row deleted and re-inserted with its key.
    assert 26 <= items["rows_updated"] <= 28
    assert items["chunks_differing"] < items["chunks_checked"]
    assert_no_write_on_rerun(old, new, source_db, target_db, chunk_size=10)
    insert_on_new_side_gets_fresh_id(new, target_db, old, source_db)


def test_logical_delta_streams_the_slot_and_a_rerun_writes_nothing(pg_sides):
    old, new, source_db, target_db = pg_sides
    seed(old, source_db)
    first = run(old, new, source_db, target_db, strategy="logical")
    slot = first["replication_slot"]
    assert slot["created"] is True and slot["exists"] is True and slot["consistent_lsn"]
    assert set(slot["checksum_tables"]) == {"public.audit_log", "public.codes"}
    assert any("replication slot" in warning for warning in first["warnings"])
    churn(old, source_db)
    with connect(old, source_db) as connection:
        connection.execute("TRUNCATE memberships")
        connection.execute("INSERT INTO memberships VALUES ('tr', 1, 'after truncate', NULL)")
    second = run(old, new, source_db, target_db, strategy="logical")
    assert_equal(old, source_db, new, target_db)
    assert second["replication_slot"]["created"] is False
    assert second["replication_slot"]["position"] > slot["consistent_lsn"] or \
        len(second["replication_slot"]["position"]) > len(slot["consistent_lsn"])
    items = second["tables"]["public.items"]
    assert items["rows_inserted"] >= 31 and items["rows_deleted"] >= 16   # events, incl. delete + re-insert
    assert items["chunks_checked"] == 0          # streamed, not compared
    assert second["tables"]["public.memberships"]["copied_whole"] is True
    assert_no_write_on_rerun(old, new, source_db, target_db, strategy="logical")
    insert_on_new_side_gets_fresh_id(new, target_db, old, source_db)


def test_checksum_crash_mid_apply_then_rerun_resumes_and_converges(pg_sides):
    old, new, source_db, target_db = pg_sides
    seed(old, source_db)

    def crash(table, index):
        if table == "public.items" and index == 1:
            raise DeltaError("injected crash after the second chunk of items")

    indexes = index_definitions(new, target_db)
    assert any("items_by_parent" in definition for definition in indexes)
    with pytest.raises(DeltaError, match="injected crash"):
        run(old, new, source_db, target_db, chunk_size=100, parallel_tables=1, after_chunk=crash)
    assert 0 < table_digest(new, target_db, "public.items")[0] < 400
    # The load deferred the secondary index; the stopped run left it to the next one.
    assert not any("items_by_parent" in definition for definition in index_definitions(new, target_db))
    result = run(old, new, source_db, target_db, chunk_size=100)
    assert result["tables"]["public.items"]["resumed_from"] == [200]
    assert_equal(old, source_db, new, target_db)
    assert index_definitions(new, target_db) == indexes
    assert_no_write_on_rerun(old, new, source_db, target_db, chunk_size=100)


def test_a_pass_whose_last_chunks_are_equal_is_done_and_the_next_compares_every_chunk(pg_sides):
    old, new, source_db, target_db = pg_sides
    seed(old, source_db)
    tables = ["public.parents", "public.items"]
    run(old, new, source_db, target_db, chunk_size=100, tables=tables)
    # A change in the second of four chunks only: the pass writes it, then finds the rest equal.
    with connect(old, source_db) as connection:
        connection.execute("UPDATE items SET title = 'second chunk' WHERE id = 150")
    first = run(old, new, source_db, target_db, chunk_size=100, tables=tables, verify=False)
    assert first["tables"]["public.items"]["rows_updated"] == 1
    # Then a change before that chunk: the next pass must compare from the first chunk again.
    with connect(old, source_db) as connection:
        connection.execute("UPDATE items SET title = 'first chunk' WHERE id = 10")
    second = run(old, new, source_db, target_db, chunk_size=100, tables=tables)
    assert "resumed_from" not in second["tables"]["public.items"]
    assert second["tables"]["public.items"]["rows_updated"] == 1 and second["verified"] is True
    with connect(new, target_db) as connection:
        titles = connection.execute("SELECT title FROM items WHERE id IN (10, 150) ORDER BY id").fetchall()
    assert titles == [("first chunk",), ("second chunk",)]
    assert_equal(old, source_db, new, target_db, tables=tables)


def test_logical_crash_after_a_batch_applies_each_transaction_once(pg_sides, monkeypatch):
    old, new, source_db, target_db = pg_sides
    seed(old, source_db)
    run(old, new, source_db, target_db, strategy="logical")
    with connect(old, source_db) as connection:
        for number in range(40):
            connection.execute("INSERT INTO items (title) VALUES (%s)", [f"txn {number}"])
            connection.execute("UPDATE items SET body = %s WHERE id = %s", [f"touched {number}", number + 1])
    pending = run(old, new, source_db, target_db, strategy="logical", check_mode=True)
    total = pending["tables"]["public.items"]
    assert total["rows_inserted"] == 40 and total["rows_updated"] == 40
    # Small peeks: several target transactions, and the crash comes after the first commits
    # but before the slot is advanced past it.
    monkeypatch.setattr(pg_run, "PEEK_CHANGES", 30)

    def crash(table, position):
        raise DeltaError(f"injected crash after the batch up to {position}")

    with pytest.raises(DeltaError, match="injected crash"):
        run(old, new, source_db, target_db, strategy="logical", after_chunk=crash)
    left = run(old, new, source_db, target_db, strategy="logical", check_mode=True)["tables"]["public.items"]
    assert 0 < left["rows_inserted"] < 40
    result = run(old, new, source_db, target_db, strategy="logical")
    assert result["tables"]["public.items"]["rows_inserted"] == left["rows_inserted"]
    assert result["tables"]["public.items"]["rows_updated"] == left["rows_updated"]
    assert_equal(old, source_db, new, target_db)
    assert_no_write_on_rerun(old, new, source_db, target_db, strategy="logical")


def test_freeze_source_terminates_writers_and_the_final_pass_drops_the_slot(pg_sides):
    old, new, source_db, target_db = pg_sides
    seed(old, source_db, items=50)
    run(old, new, source_db, target_db, strategy="logical")
    writer = connect(old, source_db, autocommit=False)
    writer.execute("INSERT INTO parents (name) VALUES ('uncommitted')")
    writer_pid = writer.info.backend_pid
    with connect(old, source_db) as connection:
        connection.execute("INSERT INTO parents (name) VALUES ('committed before the freeze')")
    result = run(old, new, source_db, target_db, strategy="logical", freeze_source="read_only")
    try:
        assert writer_pid in result["terminated_sessions"]
        assert result["source_frozen_at"] and result["source_read_only"] is True
        assert result["replication_slot"]["dropped"] is True and result["replication_slot"]["exists"] is False
        assert_equal(old, source_db, new, target_db)
        with connect(old, source_db) as connection:
            assert connection.execute("SELECT count(*) FROM pg_replication_slots WHERE database = %s",
                                      [source_db]).fetchone()[0] == 0
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                connection.execute("INSERT INTO parents (name) VALUES ('after the freeze')")
        again = run(old, new, source_db, target_db, strategy="logical", freeze_source="read_only")
        assert again["changed"] is False and again["replication_slot"]["created"] is False
    finally:
        writer.close()
        with connect(old) as connection:
            connection.execute(f'ALTER DATABASE "{source_db}" RESET default_transaction_read_only')


def test_state_absent_drops_slot_publication_and_state_table(pg_sides):
    old, new, source_db, target_db = pg_sides
    seed(old, source_db, items=20)
    run(old, new, source_db, target_db, strategy="logical", slot_name="cutover_absent_test")
    checked = run(old, new, source_db, target_db, state="absent", slot_name="cutover_absent_test", check_mode=True)
    assert checked["changed"] is True
    with connect(old, source_db) as connection:
        assert connection.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'cutover_absent_test'"
                                  ).fetchone()[0] == 1
    removed = run(old, new, source_db, target_db, state="absent", slot_name="cutover_absent_test")
    assert removed["replication_slot"]["dropped"] is True and removed["publication_dropped"] is True
    assert removed["state_table_dropped"] is True
    with connect(old, source_db) as connection:
        assert connection.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'cutover_absent_test'"
                                  ).fetchone()[0] == 0
        assert connection.execute("SELECT count(*) FROM pg_publication").fetchone()[0] == 0
    with connect(new, target_db) as connection:
        assert connection.execute("SELECT to_regclass('public._cutover_delta_state')").fetchone()[0] is None
    assert run(old, new, source_db, target_db, state="absent", slot_name="cutover_absent_test")["changed"] is False


def test_schema_drift_fails_before_writing(pg_sides):
    old, new, source_db, target_db = pg_sides
    seed(old, source_db, items=20)
    with connect(new, target_db) as connection:
        connection.execute("ALTER TABLE items DROP COLUMN docb")
        connection.execute("ALTER TYPE mood ADD VALUE 'angry'")
    with pytest.raises(DeltaError) as raised:
        run(old, new, source_db, target_db)
    message = str(raised.value)
    assert "public.items: column docb" in message and "missing on the target" in message
    assert "public.items: column feeling" in message   # enum labels differ
    assert "nothing was written" in message and raised.value.details["side"] == "target"
    assert table_digest(new, target_db, "public.parents")[0] == 0
    with connect(new, target_db) as connection:
        assert connection.execute("SELECT to_regclass('public._cutover_delta_state')").fetchone()[0] is None


def test_unknown_table_and_bad_slot_name_fail_naming_the_option(pg_sides):
    old, new, source_db, target_db = pg_sides
    with pytest.raises(DeltaError) as raised:
        run(old, new, source_db, target_db, tables=["nosuch"])
    assert "tables: public.nosuch not found in source database" in str(raised.value)
    assert raised.value.details == {"side": "source", "option": "tables"}
    with pytest.raises(DeltaError, match="slot_name 'Bad-Name'"):
        run(old, new, source_db, target_db, strategy="logical", slot_name="Bad-Name")
    with pytest.raises(DeltaError, match="cannot connect to the source") as raised:
        run(dict(old, password="wrong"), new, source_db, target_db)
    assert raised.value.details["option"] == "host"
    # Both sides are opened at the same moment: the source's failure is still the one named when
    # both fail, and the side that did connect is not left connected.
    with pytest.raises(DeltaError, match="cannot connect to the source"):
        run(dict(old, password="wrong"), dict(new, password="wrong"), source_db, target_db)
    with pytest.raises(DeltaError, match="cannot connect to the target") as raised:
        run(old, dict(new, password="wrong"), source_db, target_db)
    assert raised.value.details == {"side": "target", "option": "host"}
    assert others_connected(old, source_db) == 0


def others_connected(params, database: str) -> int:
    """Sessions on ``database`` other than this one, once those closing have ended (a backend
    leaves pg_stat_activity a moment after its client closed)."""
    with connect(params, database) as connection:
        for _attempt in range(50):
            count = connection.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                                       "AND pid <> pg_backend_pid()", [database]).fetchone()[0]
            if count == 0:
                break
            time.sleep(0.05)
    return count


def test_logical_needs_wal_level_logical_on_the_source(pg_lab):
    from pg_delta_lab import server_params
    new = server_params(pg_lab["LAB_PG_NEW"])
    server = temporary_server(STATE_DIR / f"pg-replica-{uuid.uuid4().hex[:8]}", "127.0.56.13", 5433,
                              {"wal_level": "replica"})
    try:
        with connect(server) as connection:
            connection.execute("CREATE DATABASE shop")
        with connect(server, "shop") as connection:
            connection.execute("CREATE TABLE t (id int PRIMARY KEY)")
        with connect(new) as connection:
            target_db = f"pgdelta_wal_{uuid.uuid4().hex[:8]}"
            connection.execute(f'CREATE DATABASE "{target_db}"')
        try:
            with connect(new, target_db) as connection:
                connection.execute("CREATE TABLE t (id int PRIMARY KEY)")
            with pytest.raises(DeltaError) as raised:
                run(server, new, "shop", target_db, strategy="logical")
            assert "wal_level=logical on the source, which has wal_level=replica" in str(raised.value)
            assert raised.value.details["side"] == "source" and raised.value.details["option"] == "strategy"
            with connect(new, target_db) as connection:
                assert connection.execute("SELECT to_regclass('public._cutover_delta_state')").fetchone()[0] is None
        finally:
            with connect(new) as connection:
                connection.execute(f'DROP DATABASE "{target_db}" WITH (FORCE)')
    finally:
        stop_server(server)


def test_module_check_mode_reports_without_writing_then_applies(pg_sides, ansible_module):
    old, new, source_db, target_db = pg_sides
    seed(old, source_db, items=60)
    args = {"source": side(old, source_db), "target": side(new, target_db), "strategy": "logical"}
    checked = ansible_module("postgresql_delta_apply", args, check=True, diff=True)
    assert checked.get("failed") is not True, checked.get("msg")
    assert checked["changed"] is True and checked["rows_inserted"] > 60
    assert checked["replication_slot"]["would_create"] is True
    assert "public.items: +60" in checked["diff"]["after"]
    assert table_digest(new, target_db, "public.items")[0] == 0
    with connect(old, source_db) as connection:
        assert connection.execute("SELECT count(*) FROM pg_replication_slots WHERE database = %s",
                                  [source_db]).fetchone()[0] == 0
    applied = ansible_module("postgresql_delta_apply", args)
    assert applied["changed"] is True and applied["verified"] is True
    assert_equal(old, source_db, new, target_db)
    assert old["password"] not in applied["_stdout"]
    again = ansible_module("postgresql_delta_apply", args)
    assert again["changed"] is False and again["target_writes"] == 0
    failed = ansible_module("postgresql_delta_apply", dict(args, tables=["missing_table"]))
    assert failed["failed"] is True and failed["option"] == "tables" and failed["side"] == "source"


SEQUENCED = """
CREATE SEQUENCE shared_seq;
CREATE TABLE seq_c (id bigint PRIMARY KEY DEFAULT nextval('shared_seq'), v text);
CREATE TABLE seq_d (id bigint PRIMARY KEY DEFAULT nextval('shared_seq'), v text);
CREATE TABLE seq_i (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, v text);
CREATE TABLE seq_n (id numeric(20) PRIMARY KEY DEFAULT nextval('shared_seq'), v text);
""" + "".join(f"CREATE TABLE seq_many_{number} (id bigserial PRIMARY KEY, v text);\n" for number in range(20))


def sequence_values(params, database, sequences):
    with connect(params, database) as connection:
        return {name: connection.execute(f"SELECT last_value, is_called FROM {name}").fetchone() for name in sequences}


def count_statements_of_fix_sequences(monkeypatch) -> list[str]:
    """Every statement a run's fix_sequences sends, on either server."""
    sent: list[str] = []
    active = []
    fix, query, execute = pg_run.fix_sequences, pg_run.pg.Server.query, pg_run.pg.Server.execute

    def fixing(*args, **kwargs):
        active.append(True)
        try:
            return fix(*args, **kwargs)
        finally:
            active.pop()

    def counted(original):
        def statement(self, sql, *args, **kwargs):
            if active:
                sent.append(sql)
            return original(self, sql, *args, **kwargs)
        return statement

    monkeypatch.setattr(pg_run, "fix_sequences", fixing)
    monkeypatch.setattr(pg_run.pg.Server, "query", counted(query))
    monkeypatch.setattr(pg_run.pg.Server, "execute", counted(execute))
    return sent


def test_sequences_of_many_tables_are_fixed_in_a_few_statements(pg_sides, monkeypatch):
    """24 sequences read and set with a few statements (not two or three per sequence, each a
    round trip over a link to a data centre); a sequence that feeds several columns goes past all
    of them, and a rerun finds each sequence already far enough (set with is_called = false)."""
    old, new, source_db, target_db = pg_sides
    for params, database in ((old, source_db), (new, target_db)):
        with connect(params, database) as connection:
            connection.execute(SEQUENCED)
    with connect(old, source_db) as connection:
        connection.execute("INSERT INTO seq_c (v) SELECT 'c' FROM generate_series(1, 10)")
        connection.execute("INSERT INTO seq_d (v) SELECT 'd' FROM generate_series(1, 15)")
        # A row whose id was given, not drawn: the shared sequence is behind seq_c's data.
        connection.execute("INSERT INTO seq_c VALUES (500, 'given')")
        connection.execute("INSERT INTO seq_i (v) SELECT 'i' FROM generate_series(1, 7)")
        connection.execute("INSERT INTO seq_n VALUES (30, 'n')")
        for number in range(20):
            connection.execute(f"INSERT INTO seq_many_{number} (v) SELECT 'm' FROM generate_series(1, %s)",
                               [number + 1])
    tables = ["public.seq_c", "public.seq_d", "public.seq_i", "public.seq_n"] + [
        f"public.seq_many_{number}" for number in range(20)]
    sent = count_statements_of_fix_sequences(monkeypatch)
    result = run(old, new, source_db, target_db, tables=tables)
    by_table = {entry["table"]: entry for entry in result["sequences"]}
    assert len(result["sequences"]) == 24
    assert {by_table[f"public.seq_{name}"]["after"] for name in ("c", "d", "n")} == {501}
    assert by_table["public.seq_c"]["target_max"] == 500 and by_table["public.seq_d"]["source_next"] == 26
    assert by_table["public.seq_i"]["after"] == 8 and by_table["public.seq_many_19"]["after"] == 21
    with connect(new, target_db) as connection:
        assert connection.execute("INSERT INTO seq_d (v) VALUES ('new side') RETURNING id").fetchone()[0] == 501
        assert connection.execute("INSERT INTO seq_i (v) VALUES ('new side') RETURNING id").fetchone()[0] == 8
        assert connection.execute("INSERT INTO seq_many_7 (v) VALUES ('new side') RETURNING id").fetchone()[0] == 9
        connection.execute("DELETE FROM seq_d WHERE v = 'new side'")
        connection.execute("DELETE FROM seq_i WHERE v = 'new side'")
        connection.execute("DELETE FROM seq_many_7 WHERE v = 'new side'")
    # The target's sequences, its columns' maxima, one setval for all (the source's sequences are
    # read with the columns that own them, at the start).
    assert len(sent) <= 3, sent
    sent.clear()
    rerun = run(old, new, source_db, target_db, tables=tables)
    assert not any(entry["changed"] for entry in rerun["sequences"]) and len(sent) <= 2, sent
    assert {entry["before"] for entry in rerun["sequences"] if entry["sequence"] == "public.shared_seq"} == {502}


def test_a_sequence_past_its_maximum_fails_and_no_sequence_is_changed(pg_sides):
    old, new, source_db, target_db = pg_sides
    for params, database in ((old, source_db), (new, target_db)):
        with connect(params, database) as connection:
            connection.execute(SEQUENCED)
    with connect(new, target_db) as connection:
        # The last sequence in the report's order: the ones before it would be set already.
        connection.execute("ALTER SEQUENCE seq_many_0_id_seq MAXVALUE 3")
    with connect(old, source_db) as connection:
        connection.execute("INSERT INTO seq_c (v) SELECT 'c' FROM generate_series(1, 60)")
        connection.execute("INSERT INTO seq_many_0 (v) SELECT 'm' FROM generate_series(1, 5)")
    tables = ["public.seq_c", "public.seq_many_0"]
    sequences = ["public.shared_seq", "public.seq_many_0_id_seq"]
    before = sequence_values(new, target_db, sequences)
    with pytest.raises(DeltaError) as failure:
        run(old, new, source_db, target_db, tables=tables)
    message = str(failure.value)
    assert "public.seq_many_0_id_seq (public.seq_many_0.id) must continue at 6, past its MAXVALUE 3" in message
    assert "ALTER SEQUENCE" in message and failure.value.side == "target"
    assert sequence_values(new, target_db, sequences) == before


# Uniqueness that names no plain column list (see test_postgresql_delta_logical), and one that is
# not equality: bookings of a room must not overlap.
BEYOND_KEYS = {
    "expression": "CREATE UNIQUE INDEX tags_lower ON tags (lower(tag))",
    "partial": "CREATE UNIQUE INDEX tags_live ON tags (tag) WHERE live",
    "exclusion": "ALTER TABLE tags ADD CONSTRAINT tags_exclusive EXCLUDE USING btree (tag WITH =)",
    "overlap": "ALTER TABLE tags ADD CONSTRAINT tags_no_overlap EXCLUDE USING gist (during WITH &&) WHERE (live)",
}


@pytest.mark.parametrize("constraint", sorted(BEYOND_KEYS))
def test_checksum_frees_a_value_moved_under_uniqueness_beyond_plain_keys(pg_sides, constraint):
    """A tag (or a time slot) moves from a row of the last chunk to a row of the first: the target's
    last-chunk row still holds it when the first chunk is copied, which fails in the index (or the
    exclusion constraint) whatever the rerun. The target's colliding rows are found by the index's
    own expressions, operators and predicate, deleted, and brought back by their chunk."""
    old, new, source_db, target_db = pg_sides
    for params, database in ((old, source_db), (new, target_db)):
        with connect(params, database) as connection:
            connection.execute("CREATE TABLE tags (id int PRIMARY KEY, tag text NOT NULL, live bool NOT NULL, "
                               "during tstzrange NOT NULL)")
            connection.execute(BEYOND_KEYS[constraint])
    with connect(old, source_db) as connection:
        connection.execute("INSERT INTO tags SELECT n, 'T' || n, n % 7 <> 0, tstzrange(timestamptz '2026-01-01' + "
                           "n * interval '1 hour', timestamptz '2026-01-01' + (n + 1) * interval '1 hour') "
                           "FROM generate_series(1, 600) AS n")
    params = {"tables": ["public.tags"], "chunk_size": 100}
    run(old, new, source_db, target_db, **params)
    with connect(old, source_db) as connection, connection.transaction():
        # Row 590 hands its tag and its hour to row 2, and gets a fresh pair itself.
        connection.execute("UPDATE tags SET tag = 'gone', during = tstzrange('2030-01-01', '2030-01-02') "
                           "WHERE id = 590")
        connection.execute("UPDATE tags SET tag = 'T590', during = tstzrange(timestamptz '2026-01-01' + "
                           "interval '590 hours', timestamptz '2026-01-01' + interval '591 hours') WHERE id = 2")
    result = run(old, new, source_db, target_db, **params)
    with connect(old, source_db) as source, connect(new, target_db) as target:
        expected = source.execute("SELECT * FROM tags ORDER BY id").fetchall()
        assert target.execute("SELECT * FROM tags ORDER BY id").fetchall() == expected
    # Row 590, freed by the first chunk, is copied back by its own as a row the target lacks.
    assert result["verified"] is True and result["rows_updated"] + result["rows_inserted"] == 2
    assert_no_write_on_rerun(old, new, source_db, target_db, **params)
