"""The PostgreSQL delta core's pure parts: options, pgoutput decoding, sequences, LSNs."""

from __future__ import annotations

import struct

import pytest

from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.errors import InvalidOptions
from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.schema import Column, TableSchema
from ansible_collections.cutover.migration.plugins.module_utils.pg_delta import postgres as pg
from ansible_collections.cutover.migration.plugins.module_utils.pg_delta.options import delta_options
from ansible_collections.cutover.migration.plugins.module_utils.pg_delta.pgoutput import (
    DecodeError,
    Decoder,
    Transaction,
    merge,
)
from ansible_collections.cutover.migration.plugins.module_utils.pg_delta.run import plan_sequence_next

SIDES = {"source": {"database": "shop", "host": "old"}, "target": {"database": "shop_new", "host": "new"}}


# --- options -----------------------------------------------------------------------------------

def test_defaults_follow_mysql_delta_apply_and_name_the_slot_after_the_target():
    options = delta_options(SIDES)
    assert options.strategy == "checksum" and options.verify and options.fix_sequences
    assert options.source.port == 5432 and options.source.sslmode == "prefer"
    assert options.slot_name == "cutover_delta_shop_new" == options.publication_name
    assert (options.state_schema, options.state_name) == ("public", "_cutover_delta_state")


def test_bare_table_names_are_qualified_with_the_first_schema():
    options = delta_options(dict(SIDES, schemas=["billing", "public"], tables=["invoices", "public.users"],
                                 state_table="ops.progress"))
    assert options.tables == ("billing.invoices", "public.users")
    assert (options.state_schema, options.state_name) == ("ops", "progress")


@pytest.mark.parametrize(("params", "option", "words"), [
    ({"source": {"host": "x"}}, "database", "source.database is required"),
    ({"strategy": "binlog"}, "strategy", "not one of checksum, logical"),
    ({"slot_name": "Has-Dash"}, "slot_name", "lower-case letters"),
    ({"tables": ["a"], "exclude_tables": ["public.a"]}, "exclude_tables", "both tables and exclude_tables"),
    ({"chunk_size": 0}, "chunk_size", "positive number of rows"),
    ({"state_table": "bad name"}, "state_table", "[schema.]name"),
    ({"tables": ["_cutover_delta_state"]}, "tables", "is the state table"),
    ({"source": {"database": "a", "sslmode": "sometimes"}}, "sslmode", "source.sslmode"),
])
def test_bad_options_fail_naming_the_option(params, option, words):
    with pytest.raises(InvalidOptions, match=words.replace("[", r"\[").replace(".", r"\.")) as raised:
        delta_options({**SIDES, **params})
    assert raised.value.option == option


def test_connection_arguments_map_ssl_options_to_libpq_names():
    options = delta_options({**SIDES, "source": {"database": "a", "sslmode": "verify-full", "ssl_ca": "/ca.pem",
                                                 "user": "u", "password": "p"}})
    arguments = options.source.connection_arguments()
    assert arguments["sslmode"] == "verify-full" and arguments["sslrootcert"] == "/ca.pem"
    assert arguments["dbname"] == "a" and arguments["password"] == "p"
    assert "password=p" not in repr(options.source)


# --- pgoutput ----------------------------------------------------------------------------------

def text(value: str) -> bytes:
    return value.encode() + b"\x00"


def relation(relid: int, schema: str, table: str, columns: list[str]) -> bytes:
    body = struct.pack(">I", relid) + text(schema) + text(table) + b"d" + struct.pack(">h", len(columns))
    for number, name in enumerate(columns):
        body += struct.pack(">b", 1 if number == 0 else 0) + text(name) + struct.pack(">Ii", 23, -1)
    return b"R" + body


def tuple_data(values: list[str | None]) -> bytes:
    body = struct.pack(">h", len(values))
    for value in values:
        if value is None:
            body += b"n"
        else:
            encoded = value.encode()
            body += b"t" + struct.pack(">i", len(encoded)) + encoded
    return body


def begin() -> bytes:
    return b"B" + struct.pack(">QqI", 100, 0, 7)


def commit(end_lsn: int) -> bytes:
    return b"C" + struct.pack(">bQQq", 0, end_lsn - 8, end_lsn, 0)


