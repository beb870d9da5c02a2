"""strategy=logical against the lab's PostgreSQL pair: keys of every kind, batches spanning several
peeks, a crash between the target's commit and the slot's advance, and the slot confirmed to the end."""

from __future__ import annotations

import os
import threading

import pytest
from pg_delta_lab import assert_rerun_writes_nothing, connect, side, target_write_count

from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.errors import ConnectionFailed, DeltaError
from ansible_collections.cutover.migration.plugins.module_utils.pg_delta import postgres as pg
from ansible_collections.cutover.migration.plugins.module_utils.pg_delta import run as pg_run
from ansible_collections.cutover.migration.plugins.module_utils.pg_delta.options import delta_options
from ansible_collections.cutover.migration.plugins.module_utils.pg_delta.run import run_delta

EXTRA = """
CREATE TABLE odd_keys (
  code char(6) NOT NULL, token uuid NOT NULL, feeling mood NOT NULL, name text NOT NULL, value text,
  PRIMARY KEY (code, token, feeling, name)
);
CREATE TABLE texts (name text PRIMARY KEY, value text, wide text);
"""
TABLES = ["public.odd_keys", "public.texts"]
# Keys an array literal or COPY would have to quote: separators, quotes, braces, a backslash,
# the word NULL, blanks, the empty string, non-ASCII, control characters.
NAMES = ["plain", "a,b", 'quo"te', "{braces}", "back\\slash", "NULL", " spaced ", "", "\u00fcn\u00ef \U0001F501",
         "tab\there", "new\nline"]
TOKENS = ["00000000-0000-0000-0000-000000000001", "c0ffee00-0000-4000-8000-00000000abcd"]


def run(old, new, source_db, target_db, **params):
    after_chunk = params.pop("after_chunk", None)
    options = delta_options({"source": side(old, source_db), "target": side(new, target_db), "strategy": "logical",
                             "tables": TABLES, **params})
    return run_delta(options, after_chunk=after_chunk)


def rows(params, database, table):
    with connect(params, database) as connection:
        return connection.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()


def assert_same(old, source_db, new, target_db):
    for table in TABLES:
        assert repr(rows(old, source_db, table)) == repr(rows(new, target_db, table)), table


def slot_confirmed(old, source_db) -> int:
    with connect(old, source_db) as connection:
        found = connection.execute("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE database = %s",
                                   [source_db]).fetchone()
    return pg.lsn_number(found[0])


@pytest.fixture
def loaded(pg_sides):
    """Both sides with the extra tables, a few rows loaded by a first logical run (slot created)."""
    old, new, source_db, target_db = pg_sides
    for params, database in ((old, source_db), (new, target_db)):
        with connect(params, database) as connection:
            connection.execute(EXTRA)
    with connect(old, source_db) as connection:
        # Incompressible, so stored out of line: an update of another column leaves it out of the stream.
        wide = os.urandom(3000).hex()
        for name in NAMES[:6]:
            connection.execute("INSERT INTO texts VALUES (%s, 'v1', %s)", [name, wide])
        for number, (code, token, feeling) in enumerate([("ab", TOKENS[0], "happy"), ("ab", TOKENS[1], "sad"),
                                                         ("a,b", TOKENS[0], ""), ("{x}", TOKENS[1], "happy")]):
            connection.execute("INSERT INTO odd_keys VALUES (%s, %s, %s, %s, %s)",
                               [code, token, feeling, NAMES[number], f"first {number}"])
    first = run(old, new, source_db, target_db)
    assert first["replication_slot"]["created"] is True
    assert_same(old, source_db, new, target_db)
    return pg_sides


