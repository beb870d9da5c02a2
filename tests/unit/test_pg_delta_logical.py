"""The logical strategy's pure parts: pgoutput decoding of keys only, and the key-array SQL."""

from __future__ import annotations

import struct

import pytest

from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.schema import Column, TableSchema
from ansible_collections.cutover.migration.plugins.module_utils.pg_delta import postgres as pg
from ansible_collections.cutover.migration.plugins.module_utils.pg_delta.pgoutput import (
    DecodeError,
    Decoder,
    Transaction,
    merge,
)


def text(value: str) -> bytes:
    return value.encode() + b"\x00"


def relation(relid: int, table: str, columns: list[str]) -> bytes:
    schema, _dot, name = table.partition(".")
    body = struct.pack(">I", relid) + text(schema) + text(name) + b"d" + struct.pack(">h", len(columns))
    for name in columns:
        body += b"\x00" + text(name) + struct.pack(">Ii", 25, -1)
    return b"R" + body


def tuple_data(values: list) -> bytes:
    """Values: a str (text), bytes (binary), None (null) or ... (unchanged TOAST, not sent)."""
    body = struct.pack(">h", len(values))
    for value in values:
        if value is None:
            body += b"n"
        elif value is ...:
            body += b"u"
        elif isinstance(value, bytes):
            body += b"b" + struct.pack(">i", len(value)) + value
        else:
            encoded = value.encode()
            body += b"t" + struct.pack(">i", len(encoded)) + encoded
    return body


def row(kind: str, relid: int, *tuples: tuple[str, list]) -> bytes:
    encoded = b"".join(marker.encode() + tuple_data(values) for marker, values in tuples)
    return kind.encode() + struct.pack(">I", relid) + encoded


def begin() -> bytes:
    return b"B" + struct.pack(">QqI", 100, 0, 7)


def commit(end_lsn: int) -> bytes:
    return b"C" + struct.pack(">bQQq", 0, end_lsn - 8, end_lsn, 0)


def feed(decoder: Decoder, *messages: bytes) -> list[Transaction]:
    return list(decoder.feed([("0/0", message) for message in messages]))


WIDE = "x" * 5000


def test_only_the_key_columns_are_decoded_wherever_they_are_in_the_row():
    decoder = Decoder({"public.pairs": ("right_id", "left_id")})
    (only,) = feed(
        decoder, begin(), relation(3, "public.pairs", ["note", "left_id", "blob", "right_id", "tail"]),
        row("I", 3, ("N", [WIDE, "1", b"\x00\x01", "2", WIDE])),
        # A value TOAST left unchanged is not in the stream; the key still is.
        row("U", 3, ("N", [..., "1", ..., "3", None])),
        # The key changed: the old key comes first, the other columns null.
        row("U", 3, ("K", [None, "1", None, "3", None]), ("N", ["moved", "1", None, "30", ...])),
        row("D", 3, ("K", [None, "5", None, "6", None])),
        commit(0x40))
    pairs = only.tables["public.pairs"]
    assert list(pairs.keys) == [("2", "1"), ("3", "1"), ("30", "1"), ("6", "5")]
    assert (pairs.inserted, pairs.updated, pairs.deleted, pairs.whole_table) == (1, 2, 1, False)
    assert only.end_lsn == 0x40


def test_replica_identity_full_old_rows_are_skipped_to_reach_the_new_tuple():
    decoder = Decoder({"public.logs": ("id",)})
    (only,) = feed(decoder, begin(), relation(4, "public.logs", ["id", "body", "more"]),
                   row("U", 4, ("O", ["7", WIDE, b"\xff" * 300]), ("N", ["8", WIDE, "x"])),
                   row("D", 4, ("O", ["9", "gone", None])), commit(0x50))
    logs = only.tables["public.logs"]
    assert list(logs.keys) == [("7",), ("8",), ("9",)] and (logs.updated, logs.deleted) == (1, 1)