def rows(*messages: bytes) -> list[tuple[str, bytes]]:
    return [("0/0", message) for message in messages]


def test_decoder_collects_keys_per_committed_transaction_in_order():
    decoder = Decoder({"public.items": ("id",), "public.tags": ("item_id", "tag")})
    stream = rows(
        begin(), relation(1, "public", "items", ["id", "title"]), relation(2, "public", "tags", ["item_id", "tag"]),
        b"I" + struct.pack(">I", 1) + b"N" + tuple_data(["5", "new, 'quoted' title\n"]),
        b"U" + struct.pack(">I", 1) + b"N" + tuple_data(["3", None]),
        # The key changed: the old key comes first, with the other columns null.
        b"U" + struct.pack(">I", 1) + b"K" + tuple_data(["4", None]) + b"N" + tuple_data(["40", "moved"]),
        b"D" + struct.pack(">I", 2) + b"K" + tuple_data(["3", "red"]),
        commit(0x2000),
        begin(), b"D" + struct.pack(">I", 1) + b"K" + tuple_data(["5", None]), commit(0x3000),
    )
    first, second = list(decoder.feed(stream))
    assert first.end_lsn == 0x2000 and second.end_lsn == 0x3000
    items = first.tables["public.items"]
    assert list(items.keys) == [("5",), ("3",), ("4",), ("40",)]
    assert (items.inserted, items.updated, items.deleted) == (1, 2, 0)
    assert list(first.tables["public.tags"].keys) == [("3", "red")]
    assert list(second.tables["public.items"].keys) == [("5",)] and second.tables["public.items"].deleted == 1


def test_decoder_ignores_tables_it_does_not_copy_and_marks_truncate_as_whole_table():
    decoder = Decoder({"public.items": ("id",)})
    stream = rows(
        begin(), relation(1, "public", "items", ["id"]), relation(9, "public", "sessions", ["id"]),
        b"I" + struct.pack(">I", 9) + b"N" + tuple_data(["1"]),
        b"T" + struct.pack(">ib", 2, 0) + struct.pack(">II", 1, 9),
        b"Y" + struct.pack(">I", 5) + text("public") + text("mood"),
        commit(0x10),
    )
    (only,) = list(decoder.feed(stream))
    assert set(only.tables) == {"public.items"} and only.tables["public.items"].whole_table is True
    assert only.rows == 1


def test_decoder_refuses_rows_of_an_unannounced_relation_and_unknown_messages():
    decoder = Decoder({"public.items": ("id",)})
    with pytest.raises(DecodeError, match="before its RELATION"):
        list(decoder.feed(rows(begin(), b"I" + struct.pack(">I", 4) + b"N" + tuple_data(["1"]))))
    with pytest.raises(DecodeError, match="unknown pgoutput message"):
        list(decoder.feed(rows(b"Z")))


def test_merge_keeps_key_order_and_adds_counts():
    decoder = Decoder({"public.items": ("id",)})
    stream = rows(begin(), relation(1, "public", "items", ["id"]),
                  b"I" + struct.pack(">I", 1) + b"N" + tuple_data(["1"]), commit(0x10),
                  begin(), b"U" + struct.pack(">I", 1) + b"N" + tuple_data(["2"]),
                  b"U" + struct.pack(">I", 1) + b"N" + tuple_data(["1"]), commit(0x20))
    batch = Transaction()
    for transaction in decoder.feed(stream):
        merge(batch, transaction)
    assert list(batch.tables["public.items"].keys) == [("1",), ("2",)]
    assert batch.tables["public.items"].inserted == 1 and batch.tables["public.items"].updated == 2
    assert batch.end_lsn == 0x20


# --- sequences, LSNs, SQL text -------------------------------------------------------------------

@pytest.mark.parametrize(("source_next", "target_max", "increment", "wanted"), [
    (101, 100, 1, 101),      # copied as is
    (106, 100, 1, 106),      # ids handed out on the source but never stored are not reused
    (50, 100, 1, 101),       # the target holds higher keys (rows inserted there): go past them
    (None, 7, 10, 17),       # no sequence on the source side: past the target's key by one step
    (None, None, 1, 1),      # empty table, no source sequence
])
def test_plan_sequence_next_goes_past_source_and_target(source_next, target_max, increment, wanted):
    assert plan_sequence_next(source_next, target_max, increment) == wanted