@pytest.mark.parametrize("slice_keys", [pg_run.APPLY_SLICE_KEYS, 2])
def test_every_kind_of_key_across_several_peeks_each_transaction_once(loaded, monkeypatch, slice_keys):
    old, new, source_db, target_db = loaded
    # Slices of 2 keys: a peek's keys are deleted, read and copied in several slices.
    monkeypatch.setattr(pg_run, "APPLY_SLICE_KEYS", slice_keys)
    with connect(old, source_db) as connection:
        connection.execute("INSERT INTO texts (name, value) SELECT unnest(%s::text[]), 'v1'", [NAMES[6:]])
        connection.execute("UPDATE texts SET value = 'v2' WHERE name = ANY(%s)", [["a,b", "NULL"]])
        connection.execute("UPDATE texts SET name = 'renamed' WHERE name = 'plain'")
        connection.execute("DELETE FROM texts WHERE name = '{braces}'")
        connection.execute("INSERT INTO texts VALUES ('{braces}', 'back', NULL)")
        connection.execute("INSERT INTO texts VALUES ('ephemeral', 'gone soon', NULL)")
        connection.execute("DELETE FROM texts WHERE name = 'ephemeral'")
        for number in range(10):
            connection.execute("UPDATE texts SET value = %s WHERE name = ''", [f"round {number}"])
        connection.execute("UPDATE odd_keys SET value = 'changed' WHERE code = 'ab'")
        connection.execute("UPDATE odd_keys SET feeling = 'sad' WHERE code = 'a,b'")
        connection.execute("DELETE FROM odd_keys WHERE code = '{x}'")
        connection.execute("INSERT INTO odd_keys VALUES ('new', %s, '', '', NULL)", [TOKENS[1]])
    # A handful of messages per peek: the batch spans many peeks, each its own target transaction.
    monkeypatch.setattr(pg_run, "PEEK_CHANGES", 5)
    positions: list[str] = []
    result = run(old, new, source_db, target_db, after_chunk=lambda table, position: positions.append(position))
    assert_same(old, source_db, new, target_db)
    assert len(positions) >= 4
    assert [pg.lsn_number(p) for p in positions] == sorted({pg.lsn_number(p) for p in positions})
    texts, odd = result["tables"]["public.texts"], result["tables"]["public.odd_keys"]
    assert (texts["rows_inserted"], texts["rows_updated"], texts["rows_deleted"]) == (7, 13, 2)
    assert (odd["rows_inserted"], odd["rows_updated"], odd["rows_deleted"]) == (1, 3, 1)
    assert texts["chunks_checked"] == 0 and not texts["copied_whole"]
    assert slot_confirmed(old, source_db) >= pg.lsn_number(positions[-1])
    assert_rerun_writes_nothing(lambda: run(old, new, source_db, target_db), new, target_db)


def test_a_failed_slice_rolls_the_whole_peek_back_and_the_rerun_converges(loaded, monkeypatch):
    """Keys met again in later transactions and slices (inserted, updated, deleted, inserted again),
    a copy failing in the third slice: nothing of the peek stays on the target, the slot is not
    advanced, and the rerun applies every change once."""
    old, new, source_db, target_db = loaded
    with connect(old, source_db) as connection:
        connection.execute("INSERT INTO texts (name, value) SELECT 'slice ' || n, 'v1' FROM generate_series(1, 9) n")
        connection.execute("UPDATE texts SET value = 'v2' WHERE name IN ('slice 2', 'slice 5', 'a,b', 'NULL')")
        connection.execute("DELETE FROM texts WHERE name IN ('slice 3', 'slice 5', 'quo\"te')")
        connection.execute("INSERT INTO texts VALUES ('slice 5', 'again', NULL), ('slice 10', 'v1', NULL)")
        connection.execute("UPDATE odd_keys SET value = 'sliced' WHERE code = 'ab'")
    before = {table: rows(new, target_db, table) for table in TABLES}
    confirmed = slot_confirmed(old, source_db)
    monkeypatch.setattr(pg_run, "APPLY_SLICE_KEYS", 3)
    copy_data = pg.write_copy_data
    copies: list[int] = []

    def failing_copy(server, schema, data):
        copies.append(1)
        if len(copies) == 3:
            raise DeltaError("injected failure copying the third slice", side="target")
        return copy_data(server, schema, data)

    monkeypatch.setattr(pg, "write_copy_data", failing_copy)
    with pytest.raises(DeltaError, match="rolled back: injected failure copying the third slice"):
        run(old, new, source_db, target_db)
    assert {table: rows(new, target_db, table) for table in TABLES} == before
    assert slot_confirmed(old, source_db) == confirmed
    monkeypatch.setattr(pg, "write_copy_data", copy_data)
    result = run(old, new, source_db, target_db)
    assert_same(old, source_db, new, target_db)
    texts = result["tables"]["public.texts"]
    assert (texts["rows_inserted"], texts["rows_updated"], texts["rows_deleted"]) == (11, 4, 3)
    assert_rerun_writes_nothing(lambda: run(old, new, source_db, target_db), new, target_db)


