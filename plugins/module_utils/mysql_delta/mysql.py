# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The MySQL/MariaDB dialect: connections, catalog reads and every SQL text the core sends.

Planning (chunks, narrowing, state, resume) lives in dialect-free modules; a PostgreSQL
variant provides the same functions over its own catalog and SQL.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Sequence
from typing import Any

from .chunking import Key, keys_predicate, range_predicate
from .errors import ConnectionFailed, DeltaError, InvalidOptions
from .options import SideOptions
from .schema import Column, TableSchema, choose_key
from .state import BinlogPosition

try:
    import pymysql
    import pymysql.converters

    HAS_PYMYSQL = True
    PYMYSQL_IMPORT_ERROR: Exception | None = None
except ImportError as exc:  # pragma: no cover - reported by the module as missing_required_lib
    HAS_PYMYSQL = False
    PYMYSQL_IMPORT_ERROR = exc

BINARY_TYPES = {"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"}
# Bytes of one multi-row INSERT; well under the 16 MB max_allowed_packet of a default server
# and big enough that per-statement overhead disappears.
INSERT_BATCH_BYTES = 4 * 1024 * 1024
KEY_BATCH = 1000
# UTC on both sides: TIMESTAMP columns are then read and written without any zone shift.
SESSION_TIME_ZONE = "+00:00"
# What mysqldump sets for the same reason: 0 in an AUTO_INCREMENT column is a value, not "next id".
TARGET_SQL_MODE = "NO_AUTO_VALUE_ON_ZERO,STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION"


def quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _raw_conversions() -> dict:
    # Keep the encoders (to send parameters) but no decoders: values come back as the server's
    # text (bytes for binary columns), so keys and copied rows are never re-typed in Python.
    return {k: v for k, v in pymysql.converters.conversions.items() if not isinstance(k, int)}


class Server:
    """One side's connection, speaking in whole statements."""

    def __init__(self, options: SideOptions, autocommit: bool = True, role: str = "read"):
        if not HAS_PYMYSQL:
            raise ConnectionFailed(f"PyMySQL is required on the controller: {PYMYSQL_IMPORT_ERROR}", side=options.side)
        self.options = options
        self.side = options.side
        self.database = options.database
        ssl = {name: value for name, value in (("ca", options.ssl_ca), ("cert", options.ssl_cert),
                                               ("key", options.ssl_key)) if value}
        try:
            self.connection = pymysql.connect(
                host=options.host, port=options.port, user=options.user, password=options.password or "",
                database=None, charset="utf8mb4", connect_timeout=options.connect_timeout,
                autocommit=autocommit, conv=_raw_conversions(), ssl=ssl or None,
                read_timeout=None, write_timeout=None, local_infile=False,
            )
        except pymysql.err.MySQLError as exc:
            raise ConnectionFailed(
                f"cannot connect to the {options.describe()}: {exc}; check {options.side}.host/port/user/password "
                f"(and ssl_* if the server requires TLS)", side=options.side, option="host") from exc
        # GROUP_CONCAT answers are bounded by the packet size the server accepts anyway.
        self.execute(f"SET SESSION time_zone = '{SESSION_TIME_ZONE}', SESSION group_concat_max_len = @@max_allowed_packet - 1024")
        self.concat_limit = int(self.query("SELECT @@SESSION.group_concat_max_len")[0][0])
        if role == "write":
            self.execute(f"SET SESSION sql_mode = '{TARGET_SQL_MODE}'")
            self.execute("SET SESSION foreign_key_checks = 0")
        self.writes = 0

    def close(self) -> None:
        # Closing a connection the server already dropped is not an error worth reporting.
        with contextlib.suppress(Exception):
            self.connection.close()

    def query(self, sql: Any, parameters: Sequence | None = None) -> list[tuple]:
        with self.connection.cursor() as cursor:
            try:
                cursor.execute(sql, parameters if parameters else None)
            except pymysql.err.MySQLError as exc:
                raise DeltaError(f"{self.side} server rejected a statement: {exc}", side=self.side,
                                 statement=_shorten(sql)) from exc
            return list(cursor.fetchall())

    def execute(self, sql: Any, parameters: Sequence | None = None) -> int:
        with self.connection.cursor() as cursor:
            try:
                return int(cursor.execute(sql, parameters if parameters else None))
            except pymysql.err.MySQLError as exc:
                raise DeltaError(f"{self.side} server rejected a statement: {exc}", side=self.side,
                                 statement=_shorten(sql)) from exc

    def write(self, sql: Any, parameters: Sequence | None = None) -> int:
        self.writes += 1
        return self.execute(sql, parameters)

    def begin(self) -> None:
        self.connection.begin()

    def commit(self) -> None:
        self.connection.commit()

    def rollback(self) -> None:
        # The connection may already be gone; the server then rolls back by itself.
        with contextlib.suppress(Exception):
            self.connection.rollback()

    def table(self, name: str) -> str:
        return f"{quote(self.database)}.{quote(name)}"

    def variable(self, name: str) -> str | None:
        rows = self.query(f"SELECT @@GLOBAL.{name}")
        value = rows[0][0] if rows else None
        return value.decode() if isinstance(value, bytes) else value