def test_a_key_the_stream_does_not_carry_reads_the_table_whole():
    # A key column left out as unchanged TOAST, or a relation (WAL older than a key rename)
    # without the key's column: the keys are unknown, so the table is re-read whole.
    decoder = Decoder({"public.docs": ("slug",), "public.old": ("id",)})
    (only,) = feed(decoder, begin(), relation(5, "public.docs", ["slug", "body"]), relation(6, "public.old", ["ident"]),
                   row("U", 5, ("N", [..., "text"])), row("I", 6, ("N", ["1"])), commit(0x60))
    assert only.tables["public.docs"].whole_table and only.tables["public.old"].whole_table
    assert not only.tables["public.docs"].keys


def test_rows_of_other_tables_are_not_decoded_at_all():
    decoder = Decoder({"public.items": ("id",)})
    (only,) = feed(decoder, begin(), relation(1, "public.items", ["id"]), relation(2, "public.other", ["id"]),
                   row("I", 2, ("N", [WIDE])), b"I" + struct.pack(">I", 2) + b"Zjunk", commit(0x10))
    assert only.tables == {} and only.end_lsn == 0x10


@pytest.mark.parametrize("message", [
    row("I", 1, ("N", ["12345"]))[:-2],             # the value is cut short
    b"I" + struct.pack(">I", 1) + b"N" + struct.pack(">h", 1) + b"t\x00\x00",  # the length is cut short
    b"I" + struct.pack(">I", 1) + b"N" + struct.pack(">h", 1) + b"q",          # an unknown column kind
    b"I" + struct.pack(">I", 1) + b"X",             # no new tuple
    b"I\x00",                                        # no relation id
])
def test_malformed_row_messages_are_decode_errors(message):
    decoder = Decoder({"public.items": ("id",)})
    feed(decoder, begin(), relation(1, "public.items", ["id"]))
    with pytest.raises(DecodeError):
        decoder.message(message)


def test_merge_adds_counts_and_keeps_each_key_at_its_first_place():
    decoder = Decoder({"public.items": ("id",)})
    transactions = feed(decoder, begin(), relation(1, "public.items", ["id"]), row("I", 1, ("N", ["1"])),
                        row("I", 1, ("N", ["2"])), commit(0x10), begin(), row("D", 1, ("K", ["2"])),
                        row("I", 1, ("N", ["3"])), row("U", 1, ("N", ["1"])), commit(0x20))
    batch = Transaction()
    for transaction in transactions:
        merge(batch, transaction)
    items = batch.tables["public.items"]
    assert list(items.keys) == [("1",), ("2",), ("3",)]
    assert (items.inserted, items.updated, items.deleted) == (3, 1, 1) and batch.end_lsn == 0x20


def test_slot_keys_are_one_typed_array_per_key_column():
    single = TableSchema(name="public.items", columns=(Column("id", "int8", "bigint", nullable=False),),
                         key=("id",), key_kind="primary")
    where, parameters = pg.keys_in(single, {"id": "bigint"}, [("1",), ("22",)])
    assert where == '"id" = ANY(%s::text[]::bigint[])' and parameters == ['{"1","22"}']
    composite = TableSchema(name="public.m", columns=(Column("code", "bpchar", "character(4)", nullable=False),
                                                      Column("member", "int4", "integer", nullable=False)),
                            key=("code", "member"), key_kind="primary")
    where, parameters = pg.keys_in(composite, {"code": "character(4)", "member": "integer"},
                                   [("ab  ", "1"), ('a,"b', "2")])
    assert where == ('("code", "member") IN (SELECT * FROM unnest(%s::text[]::character(4)[], '
                     '%s::text[]::integer[]) AS slot_keys("code", "member"))')
    assert parameters == ['{"ab  ","a,\\"b"}', '{"1","2"}']


def test_a_text_array_literal_quotes_every_element_and_escapes_quotes_and_backslashes():
    assert pg.text_array(["1", "22"]) == '{"1","22"}'
    assert pg.text_array(['q"', "b\\s", "", "NULL", " {,} "]) == '{"q\\"","b\\\\s","","NULL"," {,} "}'
    assert pg.text_array([]) == "{}"
    # A NULL cannot be written quoted: such a list is left to psycopg's adaptation.
    assert pg.text_array(["1", None]) == ["1", None]