def test_the_slot_is_advanced_only_past_a_batch_flushed_on_the_target(loaded, monkeypatch):
    """Write sessions commit with synchronous_commit=off, so a target crash can lose their last
    commits; the batch whose position the slot is then advanced past must be on disk. The spy
    asks each target write session for its setting just before it commits, on the real server."""
    old, new, source_db, target_db = loaded
    with connect(old, source_db) as connection:
        connection.execute("INSERT INTO texts (name, value) SELECT 'flushed ' || n, 'v1' FROM generate_series(1, 7) n")
        connection.execute("UPDATE odd_keys SET value = 'flushed' WHERE code = 'ab'")
    events: list[tuple[str, str]] = []
    commit, advance = pg.Server.commit, pg.advance_slot

    def recording_commit(server):
        if server.connection.info.dbname == target_db and not server.connection.autocommit:
            events.append(("commit", server.setting("synchronous_commit")))
        commit(server)

    def recording_advance(server, slot, lsn):
        events.append(("advance", lsn))
        advance(server, slot, lsn)

    monkeypatch.setattr(pg.Server, "commit", recording_commit)
    monkeypatch.setattr(pg, "advance_slot", recording_advance)
    monkeypatch.setattr(pg_run, "PEEK_CHANGES", 4)
    run(old, new, source_db, target_db)
    assert_same(old, source_db, new, target_db)
    advances = [index for index, (kind, _value) in enumerate(events) if kind == "advance"]
    assert len(advances) >= 2, events
    batches = 0
    for index in advances:
        commits = [value for kind, value in events[:index] if kind == "commit"]
        last_advance = max([earlier for earlier in advances if earlier < index], default=-1)
        if any(kind == "commit" for kind, _value in events[last_advance + 1:index]):
            batches += 1
            assert commits[-1] == "on", events
    assert batches >= 2, events
    # Only those commits wait for the flush, not the run's other commits.
    assert "off" in [value for kind, value in events if kind == "commit"], events
    monkeypatch.undo()
    assert_rerun_writes_nothing(lambda: run(old, new, source_db, target_db), new, target_db)


def with_handles(loaded, count: int) -> list[str]:
    """The tables with one more, ``handles``, unique in ``handle`` besides its key, of ``count`` rows
    loaded by a run; the tables such a run names."""
    old, new, source_db, target_db = loaded
    for params, database in ((old, source_db), (new, target_db)):
        with connect(params, database) as connection:
            connection.execute("CREATE TABLE handles (id int PRIMARY KEY, handle text NOT NULL UNIQUE, seen int)")
    with connect(old, source_db) as connection:
        connection.execute("INSERT INTO handles SELECT n, 'h' || n, 0 FROM generate_series(1, %s) AS n", [count])
    tables = [*TABLES, "public.handles"]
    run(old, new, source_db, target_db, tables=tables)
    return tables


def record_copy_sessions(monkeypatch, fail_on_second_session: bool = False) -> list[tuple[str, int]]:
    """``(table, target backend pid)`` of every slice copied; optionally the first slice copied by a
    second target session fails."""
    copy_data = pg.write_copy_data
    sessions: list[tuple[str, int]] = []

    def recording_copy(server, schema, data):
        sessions.append((schema.name, server.connection.info.backend_pid))
        if fail_on_second_session and len({pid for _table, pid in sessions}) == 2:
            raise DeltaError("injected failure in the second target session", side="target")
        return copy_data(server, schema, data)

    monkeypatch.setattr(pg, "write_copy_data", recording_copy)
    return sessions