def test_sequence_next_value_honours_is_called():
    assert pg.SequenceState("s", 10, True, 1, 2 ** 63 - 1).next_value == 11
    assert pg.SequenceState("s", 10, False, 1, 2 ** 63 - 1).next_value == 10
    assert pg.SequenceState("s", 10, True, 5, 2 ** 63 - 1).next_value == 15


def test_lsn_text_and_number_round_trip():
    assert pg.lsn_number("16/B374D848") == (0x16 << 32) + 0xB374D848
    assert pg.lsn_text(pg.lsn_number("16/B374D848")) == "16/B374D848"
    assert pg.lsn_number(None) == 0


def test_checksum_sql_hashes_every_written_column_and_bounds_by_the_key():
    schema = TableSchema(name="public.items", columns=(
        Column("id", "int8", "bigint", nullable=False), Column("title", "text", "text"),
        Column("title_length", "int4", "integer", generated=True)), key=("id",), key_kind="primary")
    sql, parameters = pg.chunk_checksum_sql(schema, (10,), (20,))
    assert 'md5(record_send(ROW("id", "title")))' in sql and "title_length" not in sql
    assert '"id" > %s AND "id" <= %s' in sql and parameters == [10, 20]
    keyless = TableSchema(name="public.log", columns=(Column("m", "text", "text"),))
    assert pg.chunk_checksum_sql(keyless, None, None)[0].endswith("WHERE TRUE OFFSET 0) AS chunk_rows")
    assert pg.quote_table('odd"schema.t') == '"odd""schema"."t"'


def test_row_hash_sends_builtin_types_binary_and_others_as_text():
    schema = TableSchema(name="public.items", columns=(
        Column("id", "int8", "bigint", nullable=False), Column("feeling", "mood", "mood enum('a')"),
        Column("tags", "_text", "text[]"), Column("moods", "_mood", "mood[]")), key=("id",), key_kind="primary")
    assert pg.row_hash(schema) == 'md5(record_send(ROW("id", "feeling"::text, "tags", "moods"::text)))'
    assert pg.bucket_of(schema, pg.Buckets(10)) == ('("id" %% %s)', [10])
    # A chunk bounded at both ends splits into key ranges: bucket n is (start + n*width, start + (n+1)*width].
    buckets = pg.chunk_buckets(schema, (100,), (181,), 10)
    assert buckets == pg.Buckets(10, 100, 9)
    assert pg.bucket_of(schema, buckets) == ('(("id" - %s - 1) / %s)', [100, 9])
    assert pg.chunk_buckets(schema, None, (181,), 10) == pg.Buckets(10)
    assert pg.chunk_buckets(schema, ("100",), (181,), 10) == pg.Buckets(10)   # a key restored from state
    composite = TableSchema(name="public.m", columns=(Column("code", "bpchar", "character(4)"),
                                                      Column("member", "int4", "integer")),
                            key=("code", "member"), key_kind="primary")
    assert pg.bucket_of(composite, pg.chunk_buckets(composite, ("a", 1), ("b", 2), 4)) == \
        ('(hashtextextended(ROW("code", "member")::text, 0) %% %s)', [4])


def test_key_sample_hands_out_bounds_in_steps_of_rows_and_ends_open():
    # Each sampled key stands for 10 rows: 25 rows is about 2 keys on from where the walk stands.
    sample = pg.KeySample(start=(100,), keys=[(k,) for k in range(110, 200, 10)], rows_per_key=10.0)
    assert sample.follows((100,)) and not sample.follows(None)
    assert sample.after(25) == (120,)
    assert sample.follows((120,)) and not sample.follows((100,))
    assert sample.after(1) == (130,)           # never less than one key on
    assert sample.after(50) == (180,)
    assert sample.after(20) is None            # past the last key: the last chunk is open-ended
    assert not sample.follows((190,)) and not sample.follows(None)
    resumed = pg.KeySample(start=None, keys=[("b",), ("a",)], rows_per_key=1.0)
    # Keys stay in the server's order (here not Python's): only equality is used.
    assert resumed.follows(None) and resumed.after(1) == ("b",) and resumed.after(1) == ("a",)