class FakeSource:
    """Answers the LSN questions :func:`pg.current_lsn` asks: the insert position, then the flushed
    one as each poll finds it. A stand-in because a real server's WAL writer flushes on its own
    clock; the lab test of the same function runs against PostgreSQL."""

    def __init__(self, insert: str, flushed: list[str], flushes_on_commit: bool = False):
        self.insert, self.flushed = insert, list(flushed)
        self.flushes_on_commit = flushes_on_commit
        self.executed: list[str] = []

    def _flushed(self) -> str:
        return self.flushed.pop(0) if len(self.flushed) > 1 else self.flushed[0]

    def query(self, sql: str, parameters=None) -> list[tuple]:
        if "insert_lsn" in sql:
            return [(self.insert, self._flushed())]
        return [(self._flushed(),)]

    def execute(self, sql: str, parameters=None) -> int:
        self.executed.append(sql)
        if self.flushes_on_commit:
            self.flushed = [self.insert]
        return 0


def test_the_end_is_the_insert_position_once_flushed_else_the_flushed_end():
    assert pg.current_lsn(FakeSource("0/2000", ["0/1000", "0/1000", "0/2000"]), wait_s=5) == "0/2000"
    # The WAL never gets flushed that far: the slot must not be confirmed past what it can read.
    assert pg.current_lsn(FakeSource("1/0", ["0/FFFF0000"]), wait_s=0.1) == "0/FFFF0000"


def test_an_unflushed_end_is_flushed_by_a_synchronous_commit_not_waited_for():
    flushed_already = FakeSource("0/2000", ["0/2000"])
    assert pg.current_lsn(flushed_already) == "0/2000" and flushed_already.executed == []
    behind = FakeSource("0/2000", ["0/1000"], flushes_on_commit=True)
    assert pg.current_lsn(behind, wait_s=0) == "0/2000"
    assert behind.executed == [pg.FLUSH_WAL_SQL]


def test_the_decoder_counts_the_messages_it_was_fed():
    decoder = Decoder({"public.items": ("id",)})
    feed(decoder, begin(), relation(1, "public.items", ["id"]), row("I", 1, ("N", ["1"])), commit(0x10))
    feed(decoder, begin(), commit(0x20))
    assert decoder.messages == 6


def test_an_open_transaction_hands_out_its_first_touched_keys_before_its_commit():
    decoder = Decoder({"public.items": ("id",)})
    messages = [b"B" + struct.pack(">QqI", 0x38, 0, 7), relation(1, "public.items", ["id"]),
                row("I", 1, ("N", ["1"])), row("U", 1, ("N", ["1"])), row("I", 1, ("N", ["2"])),
                row("D", 1, ("K", ["3"])), row("U", 1, ("N", ["2"])), commit(0x40)]
    seen: list = []
    for item in decoder.feed([("0/0", message) for message in messages], tick=2):
        opened = decoder.open_transaction
        seen.append((item, opened.commit_lsn if opened else None, decoder.take_fresh()))
    # A tick every two messages that commit nothing; each hands out the keys first touched since
    # the last (a key touched again is not handed out twice); the COMMIT hands out the rest.
    assert [(item is None, lsn, fresh) for item, lsn, fresh in seen] == [
        (True, 0x38, []),
        (True, 0x38, [("public.items", ("1",))]),
        (True, 0x38, [("public.items", ("2",)), ("public.items", ("3",))]),
        (False, None, []),
    ]
    committed = seen[-1][0]
    assert list(committed.tables["public.items"].keys) == [("1",), ("2",), ("3",)]
    assert (committed.commit_lsn, committed.end_lsn) == (0x38, 0x40)


def test_without_a_tick_the_decoder_yields_committed_transactions_only():
    decoder = Decoder({"public.items": ("id",)})
    transactions = feed(decoder, begin(), relation(1, "public.items", ["id"]),
                        *[row("I", 1, ("N", [str(n)])) for n in range(5)], commit(0x10))
    assert [transaction.end_lsn for transaction in transactions] == [0x10]
    assert decoder.take_fresh() == []