def test_slices_share_two_target_sessions_unless_another_unique_key_could_make_them_wait(loaded, monkeypatch):
    """A table with only its primary key unique has its slices on two target sessions, a failure in
    the second rolls back both, and a table with another unique key keeps to one session."""
    old, new, source_db, target_db = loaded
    tables = with_handles(loaded, 12)
    with connect(old, source_db) as connection:
        connection.execute("INSERT INTO texts (name, value) SELECT 'shared ' || n, 'v1' FROM generate_series(1, 12) n")
        connection.execute("UPDATE texts SET value = 'v2' WHERE name IN ('a,b', 'NULL', 'shared 3')")
        connection.execute("DELETE FROM texts WHERE name IN ('shared 4', 'quo\"te')")
        connection.execute("UPDATE handles SET seen = seen + 1, handle = handle || '!' WHERE id % 2 = 0")
        connection.execute("DELETE FROM handles WHERE id = 5")
    before = {table: rows(new, target_db, table) for table in tables}
    confirmed = slot_confirmed(old, source_db)
    monkeypatch.setattr(pg_run, "APPLY_SLICE_KEYS", 2)

    record_copy_sessions(monkeypatch, fail_on_second_session=True)
    with pytest.raises(DeltaError, match="rolled back: injected failure in the second target session"):
        run(old, new, source_db, target_db, tables=tables)
    assert {table: rows(new, target_db, table) for table in tables} == before
    assert slot_confirmed(old, source_db) == confirmed

    sessions = record_copy_sessions(monkeypatch)
    run(old, new, source_db, target_db, tables=tables)
    for table in tables:
        assert repr(rows(old, source_db, table)) == repr(rows(new, target_db, table)), table
    assert len({pid for table, pid in sessions if table == "public.texts"}) == 2
    assert len([pid for table, pid in sessions if table == "public.handles"]) >= 3
    assert len({pid for table, pid in sessions if table == "public.handles"}) == 1
    assert_rerun_writes_nothing(lambda: run(old, new, source_db, target_db, tables=tables), new, target_db)


def test_without_a_second_target_session_the_slices_go_to_one_with_a_warning(loaded, monkeypatch):
    """The target refuses the apply's second session (as one at its connection limit would): every
    slice is applied on the one session, and the run says so."""
    old, new, source_db, target_db = loaded
    with connect(old, source_db) as connection:
        connection.execute("INSERT INTO texts (name, value) SELECT 'one ' || n, 'v1' FROM generate_series(1, 8) n")
        connection.execute("UPDATE texts SET value = 'v2' WHERE name IN ('a,b', 'NULL', 'one 3')")
    refuse = []
    key_types, server = pg.key_types, pg.Server

    def types_then_refuse(*args, **kwargs):
        found = key_types(*args, **kwargs)
        refuse.append(True)     # open_apply asks for the key types just before the second session
        return found

    class RefusingServer(server):
        def __init__(self, options, autocommit=True, role="read"):
            if refuse and role == "write":
                refuse.clear()
                raise ConnectionFailed("FATAL: too many connections for role", side="target")
            super().__init__(options, autocommit=autocommit, role=role)

    monkeypatch.setattr(pg, "key_types", types_then_refuse)
    monkeypatch.setattr(pg, "Server", RefusingServer)
    monkeypatch.setattr(pg_run, "APPLY_SLICE_KEYS", 2)
    sessions = record_copy_sessions(monkeypatch)
    result = run(old, new, source_db, target_db)
    assert_same(old, source_db, new, target_db)
    assert len(sessions) >= 3 and len({pid for _table, pid in sessions}) == 1
    assert any("no second session" in warning and "too many connections" in warning for warning in result["warnings"])


def test_a_unique_value_moving_to_a_row_met_earlier_in_the_peek_is_applied(loaded, monkeypatch):
    """Row 2 is touched first, then row 1 hands its unique handle to row 2: copied slice by slice,
    row 2 would arrive with the handle while the target's row 1 still holds it (and fail the same
    way on every rerun, the keys coming in the same order). Every slice's keys are deleted first."""
    old, new, source_db, target_db = loaded
    tables = with_handles(loaded, 6)
    with connect(old, source_db) as connection:
        connection.execute("UPDATE handles SET seen = 1 WHERE id IN (2, 3)")
        with connection.transaction():
            connection.execute("UPDATE handles SET handle = 'moved away' WHERE id = 1")
            connection.execute("UPDATE handles SET handle = 'h1' WHERE id = 2")
        # And one freed by a delete.
        connection.execute("DELETE FROM handles WHERE id = 6")
        connection.execute("UPDATE handles SET handle = 'h6', seen = 2 WHERE id = 3")
    monkeypatch.setattr(pg_run, "APPLY_SLICE_KEYS", 1)
    result = run(old, new, source_db, target_db, tables=tables)
    assert rows(new, target_db, "handles") == rows(old, source_db, "handles")
    assert ("h1", 2) in [(handle, key) for key, handle, _seen in rows(new, target_db, "handles")]
    handles = result["tables"]["public.handles"]
    assert (handles["rows_updated"], handles["rows_deleted"]) == (5, 1)
    assert_rerun_writes_nothing(lambda: run(old, new, source_db, target_db, tables=tables), new, target_db)