def _shorten(sql: Any) -> str:
    text = sql.decode("utf-8", "replace") if isinstance(sql, (bytes, bytearray)) else str(sql)
    return text if len(text) < 300 else text[:300] + "..."


# --- catalog ---------------------------------------------------------------------------------

def database_exists(server: Server) -> bool:
    return bool(server.query("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", [server.database]))


def base_tables(server: Server) -> list[str]:
    rows = server.query("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                        "AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME", [server.database])
    return [_text(row[0]) for row in rows]


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


def read_schemas(server: Server, tables: Sequence[str]) -> dict[str, TableSchema]:
    """Shapes of ``tables`` that exist (missing ones are absent from the result)."""
    if not tables:
        return {}
    marks = ", ".join(["%s"] * len(tables))
    columns: dict[str, list[Column]] = {}
    for row in server.query(
            "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, EXTRA, "
            "COALESCE(CHARACTER_SET_NAME, '') FROM information_schema.COLUMNS "
            f"WHERE TABLE_SCHEMA = %s AND TABLE_NAME IN ({marks}) ORDER BY TABLE_NAME, ORDINAL_POSITION",
            [server.database, *tables]):
        table, name, data_type, column_type, nullable, extra, charset = (_text(v) for v in row)
        extra = extra.lower()
        data_type = data_type.lower()
        columns.setdefault(table, []).append(Column(
            name=name, data_type=data_type, column_type=column_type, nullable=nullable == "YES",
            generated="generated" in extra or "virtual" in extra or "persistent" in extra,
            auto_increment="auto_increment" in extra,
            binary=data_type in BINARY_TYPES or charset == "binary",
        ))
    indexes: dict[str, dict[str, list[tuple[int, str]]]] = {}
    for row in server.query(
            "SELECT TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME FROM information_schema.STATISTICS "
            f"WHERE TABLE_SCHEMA = %s AND TABLE_NAME IN ({marks}) AND NON_UNIQUE = 0 AND SUB_PART IS NULL",
            [server.database, *tables]):
        table, index, seq, column = _text(row[0]), _text(row[1]), int(row[2]), _text(row[3])
        indexes.setdefault(table, {}).setdefault(index, []).append((seq, column))
    schemas = {}
    for table, table_columns in columns.items():
        unique = {name: tuple(column for _position, column in sorted(parts)) for name, parts in indexes.get(table, {}).items()}
        primary = unique.pop("PRIMARY", ())
        key, kind = choose_key(primary, sorted(unique.values()), {c.name: c.nullable for c in table_columns})
        keys = tuple(sorted(set(unique.values()) | ({primary} if primary else set())))
        schemas[table] = TableSchema(name=table, columns=tuple(table_columns), key=key, key_kind=kind,
                                     unique_keys=keys)
    return schemas


# --- row text ----------------------------------------------------------------------------------

def value_literal(column: Column) -> str:
    """SQL (run on the source) giving the column's value as the literal to type into an INSERT."""
    name = quote(column.name)
    if column.data_type == "bit":
        return f"IFNULL(CAST({name} AS UNSIGNED), 'NULL')"
    if column.binary:
        return f"IF({name} IS NULL, 'NULL', CONCAT('X''', HEX({name}), ''''))"
    # QUOTE escapes and returns NULL unquoted; converting to one character set keeps columns of
    # different collations concatenable (otherwise: "Illegal mix of collations").
    return f"CONVERT(QUOTE({name}) USING utf8mb4)"


def row_literal(schema: TableSchema) -> str:
    """SQL for the whole row as ``(v1,v2,...)``, as bytes, over the written (non-generated) columns."""
    parts = ", ".join(value_literal(column) for column in schema.written_columns)
    return f"CAST(CONCAT('(', CONCAT_WS(',', {parts}), ')') AS BINARY)"


# Types whose text form has no comma, quote or character set of its own: hashed as they are,
# which costs a third less than quoting every value (the checksum's work is mostly this text).
PLAIN_TEXT_TYPES = {"tinyint", "smallint", "mediumint", "int", "integer", "bigint", "decimal", "numeric",
                    "float", "double", "real", "date", "datetime", "timestamp", "time", "year"}


def hash_text(column: Column) -> str:
    """SQL for one value in the hashed row text: NULL never equals a value's text, nor '' NULL."""
    name = quote(column.name)
    if column.data_type == "bit":
        return f"IFNULL(CAST({name} AS UNSIGNED), 'N')"
    if column.data_type in PLAIN_TEXT_TYPES:
        return f"IFNULL({name}, 'N')"
    if column.binary:
        return f"QUOTE({name})"
    return f"QUOTE(CONVERT({name} USING utf8mb4))"


def row_hash(schema: TableSchema) -> str:
    """MD5 of the row's values joined by commas: text values are quoted (so a comma inside one
    cannot shift a boundary, and NULL is the bare word), other types have no comma in their text."""
    return f"MD5(CONCAT_WS(',', {', '.join(hash_text(column) for column in schema.written_columns)}))"


def key_list(schema: TableSchema) -> str:
    return ", ".join(quote(name) for name in schema.key)


def chunk_checksum_sql(server: Server, schema: TableSchema, lower: Key | None,
                       upper: Key | None) -> tuple[str, list]:
    where, parameters = range_predicate(schema.key, quote, lower, upper) if schema.key else ("1=1", [])
    # The row hash is kept in a user variable so MD5 runs once per row while three aggregates
    # read it (pt-table-checksum's trick); a derived table would materialise every hash first.
    sql = (f"SELECT COUNT(*), COALESCE(BIT_XOR(CAST(CONV(SUBSTRING(@cutover_row_hash := {row_hash(schema)}, 1, 16), 16, 10) "
           "AS UNSIGNED)), 0), COALESCE(BIT_XOR(CAST(CONV(SUBSTRING(@cutover_row_hash, 17, 16), 16, 10) AS UNSIGNED)), 0), "
           "COALESCE(SUM(CAST(CONV(SUBSTRING(@cutover_row_hash, 1, 8), 16, 10) AS UNSIGNED)), 0) "
           f"FROM {server.table(schema.name)} WHERE {where}")
    return sql, parameters


def chunk_upper_bound(server: Server, schema: TableSchema, lower: Key | None, rows: int) -> Key | None:
    """The key ``rows`` rows after ``lower`` on this server, or None when fewer rows remain."""
    where, parameters = range_predicate(schema.key, quote, lower, None)
    found = server.query(f"SELECT {key_list(schema)} FROM {server.table(schema.name)} WHERE {where} "
                         f"ORDER BY {key_list(schema)} LIMIT 1 OFFSET {int(rows) - 1}", parameters)
    return tuple(found[0]) if found else None


INTEGER_TYPES = {"tinyint", "smallint", "mediumint", "int", "integer", "bigint"}


def _integer_key(schema: TableSchema) -> bool:
    """One integer key column: its text is plain digits, so keys can travel in one string."""
    if len(schema.key) != 1:
        return False
    column = schema.key_columns[0]
    return column.data_type in INTEGER_TYPES and "zerofill" not in column.column_type.lower()


def row_hashes(server: Server, schema: TableSchema, lower: Key | None, upper: Key | None) -> dict[Key, Any]:
    """``{key: row hash}`` of a range; both sides of a comparison take the same path."""
    where, parameters = range_predicate(schema.key, quote, lower, upper)
    if _integer_key(schema):
        # One string per chunk instead of a result row per table row: the driver's per-row
        # decoding in Python cost more than the server's hashing.
        found = server.query(f"SELECT COUNT(*), GROUP_CONCAT({quote(schema.key[0])}, ' ', {row_hash(schema)}) "
                             f"FROM {server.table(schema.name)} WHERE {where}", parameters)[0]
        text = found[1]
        if not text:
            return {}
        text = _text(text)
        if len(text) < server.concat_limit - 64:
            parts = text.split(",")
            if len(parts) == int(found[0]):
                return {(part[:-33],): part[-32:] for part in parts}
    rows = server.query(f"SELECT {key_list(schema)}, {row_hash(schema)} FROM {server.table(schema.name)} "
                        f"WHERE {where}", parameters)
    width = len(schema.key)
    return {tuple(row[:width]): row[width] for row in rows}


def rows_in_range(server: Server, schema: TableSchema, lower: Key | None, upper: Key | None) -> list[tuple]:
    """``(key..., literal)`` rows of a range in key order (all rows for a keyless table)."""
    if schema.keyless:
        return [((), row[0]) for row in server.query(f"SELECT {row_literal(schema)} FROM {server.table(schema.name)}")]
    where, parameters = range_predicate(schema.key, quote, lower, upper)
    width = len(schema.key)
    rows = server.query(f"SELECT {key_list(schema)}, {row_literal(schema)} FROM {server.table(schema.name)} "
                        f"WHERE {where} ORDER BY {key_list(schema)}", parameters)
    return [(tuple(row[:width]), row[width]) for row in rows]


def literals_in_range(server: Server, schema: TableSchema, lower: Key | None, upper: Key | None) -> list[bytes]:
    """Row literals of a range (no keys), fetched as one string: for loading into an empty range."""
    where, parameters = range_predicate(schema.key, quote, lower, upper)
    # QUOTE() escapes NUL and hex/number/NULL literals never contain one, so NUL separates rows.
    found = server.query(f"SELECT COUNT(*), GROUP_CONCAT({row_literal(schema)} SEPARATOR '\\0') "
                         f"FROM {server.table(schema.name)} WHERE {where}", parameters)[0]
    count, text = int(found[0]), found[1]
    if count == 0:
        return []
    if text is not None and len(text) < server.concat_limit - 64:
        literals = (text if isinstance(text, bytes) else _text(text).encode("utf-8")).split(b"\0")
        if len(literals) == count:
            return literals
    return [literal for _key, literal in rows_in_range(server, schema, lower, upper)]


def rows_by_keys(server: Server, schema: TableSchema, keys: Sequence[Key]) -> list[tuple]:
    found: list[tuple] = []
    width = len(schema.key)
    for start in range(0, len(keys), KEY_BATCH):
        where, parameters = keys_predicate(schema.key, quote, keys[start:start + KEY_BATCH])
        for row in server.query(f"SELECT {key_list(schema)}, {row_literal(schema)} FROM "
                                f"{server.table(schema.name)} WHERE {where}", parameters):
            found.append((tuple(row[:width]), row[width]))
    return found


def count_rows(server: Server, schema: TableSchema, lower: Key | None = None, upper: Key | None = None) -> int:
    if schema.keyless:
        return int(server.query(f"SELECT COUNT(*) FROM {server.table(schema.name)}")[0][0])
    where, parameters = range_predicate(schema.key, quote, lower, upper)
    return int(server.query(f"SELECT COUNT(*) FROM {server.table(schema.name)} WHERE {where}", parameters)[0][0])


def existing_keys(server: Server, schema: TableSchema, keys: Sequence[Key]) -> int:
    total = 0
    for start in range(0, len(keys), KEY_BATCH):
        where, parameters = keys_predicate(schema.key, quote, keys[start:start + KEY_BATCH])
        total += int(server.query(f"SELECT COUNT(*) FROM {server.table(schema.name)} WHERE {where}",
                                  parameters)[0][0])
    return total


# --- writes (target) ------------------------------------------------------------------------

def insert_rows(server: Server, schema: TableSchema, literals: Sequence[bytes], verb: str = "INSERT",
                upsert: bool = False) -> int:
    """Multi-row INSERT (or REPLACE) of row literals, batched by bytes; returns affected rows."""
    if not literals:
        return 0
    names = ", ".join(quote(c.name) for c in schema.written_columns)
    head = f"{verb} INTO {server.table(schema.name)} ({names}) VALUES ".encode()
    tail = b""
    if upsert:
        keys = set(schema.key)
        updates = [f"{quote(c.name)} = VALUES({quote(c.name)})" for c in schema.written_columns if c.name not in keys]
        if not updates:
            updates = [f"{quote(schema.key[0])} = {quote(schema.key[0])}"]
        tail = (" ON DUPLICATE KEY UPDATE " + ", ".join(updates)).encode("utf-8")
    batch: list[bytes] = []
    size = 0
    affected = 0
    for literal in literals:
        batch.append(literal)
        size += len(literal) + 1
        if size >= INSERT_BATCH_BYTES:
            affected += server.write(head + b",".join(batch) + tail)
            batch, size = [], 0
    if batch:
        affected += server.write(head + b",".join(batch) + tail)
    return affected


def delete_keys(server: Server, schema: TableSchema, keys: Sequence[Key]) -> int:
    deleted = 0
    for start in range(0, len(keys), KEY_BATCH):
        where, parameters = keys_predicate(schema.key, quote, keys[start:start + KEY_BATCH])
        deleted += server.write(f"DELETE FROM {server.table(schema.name)} WHERE {where}", parameters)
    return deleted


def delete_all(server: Server, schema: TableSchema) -> int:
    return server.write(f"DELETE FROM {server.table(schema.name)}")


# --- AUTO_INCREMENT --------------------------------------------------------------------------

_AUTO_INCREMENT = re.compile(r"\bAUTO_INCREMENT=(\d+)", re.IGNORECASE)


def auto_increment_value(server: Server, table: str) -> int:
    """The table's next id as the server holds it now (SHOW CREATE TABLE is never stale, unlike
    information_schema.TABLES, which may serve cached statistics)."""
    create = _text(server.query(f"SHOW CREATE TABLE {server.table(table)}")[0][1])
    found = _AUTO_INCREMENT.search(create)
    return int(found.group(1)) if found else 1


def max_value(server: Server, table: str, column: str) -> int | None:
    value = server.query(f"SELECT MAX({quote(column)}) FROM {server.table(table)}")[0][0]
    return None if value is None else int(value)


def set_auto_increment(server: Server, table: str, value: int) -> None:
    server.write(f"ALTER TABLE {server.table(table)} AUTO_INCREMENT = {int(value)}")


# --- state table -----------------------------------------------------------------------------

def create_state_table(server: Server, name: str) -> None:
    server.write(
        f"CREATE TABLE IF NOT EXISTS {server.table(name)} ("
        "table_name VARCHAR(64) NOT NULL, item VARCHAR(16) NOT NULL, value LONGTEXT NOT NULL, "
        "updated_at DATETIME(6) NOT NULL, PRIMARY KEY (table_name, item)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 "
        "COMMENT='cutover.migration.mysql_delta_apply progress; safe to drop after the cutover'")


def state_table_exists(server: Server, name: str) -> bool:
    return bool(server.query("SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                             [server.database, name]))


def read_state(server: Server, name: str) -> dict[tuple[str, str], str]:
    if not state_table_exists(server, name):
        return {}
    return {(_text(t), _text(i)): _text(v) for t, i, v in
            server.query(f"SELECT table_name, item, value FROM {server.table(name)}")}


def write_state(server: Server, name: str, table: str, item: str, value: str) -> None:
    server.write(f"INSERT INTO {server.table(name)} (table_name, item, value, updated_at) "
                 "VALUES (%s, %s, %s, UTC_TIMESTAMP(6)) ON DUPLICATE KEY UPDATE value = VALUES(value), "
                 "updated_at = VALUES(updated_at)", [table, item, value])


def delete_state(server: Server, name: str, table: str, item: str) -> None:
    server.write(f"DELETE FROM {server.table(name)} WHERE table_name = %s AND item = %s", [table, item])


# --- binary log (source) ---------------------------------------------------------------------

def binlog_settings(server: Server) -> dict[str, str | None]:
    settings = {name: server.variable(name) for name in ("log_bin", "binlog_format", "binlog_row_image")}
    # Each server knows only its own compression setting (MariaDB and MySQL 8 name it differently).
    for name in ("log_bin_compress", "binlog_transaction_compression"):
        try:
            settings[name] = server.variable(name)
        except DeltaError:
            settings[name] = None
    return settings


def current_position(server: Server) -> BinlogPosition | None:
    """Where the source's binary log ends now (None when binary logging is off)."""
    rows = server.query("SHOW MASTER STATUS")
    if not rows:
        return None
    gtid = None
    try:
        gtid = _text(server.query("SELECT @@GLOBAL.gtid_binlog_pos")[0][0]) or None
    except DeltaError:
        try:
            gtid = _text(server.query("SELECT @@GLOBAL.gtid_executed")[0][0]) or None
        except DeltaError:
            gtid = None
    return BinlogPosition(file=_text(rows[0][0]), position=int(rows[0][1]), gtid=gtid)


def binlog_files(server: Server) -> list[str]:
    return [_text(row[0]) for row in server.query("SHOW BINARY LOGS")]


def is_mariadb(server: Server) -> bool:
    return "mariadb" in _text(server.query("SELECT VERSION()")[0][0]).lower()


def set_read_only(server: Server) -> float:
    try:
        server.execute("SET GLOBAL read_only = ON")
    except DeltaError as exc:
        raise InvalidOptions(f"freeze_source=read_only: the source refused SET GLOBAL read_only ({exc}); grant the "
                             "source user SUPER or READ_ONLY ADMIN, or freeze the application another way and "
                             "use freeze_source=none", side="source", option="freeze_source") from exc
    return time.time()
