"""The dialect-free planning core of mysql_delta_apply: chunks, predicates, narrowing, state, options, drift."""

from __future__ import annotations

import pytest

from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.binlog import (
    check_source_binlog,
    key_of,
    truncated_table,
)
from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.checksum import (
    ChunkChecksum,
    plan_row_changes,
)
from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.chunking import (
    Chunk,
    keys_predicate,
    next_chunk_size,
    range_predicate,
)
from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.errors import (
    BinlogNotReady,
    InvalidOptions,
    SchemaDrift,
)
from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.mysql import quote, row_literal
from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.options import delta_options
from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.schema import (
    Column,
    TableSchema,
    check_schemas,
    choose_key,
    schema_drift,
)
from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.state import (
    BinlogPosition,
    decode_key,
    encode_key,
)

SIDES = {"source": {"host": "old", "database": "shop"}, "target": {"host": "new", "database": "shop_new"}}


def table(*columns: Column, key=("id",), kind="primary") -> TableSchema:
    return TableSchema(name="orders", columns=columns, key=key, key_kind=kind, unique_keys=(key,) if key else ())


ID = Column("id", "int", "int(11)", nullable=False, auto_increment=True)
NAME = Column("name", "varchar", "varchar(20)")


def test_a_composite_range_is_an_or_of_ands_the_index_can_use():
    where, parameters = range_predicate(("a", "b"), quote, (1, "x"), (5, "y"))
    assert where == "(`a` > %s OR (`a` = %s AND `b` > %s)) AND (`a` < %s OR (`a` = %s AND `b` <= %s))"
    assert parameters == [1, 1, "x", 5, 5, "y"]


def test_open_ends_select_everything_on_that_side():
    assert range_predicate(("id",), quote, None, None) == ("1=1", [])
    assert range_predicate(("id",), quote, None, ("10",)) == ("`id` <= %s", ["10"])


def test_keys_predicate_uses_in_for_one_column_and_or_of_ands_for_composite_keys():
    assert keys_predicate(("id",), quote, [(1,), (2,)]) == ("`id` IN (%s, %s)", [1, 2])
    where, parameters = keys_predicate(("g", "m"), quote, [("a", 1), ("b", 2)])
    assert where == "((`g` = %s AND `m` = %s) OR (`g` = %s AND `m` = %s))" and parameters == ["a", 1, "b", 2]


def test_chunk_size_moves_toward_half_a_second_but_at_most_fourfold():
    assert next_chunk_size(5000, 0.25) == 10000
    assert next_chunk_size(5000, 0.001) == 20000
    assert next_chunk_size(5000, 10.0) == 1250
    assert next_chunk_size(600, 10.0) == 500


def test_narrowing_finds_inserts_updates_and_deletes():
    changes = plan_row_changes({(1,): "a", (2,): "b", (4,): "d"}, {(1,): "a", (2,): "B", (3,): "c"})
    assert changes.inserts == ((4,),) and changes.updates == ((2,),) and changes.deletes == ((3,),)
    assert len(changes) == 3 and changes.upserts == ((4,), (2,))


def test_equal_chunks_have_no_changes():
    assert not plan_row_changes({(1,): "a"}, {(1,): "a"})


def test_checksums_compare_count_and_both_hash_halves():
    assert ChunkChecksum.from_row(("3", "10", "20", "5")) == ChunkChecksum(3, 10, 20, 5)
    assert ChunkChecksum(3, 10, 20, 5) != ChunkChecksum(3, 10, 21, 5)
    assert ChunkChecksum.from_row((0, None, None, None)) == ChunkChecksum(0, 0, 0, 0)


def test_row_literal_keeps_null_distinct_and_sends_blobs_as_hex_and_skips_generated_columns():
    schema = table(ID, NAME, Column("payload", "blob", "blob", binary=True), Column("flags", "bit", "bit(3)"),
                   Column("length", "int", "int(11)", generated=True))
    literal = row_literal(schema)
    assert "QUOTE(`name`)" in literal and "HEX(`payload`)" in literal and "CAST(`flags` AS UNSIGNED)" in literal
    assert "`length`" not in literal


def test_keys_survive_the_state_table_including_bytes():
    key = ("7", b"\x00\xff", None)
    assert decode_key(encode_key(key)) == key
    assert encode_key(None) is None