def test_a_unique_value_taken_from_a_row_changed_after_the_peek_end_is_freed(loaded, monkeypatch):
    """Row 2 is in the batch. After the run has read where the slot ends, the source moves row 4's
    handle to row 2: row 2 is re-read with it while the target's row 4, whose change is past the
    end, still holds it. That row is deleted on the target to free the value, and the next run
    brings it back from the slot."""
    old, new, source_db, target_db = loaded
    tables = with_handles(loaded, 6)
    with connect(old, source_db) as connection:
        connection.execute("UPDATE handles SET seen = 1 WHERE id = 2")
    read_rows = pg.read_slot_rows
    moved: list[str] = []

    def move_then_read(server, schema, types, keys):
        if schema.name == "public.handles" and not moved:
            moved.append(schema.name)
            with connect(old, source_db) as connection, connection.transaction():
                connection.execute("UPDATE handles SET handle = 'h4 moved' WHERE id = 4")
                connection.execute("UPDATE handles SET handle = 'h4' WHERE id = 2")
        return read_rows(server, schema, types, keys)

    monkeypatch.setattr(pg, "read_slot_rows", move_then_read)
    # Not verified: the source has changed past the end, so row 4 differs until the next run.
    run(old, new, source_db, target_db, tables=tables, verify=False)
    assert moved
    handles = {key: handle for key, handle, _seen in rows(new, target_db, "handles")}
    assert handles[2] == "h4" and 4 not in handles
    assert handles == {key: handle for key, handle, _seen in rows(old, source_db, "handles") if key != 4}
    monkeypatch.undo()
    run(old, new, source_db, target_db, tables=tables)
    assert rows(new, target_db, "handles") == rows(old, source_db, "handles")
    assert_same(old, source_db, new, target_db)
    assert_rerun_writes_nothing(lambda: run(old, new, source_db, target_db, tables=tables), new, target_db)


def test_crash_between_the_commit_and_the_slot_advance_applies_nothing_twice(loaded, monkeypatch):
    old, new, source_db, target_db = loaded
    with connect(old, source_db) as connection:
        for batch in range(4):
            connection.execute("INSERT INTO texts (name, value) SELECT 'crash ' || n, 'v' FROM generate_series(%s::int, %s::int) n",
                               [batch * 5, batch * 5 + 4])
        connection.execute("UPDATE texts SET value = 'after' WHERE name = 'a,b'")
    confirmed = slot_confirmed(old, source_db)

    def crash(server, slot, lsn):
        raise DeltaError(f"injected crash before advancing {slot} to {lsn}")

    monkeypatch.setattr(pg, "advance_slot", crash)
    with pytest.raises(DeltaError, match="injected crash"):
        run(old, new, source_db, target_db)
    monkeypatch.undo()
    # The rows and the position are committed on the target; the slot still holds the changes.
    assert_same(old, source_db, new, target_db)
    assert slot_confirmed(old, source_db) == confirmed
    before = target_write_count(new, target_db)
    result = run(old, new, source_db, target_db)
    texts = result["tables"]["public.texts"]
    # The slot hands the same transactions out again; the stored position says they are applied.
    assert texts["rows_inserted"] == texts["rows_updated"] == 0
    assert result["target_writes"] == 0 and target_write_count(new, target_db) == before
    assert slot_confirmed(old, source_db) > confirmed
    assert_same(old, source_db, new, target_db)


def test_a_run_with_nothing_to_apply_confirms_the_slot_to_the_end(loaded):
    old, new, source_db, target_db = loaded
    with connect(old, source_db) as connection:
        # WAL the slot must read through but that holds none of the copied tables' rows.
        connection.execute("INSERT INTO parents (name) SELECT 'not copied ' || n FROM generate_series(1, 2000) n")
        written = pg.lsn_number(connection.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])
    assert slot_confirmed(old, source_db) < written
    before = target_write_count(new, target_db)
    result = run(old, new, source_db, target_db)
    assert result["changed"] is False and result["target_writes"] == 0
    assert target_write_count(new, target_db) == before
    assert slot_confirmed(old, source_db) >= written
    assert pg.lsn_number(result["replication_slot"]["position"]) >= written


def test_changes_committed_without_waiting_for_the_flush_are_inside_the_end_and_applied(loaded, monkeypatch):
    old, new, source_db, target_db = loaded
    naps: list[float] = []
    monkeypatch.setattr(pg.time, "sleep", naps.append)
    source = pg.Server(delta_options({"source": side(old, source_db), "target": side(new, target_db)}).source)
    behind = 0
    try:
        with connect(old, source_db) as connection:
            connection.execute("SET synchronous_commit = off")
            for number in range(20):
                connection.execute("INSERT INTO texts (name, value) VALUES (%s, 'async')", [f"async {number}"])
                committed, flushed_then = (pg.lsn_number(lsn) for lsn in connection.execute(
                    "SELECT pg_current_wal_insert_lsn()::text, pg_current_wal_flush_lsn()::text").fetchone())
                # The WAL writer flushes on its own clock; when it has not yet, the end is flushed
                # by the module's own commit at once, not waited for.
                behind += flushed_then < committed
                end = pg.lsn_number(pg.current_lsn(source))
                flushed = pg.lsn_number(source.query("SELECT pg_current_wal_flush_lsn()::text")[0][0])
                # The end covers every commit made before it was read, and decoding can read up to it.
                assert committed <= end <= flushed
    finally:
        source.close()
    assert behind >= 10 and naps == []
    run(old, new, source_db, target_db)
    assert_same(old, source_db, new, target_db)
    assert ("async 19", "async", None) in rows(new, target_db, "public.texts")


def test_key_array_literals_reach_the_server_as_the_same_values(pg_sides):
    old, _new, source_db, _target_db = pg_sides
    source = pg.Server(delta_options({"source": side(old, source_db), "target": side(old, source_db)}).source)
    try:
        for values in (NAMES, ["only"], [], NAMES + ["NULL", None]):
            (found,) = source.query("SELECT %s::text[]", [pg.text_array(list(values))])[0]
            assert found == values
    finally:
        source.close()


def record_starts_and_commits(monkeypatch) -> list[str]:
    """Events in order: ``start`` when a slice of keys starts on the target, ``commit`` when the
    decoder reads a COMMIT message."""
    events: list[str] = []
    start, message = pg_run.SlotApply.start, pg_run.Decoder.message

    def recording_start(self, table, keys):
        if keys:
            events.append("start")
        return start(self, table, keys)

    def recording_message(self, data):
        if data[:1] == b"C":
            events.append("commit")
        return message(self, data)

    monkeypatch.setattr(pg_run.SlotApply, "start", recording_start)
    monkeypatch.setattr(pg_run.Decoder, "message", recording_message)
    return events


def test_a_long_transaction_is_applied_while_it_is_still_being_decoded(loaded, monkeypatch):
    old, new, source_db, target_db = loaded
    with connect(old, source_db) as connection, connection.transaction():
        connection.execute("INSERT INTO texts (name, value) SELECT 'long ' || n, 'v1' FROM generate_series(1, 40) n")
        connection.execute("UPDATE texts SET value = 'v2' WHERE name IN ('long 3', 'a,b')")
        connection.execute("DELETE FROM texts WHERE name IN ('long 7', 'NULL')")
    monkeypatch.setattr(pg_run, "APPLY_SLICE_KEYS", 3)
    events = record_starts_and_commits(monkeypatch)
    result = run(old, new, source_db, target_db)
    # One transaction: its keys went to the target in slices before its COMMIT was decoded.
    assert events.count("commit") == 1 and events.index("start") < events.index("commit")
    assert events.count("start") >= 10
    assert_same(old, source_db, new, target_db)
    texts = result["tables"]["public.texts"]
    assert (texts["rows_inserted"], texts["rows_updated"], texts["rows_deleted"]) == (40, 2, 2)
    assert_rerun_writes_nothing(lambda: run(old, new, source_db, target_db), new, target_db)