def test_binlog_positions_order_by_file_then_position():
    assert BinlogPosition("bin.000002", 4).order() > BinlogPosition("bin.000001", 9000).order()
    assert BinlogPosition.from_result({"file": "bin.000001", "position": "5"}) == BinlogPosition("bin.000001", 5)
    assert BinlogPosition.from_result(None) is None


def test_binlog_keys_are_read_by_column_position():
    assert key_of({"UNKNOWN_COL0": 5, "UNKNOWN_COL1": "x", "UNKNOWN_COL2": 9}, (0, 2)) == (5, 9)


def test_binlog_strategy_names_each_wrong_source_setting():
    with pytest.raises(BinlogNotReady, match="binlog_format is STATEMENT \\(set binlog_format=ROW\\)") as refused:
        check_source_binlog({"log_bin": "1", "binlog_format": "STATEMENT", "binlog_row_image": "MINIMAL"})
    assert "binlog_row_image=FULL" in str(refused.value) and refused.value.side == "source"
    check_source_binlog({"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "FULL"})


def test_binlog_strategy_refuses_compressed_binary_logs_it_could_not_read():
    # mysql-replication passes over compressed events without a word: refused before anything is read.
    for name in ("log_bin_compress", "binlog_transaction_compression"):
        with pytest.raises(BinlogNotReady, match=f"{name} is ON \\(set {name}=OFF"):
            check_source_binlog({"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "FULL", name: "ON"})
    check_source_binlog({"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "FULL",
                         "log_bin_compress": "OFF", "binlog_transaction_compression": None})


def binlog_packet(event_type: int, log_pos: int, table_id: int | None = None, body: bytes = b"") -> bytes:
    header = bytes([0]) + (0).to_bytes(4, "little") + bytes([event_type]) + (1).to_bytes(4, "little") \
        + (100).to_bytes(4, "little") + log_pos.to_bytes(4, "little") + (0).to_bytes(2, "little")
    return header + (table_id.to_bytes(6, "little") if table_id is not None else b"") + body


def test_row_events_of_tables_the_stream_does_not_map_are_dropped_before_parsing():
    from types import SimpleNamespace

    from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.binlog import event_filter
    stream = SimpleNamespace(table_map={18: "copied table"}, log_pos=4)
    keep = event_filter(stream)
    for event_type in (23, 24, 25, 30, 31, 32):
        assert keep(binlog_packet(event_type, 900, table_id=18, body=b"rows"))
        assert not keep(binlog_packet(event_type, 1000 + event_type, table_id=77, body=b"rows"))
        # A connection the library re-opens resumes after the events dropped here.
        assert stream.log_pos == 1000 + event_type
    # Table maps, commits, GTIDs, rotations, error and end-of-stream packets always reach the library.
    assert keep(binlog_packet(19, 2000, table_id=77, body=b"map"))
    assert keep(binlog_packet(16, 2100, body=b"xid-xid-"))
    assert keep(b"\xfe\x00\x00\x02\x00") and keep(b"\xff\x10\x04#HY000error message")
    with pytest.raises(BinlogNotReady, match="log_bin_compress=OFF"):
        keep(binlog_packet(169, 3000, table_id=18, body=b"zz"))
    assert not keep(binlog_packet(169, 3100, table_id=77, body=b"zz"))   # another database's: no matter
    with pytest.raises(BinlogNotReady, match="binlog_transaction_compression=OFF"):
        keep(binlog_packet(40, 3200, body=b"payload-payload"))


def test_the_key_is_the_primary_key_else_the_shortest_non_null_unique_key():
    assert choose_key(("id",), [("a", "b")], {}) == (("id",), "primary")
    assert choose_key((), [("a", "b"), ("c",), ("n",)], {"a": False, "b": False, "c": False, "n": True}) == \
        (("c",), "unique")
    assert choose_key((), [("n",)], {"n": True}) == ((), "none")


def test_drift_names_the_missing_column_and_the_type_change():
    source = table(ID, NAME, Column("total", "decimal", "decimal(10,2)"))
    target = table(ID, Column("name", "varchar", "varchar(10)"))
    problems = schema_drift(source, target)
    assert any("column total (decimal(10,2)) is missing on the target" in p for p in problems)
    assert any("column name is varchar(20) on the source but varchar(10) on the target" in p for p in problems)


def test_drift_of_a_missing_table_fails_before_writing():
    with pytest.raises(SchemaDrift, match="table orders exists on the source but not on the target") as drift:
        check_schemas([table(ID)], {})
    assert drift.value.side == "target"


def test_a_target_without_the_sources_key_is_drift():
    target = TableSchema(name="orders", columns=(ID, NAME), key=(), key_kind="none", unique_keys=())
    assert any("no primary or unique key on (id)" in p for p in schema_drift(table(ID, NAME), target))


def test_options_default_to_checksum_and_the_documented_values():
    options = delta_options(SIDES)
    assert (options.strategy, options.parallel_tables, options.fix_auto_increment, options.verify,
            options.freeze_source, options.state_table) == ("checksum", 2, True, True, "none", "_cutover_delta_state")
    assert options.target.database == "shop_new"


@pytest.mark.parametrize(("params", "option", "words"), [
    ({"strategy": "watermark"}, "watermark_columns", "strategy watermark needs watermark_columns"),
    ({"strategy": "magic"}, "strategy", "not one of checksum, binlog, watermark"),
    ({"chunk_size": 0}, "chunk_size", "positive number of rows"),
    ({"tables": ["a"], "exclude_tables": ["a"]}, "exclude_tables", "both tables and exclude_tables"),
    ({"state_table": "bad name"}, "state_table", "letters, digits"),
])
def test_bad_options_are_refused_naming_the_option(params, option, words):
    with pytest.raises(InvalidOptions, match=words) as refused:
        delta_options({**SIDES, **params})
    assert refused.value.option == option


def test_a_side_without_database_is_refused_naming_the_side():
    with pytest.raises(InvalidOptions, match="target.database is required") as refused:
        delta_options({"source": {"database": "a"}, "target": {"host": "x"}})
    assert refused.value.side == "target"


def test_chunks_describe_themselves_for_error_messages():
    assert Chunk("orders", 3, ("10",), None).describe() == "orders#3 (10 .. +inf]"
    assert Chunk("blobs", 0, None, (b"\x01",)).describe() == "blobs#0 (-inf .. 0x01]"


def test_keys_are_cut_from_raw_row_images_skipping_every_other_column():
    from types import SimpleNamespace as column

    from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.binlog import (
        _column_reader,
        _cut_keys,
        _signed_integer,
        _unsigned_integer,
    )
    # Table map: BIGINT UNSIGNED key, VARCHAR(300) (2-byte length), DATETIME(6), DECIMAL(20,6), BLOB, INT key part.
    columns = [column(type=8), column(type=15, max_length=1200), column(type=18, fsp=6),
               column(type=246, precision=20, decimals=6), column(type=252, length_size=2), column(type=3)]
    readers = [_column_reader(c) for c in columns]
    assert readers == [(0, 8), (2, 0), (0, 8), (0, 10), (3, 2), (0, 4)]
    decoders = {0: _unsigned_integer, 5: _signed_integer}
    first = (bytes([0b000100])  # column 2 (DATETIME) is NULL
             + (2**63 + 5).to_bytes(8, "little") + (3).to_bytes(2, "little") + b"a,b"
             + bytes(10) + (4).to_bytes(2, "little") + b"\x00\xff'\\" + (-7).to_bytes(4, "little", signed=True))
    second = (bytes([0b010010])  # VARCHAR and BLOB are NULL
              + (1).to_bytes(8, "little") + bytes(8) + bytes(10) + (42).to_bytes(4, "little", signed=True))
    images, keys = _cut_keys(first + second, readers, decoders, (5, 0), 1)
    assert images == 2
    assert keys == [(-7, 2**63 + 5), (42, 1)]
    # A row image that does not end where the event ends is refused (the caller decodes it the slow way).
    assert _cut_keys(first + second[:-2], readers, decoders, (0, 5), 1)[0] == -1


@pytest.mark.parametrize("query, table", [
    ("TRUNCATE TABLE items", ("shop", "items")),
    ("truncate items", ("shop", "items")),
    ("TRUNCATE TABLE `other`.`items`", ("other", "items")),
    ("/* app */ TRUNCATE TABLE `we``ird`", ("shop", "we`ird")),
    ("TRUNCATE TABLE shop . items", ("shop", "items")),
    ("DELETE FROM items", None),
    ("BEGIN", None),
    ("CREATE TABLE truncate_log (id int)", None),
])
def test_a_truncate_statement_names_the_table_it_empties(query, table):
    assert truncated_table(query, "shop") == table