def test_a_long_transaction_applied_before_a_crash_is_not_taken_again(loaded, monkeypatch):
    old, new, source_db, target_db = loaded
    with connect(old, source_db) as connection:
        connection.execute("INSERT INTO texts (name, value) SELECT 'replayed ' || n, 'v' FROM generate_series(1, 30) n")
    monkeypatch.setattr(pg_run, "APPLY_SLICE_KEYS", 3)

    def crash(server, slot, lsn):
        raise DeltaError(f"injected crash before advancing {slot} to {lsn}")

    advance = pg.advance_slot
    monkeypatch.setattr(pg, "advance_slot", crash)
    with pytest.raises(DeltaError, match="injected crash"):
        run(old, new, source_db, target_db)
    monkeypatch.setattr(pg, "advance_slot", advance)
    assert_same(old, source_db, new, target_db)
    events = record_starts_and_commits(monkeypatch)
    before = target_write_count(new, target_db)
    result = run(old, new, source_db, target_db)
    # The slot hands the transaction out again; its commit lies before the stored position, so
    # none of its keys is taken while it is decoded, and it is skipped at its COMMIT.
    assert "start" not in events and events.count("commit") == 1
    assert result["tables"]["public.texts"]["rows_inserted"] == 0
    assert result["target_writes"] == 0 and target_write_count(new, target_db) == before
    assert_same(old, source_db, new, target_db)


# Uniqueness that names no plain column list: a unique index on an expression, one with a
# predicate, an exclusion constraint. A value moving between rows collides in them just the same.
UNIQUE_BEYOND_KEYS = {
    "expression": "CREATE UNIQUE INDEX tags_lower ON tags (lower(tag))",
    "partial": "CREATE UNIQUE INDEX tags_live ON tags (tag) WHERE live",
    "exclusion": "ALTER TABLE tags ADD CONSTRAINT tags_exclusive EXCLUDE USING btree (tag WITH =)",
}


def run_or_hang(old, new, source_db, target_db, timeout_s: float = 60.0, **kwargs):
    """run(), failing the test (and ending the target's sessions) if it has not ended in time: two
    target sessions waiting on each other through this process would wait for ever."""
    outcome: dict = {}

    def runner():
        try:
            outcome["result"] = run(old, new, source_db, target_db, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome["error"] = exc

    thread = threading.Thread(target=runner, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        with connect(new, "postgres") as connection:
            connection.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                               "AND pid <> pg_backend_pid()", [target_db])
        thread.join(30)
        pytest.fail(f"the run hung for {timeout_s} s (target sessions waiting on each other)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


@pytest.mark.parametrize("constraint", sorted(UNIQUE_BEYOND_KEYS))
def test_values_moving_between_rows_under_uniqueness_beyond_plain_keys(loaded, monkeypatch, constraint):
    """Within one source transaction a tag moves from row 1 to row 2 (and another from row 4 to row
    3): with slices of one key, on two target sessions, one session's copy would wait for the other
    session's uncommitted delete, which commits only once every slice is done. Such a table is
    applied like one with another unique key: one session, every key deleted before any row is
    copied."""
    old, new, source_db, target_db = loaded
    for params, database in ((old, source_db), (new, target_db)):
        with connect(params, database) as connection:
            connection.execute("CREATE TABLE tags (id int PRIMARY KEY, tag text NOT NULL, live bool NOT NULL)")
            connection.execute(UNIQUE_BEYOND_KEYS[constraint])
    with connect(old, source_db) as connection:
        connection.execute("INSERT INTO tags SELECT n, 't' || n, true FROM generate_series(1, 6) AS n")
    tables = [*TABLES, "public.tags"]
    run(old, new, source_db, target_db, tables=tables)
    with connect(old, source_db) as connection, connection.transaction():
        connection.execute("UPDATE tags SET tag = 'gone 1' WHERE id = 1")
        connection.execute("UPDATE tags SET tag = 't1' WHERE id = 2")
        connection.execute("UPDATE tags SET tag = 'gone 4' WHERE id = 4")
        connection.execute("UPDATE tags SET tag = 't4' WHERE id = 3")
    monkeypatch.setattr(pg_run, "APPLY_SLICE_KEYS", 1)
    run_or_hang(old, new, source_db, target_db, tables=tables)
    assert rows(new, target_db, "tags") == rows(old, source_db, "tags")
    assert (2, "t1", True) in rows(new, target_db, "tags")
    assert_rerun_writes_nothing(lambda: run(old, new, source_db, target_db, tables=tables), new, target_db)
