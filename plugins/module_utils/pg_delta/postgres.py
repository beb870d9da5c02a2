# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PostgreSQL dialect: connections, catalog reads and every SQL text the core sends.

Rows travel as COPY (the server's own output, streamed from source to target without being
re-typed in Python) and are compared by an MD5 of the row's binary form, in which NULL is
length -1 and '' length 0, so the two never hash alike. Key values come back as psycopg's
Python values and go back as parameters; a key restored from the state table is a string, which
psycopg sends untyped so the server casts it to the key column's type.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

from ..mysql_delta import buckets as bucketing
from ..mysql_delta.buckets import Buckets
from ..mysql_delta.chunking import Key, keys_predicate, range_predicate
from ..mysql_delta.errors import ConnectionFailed, DeltaError, InvalidOptions
from ..mysql_delta.schema import Column, TableSchema, choose_key
from .options import SideOptions
from .versions import SideVersions

try:
    import psycopg
    from psycopg.copy import QueuedLibpqWriter

    HAS_PSYCOPG = True
    PSYCOPG_IMPORT_ERROR: Exception | None = None
except ImportError as exc:  # pragma: no cover - reported by the module as missing_required_lib
    HAS_PSYCOPG = False
    PSYCOPG_IMPORT_ERROR = exc

KEY_BATCH = 1000
COPY_BUFFER_BYTES = 1 << 20
# Session settings that make every value's text the same on both servers whatever their
# postgresql.conf says: the text is what is hashed and what COPY carries.
SESSION_SETTINGS = (
    ("TimeZone", "UTC"),
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "1"),
    ("bytea_output", "hex"),
    ("client_encoding", "UTF8"),
    ("statement_timeout", "0"),
)


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_table(name: str) -> str:
    schema, _dot, table = name.partition(".")
    return f"{quote(schema)}.{quote(table)}"


def literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class Server:
    """One side's connection, speaking in whole statements."""

    def __init__(self, options: SideOptions, autocommit: bool = True, role: str = "read"):
        if not HAS_PSYCOPG:
            raise ConnectionFailed(f"psycopg (3) is required on the controller: {PSYCOPG_IMPORT_ERROR}",
                                   side=options.side)
        self.options = options
        self.side = options.side
        self.database = options.database
        self.writes = 0
        self.warnings: list[str] = []
        # Whether this session's foreign keys and user triggers are off (a write session's, see below).
        self.triggers_off = False
        try:
            self.connection = psycopg.connect(autocommit=True, **options.connection_arguments())
        except psycopg.Error as exc:
            raise ConnectionFailed(
                f"cannot connect to the {options.describe()}: {str(exc).strip()}; check {options.side}.host/port/"
                f"user/password/database (and sslmode/ssl_* if the server requires TLS)",
                side=options.side, option="host") from exc
        settings = [f"SET {name} = {literal(value)}" for name, value in SESSION_SETTINGS]
        # The run's own sessions must work while the source is frozen with
        # default_transaction_read_only (slot advance, publication); the setting is per session.
        settings.append("SET default_transaction_read_only = off")
        # A chunk's bucket sums group ~25,000 buckets: with the default 4MB the aggregate spills
        # to disk and costs a third more.
        settings.append("SET work_mem = '64MB'")
        # A chunk's scan is costed high enough to be JIT-compiled, which makes it slower: the time
        # goes into md5 and the aggregate, which compiled expressions do not speed up.
        settings.append("SET jit = off")
        if role == "write":
            # Each chunk commits with its progress row, so a commit lost in a target crash is
            # redone by the next run from the progress it finds; waiting for every flush is not
            # needed. A slot batch is the exception (commit_durably).
            settings.append("SET synchronous_commit = off")
        # One round trip: a run opens a few connections per table.
        self.execute("; ".join(settings))
        if role == "write":
            try:
                # Foreign keys and user triggers off for this session only, as pg_restore
                # --disable-triggers does: chunks arrive in key order, not in dependency order.
                self.execute("SET session_replication_role = replica")
                self.triggers_off = True
            except DeltaError:
                self.warnings.append(f"{options.side}: cannot SET session_replication_role = replica (needs superuser "
                                     "or rds_superuser); foreign keys are checked per chunk and may fail on tables "
                                     "that reference each other")
        self.connection.autocommit = autocommit

    def close(self) -> None:
        # Closing a connection the server already dropped is not an error worth reporting.
        with contextlib.suppress(Exception):
            self.connection.close()

    def query(self, sql: str, parameters: Sequence | None = None) -> list[tuple]:
        try:
            with self.connection.cursor() as cursor:
                cursor.execute(sql, parameters if parameters else None)
                return list(cursor.fetchall()) if cursor.description else []
        except psycopg.Error as exc:
            raise DeltaError(f"{self.side} server rejected a statement: {str(exc).strip()}", side=self.side,
                             statement=_shorten(sql)) from exc

    def execute(self, sql: str, parameters: Sequence | None = None) -> int:
        try:
            with self.connection.cursor() as cursor:
                cursor.execute(sql, parameters if parameters else None)
                return int(cursor.rowcount or 0)
        except psycopg.Error as exc:
            raise DeltaError(f"{self.side} server rejected a statement: {str(exc).strip()}", side=self.side,
                             statement=_shorten(sql)) from exc

    def write(self, sql: str, parameters: Sequence | None = None) -> int:
        self.writes += 1
        return self.execute(sql, parameters)

    def begin(self) -> None:
        # psycopg opens the transaction on the first statement of a non-autocommit connection.
        pass

    def commit(self) -> None:
        try:
            self.connection.commit()
        except psycopg.Error as exc:
            raise DeltaError(f"{self.side} server could not commit: {str(exc).strip()}", side=self.side) from exc

    def commit_durably(self) -> None:
        """Commit and wait for the commit to be flushed, whatever the session's synchronous_commit."""
        self.execute("SET LOCAL synchronous_commit = on")
        self.commit()

    def rollback(self) -> None:
        # The connection may already be gone; the server then rolls back by itself.
        with contextlib.suppress(Exception):
            self.connection.rollback()

    def setting(self, name: str) -> str:
        return str(self.query("SELECT current_setting(%s)", [name])[0][0])

    def version(self) -> int:
        return int(self.setting("server_version_num"))


def _shorten(sql: Any) -> str:
    text = str(sql)
    return text if len(text) < 300 else text[:300] + "..."


# --- catalog ---------------------------------------------------------------------------------

def base_tables(server: Server, schemas: Sequence[str]) -> list[str]:
    """Ordinary and partitioned tables (partitions themselves are reached through their root)."""
    rows = server.query(
        "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = ANY(%s) ORDER BY 1", [list(schemas)])
    return [row[0] for row in rows]


def missing_schemas(server: Server, schemas: Sequence[str]) -> list[str]:
    present = {row[0] for row in server.query("SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)",
                                              [list(schemas)])}
    return [name for name in schemas if name not in present]


_COLUMNS_SQL = """
SELECT n.nspname || '.' || c.relname, a.attname, t.typname, format_type(a.atttypid, a.atttypmod),
       NOT a.attnotnull, a.attgenerated <> '', a.attidentity <> '', t.typtype,
       (SELECT string_agg(quote_literal(e.enumlabel), ',' ORDER BY e.enumsortorder) FROM pg_enum e
         WHERE e.enumtypid = a.atttypid),
       CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
            THEN (SELECT collname FROM pg_collation WHERE oid = a.attcollation) END
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_type t ON t.oid = a.atttypid
 WHERE n.nspname || '.' || c.relname = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY 1, a.attnum
"""

# Unique indexes and exclusion constraints' indexes. A plain one (unique, on columns, without a
# predicate) is a key; the others (an expression, a predicate, an exclusion) are only named:
# values moving between rows collide in them too, but no column list selects their holders.
_KEYS_SQL = """
SELECT n.nspname || '.' || c.relname, i.indexrelid, i.indisprimary,
       array_agg(a.attname ORDER BY k.ordinality), bool_or(a.attnotnull IS NOT TRUE),
       i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL, ci.relname
  FROM pg_index i
  JOIN pg_class c ON c.oid = i.indrelid
  JOIN pg_class ci ON ci.oid = i.indexrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ordinality)
  LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
 WHERE n.nspname || '.' || c.relname = ANY(%s)
   AND (i.indisunique OR EXISTS (SELECT 1 FROM pg_constraint x WHERE x.conindid = i.indexrelid AND x.contype = 'x'))
 GROUP BY 1, 2, 3, 6, 7
"""


def read_schemas(server: Server, tables: Sequence[str]) -> dict[str, TableSchema]:
    """Shapes of ``tables`` that exist (missing ones are absent from the result)."""
    if not tables:
        return {}
    columns: dict[str, list[Column]] = {}
    for (table, name, type_name, declared, nullable, generated, identity, type_kind, labels,
         collation) in server.query(_COLUMNS_SQL, [list(tables)]):
        column_type = declared
        if type_kind == "e":
            # The labels, not just the type name: a label missing on the target fails the copy.
            column_type = f"{declared} enum({labels or ''})"
        if collation:
            column_type = f"{column_type} collate {collation}"
        columns.setdefault(table, []).append(Column(
            name=name, data_type=type_name, column_type=column_type, nullable=bool(nullable),
            generated=bool(generated), auto_increment=bool(identity), binary=type_name == "bytea"))
    keys: dict[str, list[tuple[bool, tuple[str, ...]]]] = {}
    others: dict[str, list[str]] = {}
    for table, _index, primary, names, _nullable, plain, index_name in server.query(_KEYS_SQL, [list(tables)]):
        if plain:
            keys.setdefault(table, []).append((bool(primary), tuple(names)))
        else:
            others.setdefault(table, []).append(str(index_name))
    schemas = {}
    for table, table_columns in columns.items():
        found = keys.get(table, [])
        primary = next((names for is_primary, names in found if is_primary), ())
        unique = sorted({names for is_primary, names in found if not is_primary})
        key, kind = choose_key(primary, unique, {c.name: c.nullable for c in table_columns})
        schemas[table] = TableSchema(name=table, columns=tuple(table_columns), key=key, key_kind=kind,
                                     unique_keys=tuple(sorted({names for _p, names in found})),
                                     other_constraints=tuple(sorted(others.get(table, []))))
    return schemas


def database_collation(server: Server) -> str:
    return str(server.query("SELECT datcollate FROM pg_database WHERE datname = current_database()")[0][0])


# --- row text, hashes, ranges ------------------------------------------------------------------

def key_list(schema: TableSchema) -> str:
    return ", ".join(quote(name) for name in schema.key)


def column_list(schema: TableSchema) -> str:
    return ", ".join(quote(c.name) for c in schema.written_columns)


# Types whose binary form (typsend) names no database-local OID and means the same on every
# server and version; any other column (enums, domains, composites, extension types, arrays of
# them) is hashed through its text, since record_send writes each column's type OID.
BINARY_TYPES = frozenset((
    "bool", "int2", "int4", "int8", "float4", "float8", "numeric", "money", "text", "varchar", "bpchar", "name",
    "char", "bytea", "date", "time", "timetz", "timestamp", "timestamptz", "interval", "uuid", "json", "jsonb",
    "inet", "cidr", "macaddr", "macaddr8", "bit", "varbit", "oid", "xml", "point", "tsvector",
))
INTEGER_TYPES = frozenset(("int2", "int4", "int8"))
LARGE_ROW_BYTES = 1 << 20


def hashed_column(column: Column) -> str:
    element = column.data_type[1:] if column.data_type.startswith("_") else column.data_type
    return quote(column.name) if element in BINARY_TYPES else f"{quote(column.name)}::text"


def binary_copy(schema: TableSchema) -> bool:
    return all(column.data_type in BINARY_TYPES for column in schema.written_columns)


def row_bytes(schema: TableSchema) -> str:
    # The row's binary form: a column count, then each field length-prefixed (NULL is length -1,
    # '' is length 0), so distinct rows have distinct bytes, and rows put one after another can
    # be told apart again; sending costs less than the row's text (no numeric or timestamp
    # formatting) and depends on no session setting.
    return f"record_send(ROW({', '.join(hashed_column(c) for c in schema.written_columns)}))"


def row_hash(schema: TableSchema) -> str:
    return f"md5({row_bytes(schema)})"


def chunk_buckets(schema: TableSchema, lower: Key | None, upper: Key | None, count: int) -> Buckets:
    column = schema.column(schema.key[0]) if len(schema.key) == 1 else None
    return bucketing.chunk_buckets(lower, upper, count, column is not None and column.data_type in INTEGER_TYPES)


def bucket_of(schema: TableSchema, buckets: Buckets) -> tuple[str, list]:
    """The SQL of a row's bucket number and its parameters."""
    key = quote(schema.key[0])
    if buckets.width:
        # Inside the chunk the key is above start, so the division never meets a negative number.
        return f"(({key} - %s - 1) / %s)", [buckets.start, buckets.width]
    column = schema.column(schema.key[0]) if len(schema.key) == 1 else None
    if column is not None and column.data_type in INTEGER_TYPES:
        return f"({key} %% %s)", [buckets.count]
    return f"(hashtextextended(ROW({key_list(schema)})::text, 0) %% %s)", [buckets.count]


def where_range(schema: TableSchema, lower: Key | None, upper: Key | None) -> tuple[str, list]:
    if schema.keyless:
        return "TRUE", []
    text, parameters = range_predicate(schema.key, quote, lower, upper)
    return ("TRUE" if text == "1=1" else text), parameters


def chunk_checksum_sql(schema: TableSchema, lower: Key | None, upper: Key | None) -> tuple[str, list]:
    """Count and two order-independent 64-bit sums (seeds 0 and 1) over each row's MD5: 128 bits
    per chunk (sum, not bit_xor: bit_xor is 14+ only, and a sum keeps two identical rows of a
    keyless table from cancelling out; sum(bigint) is exact, accumulated in 128 bits)."""
    where, parameters = where_range(schema, lower, upper)
    sql = ("SELECT count(*), coalesce(sum(hashtextextended(h, 0)), 0), coalesce(sum(hashtextextended(h, 1)), 0), 0 "
           f"FROM (SELECT {row_hash(schema)} AS h FROM {quote_table(schema.name)} WHERE {where} OFFSET 0) AS chunk_rows")
    return sql, parameters


def bucket_digests(server: Server, schema: TableSchema, lower: Key | None, upper: Key | None,
                   buckets: Buckets) -> frozenset[tuple[int, int, bytes]]:
    """One ``(bucket, rows, digest)`` entry per non-empty bucket of the chunk, computed in one scan.

    A chunk whose rows changed here and there differs as a whole, but most of its buckets (~8
    rows each) do not; the entries of both sides are compared as sets, so an entry on one side
    only names a bucket to narrow. A bucket's digest is the SHA-256 of its rows' binary forms in
    key order (the aggregate orders them itself: a plan that groups by sorting on the bucket does
    not keep the key order, and verify would then see equal buckets as different): one hash per
    bucket instead of one per row. A row larger than LARGE_ROW_BYTES goes in as its own
    SHA-256 (each part marked by a first byte, so the parts still read back one way only): eight
    rows of hundreds of megabytes would pass the 1 GB a value may hold. The entries come as rows:
    the client reads them for less than the server would spend joining them into one text.
    """
    where, parameters = where_range(schema, lower, upper)
    bucket, bucket_parameters = bucket_of(schema, buckets)
    # The order goes into the aggregate itself: a plan that sorts by bucket (a GroupAggregate,
    # chosen for a table never analyzed) does not keep the rows' order within a bucket, and the
    # two sides' plans may differ.
    keys = ", ".join(f"{quote(name)} AS k{index}" for index, name in enumerate(schema.key))
    key_aliases = ", ".join(f"k{index}" for index in range(len(schema.key)))
    return frozenset((int(b), int(n), bytes(h)) for b, n, h in server.query(
        "SELECT b, count(*) AS n, "
        f"sha256(string_agg(CASE WHEN octet_length(r) > {LARGE_ROW_BYTES} THEN '\\x01'::bytea || sha256(r) "
        f"ELSE '\\x00'::bytea || r END, ''::bytea ORDER BY {key_aliases})) AS h "
        f"FROM (SELECT {bucket} AS b, {keys}, {row_bytes(schema)} AS r FROM {quote_table(schema.name)} "
        f"WHERE {where} ORDER BY {key_list(schema)} OFFSET 0) AS chunk_rows GROUP BY b",
        bucket_parameters + parameters))


def rows_of_buckets(server: Server, schema: TableSchema, lower: Key | None, upper: Key | None, buckets: Buckets,
                    chosen: Sequence[int], selected: str) -> list[tuple]:
    """``selected`` (SQL of the select list) for the chunk's rows in the ``chosen`` buckets."""
    where, parameters = where_range(schema, lower, upper)
    if buckets.width:
        key = quote(schema.key[0])
        # LATERAL: one index range scan per chosen bucket, whatever the planner guesses about a
        # target that was never analyzed (a join could otherwise hash the whole table).
        return server.query(
            f"SELECT bucket_rows.* FROM unnest(%s::bigint[]) AS chosen(n) CROSS JOIN LATERAL "
            f"(SELECT {selected} FROM {quote_table(schema.name)} WHERE {key} > %s + chosen.n * %s "
            f"AND {key} <= %s + (chosen.n + 1) * %s AND {where} OFFSET 0) AS bucket_rows",
            [list(chosen), buckets.start, buckets.width, buckets.start, buckets.width] + parameters)
    bucket, bucket_parameters = bucket_of(schema, buckets)
    # IN (SELECT unnest(...)): a hashed lookup; "= ANY(array parameter)" would compare each row
    # with every chosen bucket in turn.
    return server.query(f"SELECT {selected} FROM {quote_table(schema.name)} "
                        f"WHERE {where} AND {bucket} IN (SELECT unnest(%s::bigint[]))",
                        parameters + bucket_parameters + [list(chosen)])


def bucket_row_hashes(server: Server, schema: TableSchema, lower: Key | None, upper: Key | None,
                      buckets: Buckets, chosen: Sequence[int]) -> dict[Key, str]:
    """``{key: row hash}`` of the chunk's rows in the ``chosen`` buckets (only those are hashed)."""
    width = len(schema.key)
    rows = rows_of_buckets(server, schema, lower, upper, buckets, chosen, f"{key_list(schema)}, {row_hash(schema)}")
    return {tuple(row[:width]): row[width] for row in rows}


def bucket_keys(server: Server, schema: TableSchema, lower: Key | None, upper: Key | None, buckets: Buckets,
                chosen: Sequence[int]) -> list[Key]:
    """The keys of the chunk's rows in the ``chosen`` buckets (keys only: their rows are not read)."""
    return [tuple(row) for row in rows_of_buckets(server, schema, lower, upper, buckets, chosen, key_list(schema))]


# --- row versions (see versions.py) ------------------------------------------------------------

# bit_xor (the key sums) and pg_partition_tree (the relation's identity) are PostgreSQL 14+.
ROW_VERSIONS_MIN_VERSION = 140000

_ROW_VERSIONS_SQL = """
SELECT txid_snapshot_xmin(s.snapshot), txid_snapshot_xmax(s.snapshot),
       (SELECT string_agg(p.relid::oid::text, ',' ORDER BY p.relid::oid) FROM pg_partition_tree(c.oid) AS p)
         || '@' || (SELECT oid FROM pg_database WHERE datname = current_database()),
       (SELECT md5(string_agg(concat_ws(' ', a.attnum, a.attname, format_type(a.atttypid, a.atttypmod),
                                        a.attisdropped, a.atthasmissing, a.attgenerated,
                                        pg_get_expr(d.adbin, d.adrelid),
                                        (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumtypid, e.enumsortorder)
                                           FROM pg_type t JOIN pg_enum e ON e.enumtypid IN (t.oid, t.typelem, t.typbasetype)
                                          WHERE t.oid = a.atttypid),
                                        (SELECT string_agg(ca.attname || ' ' || format_type(ca.atttypid, ca.atttypmod),
                                                           ',' ORDER BY ca.attrelid, ca.attnum)
                                           FROM pg_type t JOIN pg_type ct ON ct.oid IN (t.oid, t.typelem, t.typbasetype)
                                           JOIN pg_attribute ca ON ca.attrelid = ct.typrelid AND ca.attnum > 0
                                          WHERE t.oid = a.atttypid AND ct.typrelid <> 0)), ';' ORDER BY a.attnum))
          FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE a.attrelid = c.oid AND a.attnum > 0)
  FROM pg_class c, (SELECT txid_current_snapshot() AS snapshot) AS s
 WHERE c.oid = %s::regclass
"""


def row_versions(server: Server, schema: TableSchema) -> SideVersions | None:
    """Where the table's row versions stand now on this server (see versions.py), or None when
    the server is older than PostgreSQL 14."""
    if server.version() < ROW_VERSIONS_MIN_VERSION:
        return None
    xmin, next_xid, relation, layout = server.query(_ROW_VERSIONS_SQL, [quote_table(schema.name)])[0]
    return SideVersions(int(xmin), int(next_xid), str(relation), str(layout))


def transaction_id(server: Server) -> int:
    """The 64-bit ID of the transaction open on this connection (assigned if it had none)."""
    return int(server.query("SELECT txid_current()")[0][0])


def key_hash(schema: TableSchema) -> str:
    column = schema.column(schema.key[0]) if len(schema.key) == 1 else None
    if column is not None and column.data_type in INTEGER_TYPES:
        return f"hashint8extended({quote(column.name)}, 0)"
    return f"hashtextextended(ROW({key_list(schema)})::text, 0)"


def bucket_key_sums(server: Server, schema: TableSchema, lower: Key | None, upper: Key | None,
                    buckets: Buckets) -> frozenset[tuple]:
    """One ``(bucket, rows, xor)`` entry per non-empty bucket: its row count and the XOR of its keys'
    64-bit hashes, and for integer keys in key-interval buckets the XOR of the keys as a fourth.
    Keys only, no row is read whole: equal entries mean the same keys. Returned as rows of
    integers, which the client reads for less than the server would spend joining them into one
    text."""
    where, parameters = where_range(schema, lower, upper)
    bucket, bucket_parameters = bucket_of(schema, buckets)
    # Integer keys in key-interval buckets also XOR the keys themselves: a bucket that differs by
    # one key then names it (versions.lone_keys).
    key, key_xor = (f", {quote(schema.key[0])}::bigint AS k", ", bit_xor(k)") if buckets.width else ("", "")
    return frozenset(tuple(row) for row in server.query(
        f"SELECT b, count(*) AS n, bit_xor(h) AS x{key_xor} "
        f"FROM (SELECT {bucket} AS b, {key_hash(schema)} AS h{key} FROM {quote_table(schema.name)} WHERE {where} "
        "OFFSET 0) AS chunk_keys GROUP BY b", bucket_parameters + parameters))


def integer_key_hashes(server: Server, keys: Sequence[int]) -> dict[int, int]:
    """``{key: the 64-bit hash bucket_key_sums XORs for it}`` of integer keys."""
    return {int(key): int(found) for key, found in server.query(
        "SELECT k, hashint8extended(k, 0) FROM unnest(%s::bigint[]) AS k", [list(keys)])}


def new_row_hashes(server: Server, schema: TableSchema, lower: Key | None, upper: Key | None, since_xid: int,
                   own_xids: Sequence[int], limit: int) -> dict[Key, str] | None:
    """``{key: row hash}`` of the chunk's rows written at or after 32-bit transaction ``since_xid``
    by a transaction not in ``own_xids`` (32-bit); None when there are more than ``limit``."""
    where, parameters = where_range(schema, lower, upper)
    own = " AND NOT (xmin = ANY(%s::text[]::xid[]))" if own_xids else ""
    rows = server.query(f"SELECT {key_list(schema)}, {row_hash(schema)} FROM {quote_table(schema.name)} "
                        f"WHERE {where} AND age(xmin) <= age(%s::text::xid){own} LIMIT {int(limit) + 1}",
                        parameters + [str(since_xid)] + ([[str(xid) for xid in own_xids]] if own_xids else []))
    if len(rows) > limit:
        return None
    width = len(schema.key)
    return {tuple(row[:width]): row[width] for row in rows}


def row_hashes_of_keys(server: Server, schema: TableSchema, keys: Sequence[Key]) -> dict[Key, str]:
    """``{key: row hash}`` of those of ``keys`` this server has."""
    found: dict[Key, str] = {}
    width = len(schema.key)
    for select, parameters in keys_selects(f"SELECT {key_list(schema)}, {row_hash(schema)} "
                                           f"FROM {quote_table(schema.name)}", schema, keys):
        found.update((tuple(row[:width]), row[width]) for row in server.query(select, parameters))
    return found


def chunk_upper_bound(server: Server, schema: TableSchema, lower: Key | None, rows: int) -> Key | None:
    """The key ``rows`` rows after ``lower`` on this server, or None when fewer rows remain."""
    where, parameters = where_range(schema, lower, None)
    found = server.query(f"SELECT {key_list(schema)} FROM {quote_table(schema.name)} WHERE {where} "
                         f"ORDER BY {key_list(schema)} LIMIT 1 OFFSET {int(rows) - 1}", parameters)
    return tuple(found[0]) if found else None


# A table estimated at this many rows or more takes its chunk bounds from one sample of its keys
# (see sample_keys) instead of an index walk of every chunk's rows.
SAMPLED_BOUNDS_ROWS = 500_000
# Keys a sample aims at: a chunk of 100,000 rows of a 2,000,000-row table is then bounded within a
# few percent. A sample that comes back with more than SAMPLE_KEYS_MAX (a table far larger than
# its statistics say) is not used.
SAMPLE_KEYS = 50_000
SAMPLE_KEYS_MAX = 4 * SAMPLE_KEYS


@dataclass
class KeySample:
    """Keys above ``start`` from a sample of the table's pages, in the server's key order."""

    start: Key | None
    keys: list[Key]
    rows_per_key: float
    # Where the last bound handed out is in ``keys``, so the next one starts there; bounds
    # are compared by equality only (Python may order keys as the server does not).
    last: int = -1

    def follows(self, lower: Key | None) -> bool:
        """Whether ``lower`` is where the walk of these keys stands (its start, or the last bound)."""
        if self.last == -1:
            return lower == self.start
        return self.last < len(self.keys) and self.keys[self.last] == lower

    def after(self, rows: int) -> Key | None:
        """The sampled key about ``rows`` rows after where the walk stands, or None when fewer
        remain: the chunk is then open-ended."""
        self.last += max(1, round(rows / self.rows_per_key))
        return self.keys[self.last] if self.last < len(self.keys) else None


def sample_keys(server: Server, schema: TableSchema, lower: Key | None) -> KeySample | None:
    """The keys above ``lower`` of a page sample (TABLESAMPLE SYSTEM) sized by the planner's row
    estimate (the table's, or its partitions'), for bounds that cost one read of a few percent of
    the pages instead of an index walk of every row. None for a table estimated under
    SAMPLED_BOUNDS_ROWS (exact bounds are cheap there), without an estimate, or whose sample
    overflows: then bounds are walked exactly.

    Chunk sizes are only as even as the sample; bounds still cut the key space exactly, so no row
    is missed or counted twice whatever the sample holds."""
    if schema.keyless:
        return None
    # pg_partition_tree is 12+; before it, a partitioned table has no estimate and is walked.
    partitions = (" OR c.oid IN (SELECT relid FROM pg_partition_tree(%s::regclass) WHERE isleaf)"
                  if server.version() >= 120000 else "")
    estimate = server.query(f"SELECT coalesce(sum(greatest(c.reltuples, 0)), 0) FROM pg_class c "
                            f"WHERE c.oid = %s::regclass{partitions}",
                            [quote_table(schema.name)] * (2 if partitions else 1))[0][0]
    if float(estimate) < SAMPLED_BOUNDS_ROWS:
        return None
    percent = min(100.0, 100.0 * SAMPLE_KEYS / float(estimate))
    where, parameters = where_range(schema, lower, None)
    rows = server.query(f"SELECT {key_list(schema)} FROM {quote_table(schema.name)} TABLESAMPLE SYSTEM (%s) "
                        f"WHERE {where} ORDER BY {key_list(schema)} LIMIT {SAMPLE_KEYS_MAX + 1}",
                        [percent] + parameters)
    if len(rows) > SAMPLE_KEYS_MAX:
        return None
    return KeySample(lower, [tuple(row) for row in rows], 100.0 / percent)


def row_hashes(server: Server, schema: TableSchema, lower: Key | None, upper: Key | None) -> dict[Key, str]:
    where, parameters = where_range(schema, lower, upper)
    rows = server.query(f"SELECT {key_list(schema)}, {row_hash(schema)} FROM {quote_table(schema.name)} "
                        f"WHERE {where}", parameters)
    width = len(schema.key)
    return {tuple(row[:width]): row[width] for row in rows}


def is_empty(server: Server, schema: TableSchema) -> bool:
    return not server.query(f"SELECT 1 FROM {quote_table(schema.name)} LIMIT 1")


def count_rows(server: Server, schema: TableSchema) -> int:
    return int(server.query(f"SELECT count(*) FROM {quote_table(schema.name)}")[0][0])


# --- writes (target) ------------------------------------------------------------------------

def _source_selects(schema: TableSchema, lower: Key | None, upper: Key | None,
                    keys: Sequence[Key] | None, columns: str | None = None) -> Iterable[tuple[str, list]]:
    head = f"SELECT {columns or column_list(schema)} FROM {quote_table(schema.name)}"
    if keys is None:
        where, parameters = where_range(schema, lower, upper)
        yield f"{head} WHERE {where}", parameters
        return
    yield from keys_selects(head, schema, keys)


# Key column types whose Python values (as psycopg returns them) go back as an array parameter
# cast to the column's type: one statement for thousands of keys instead of one per KEY_BATCH.
ARRAY_KEY_TYPES = frozenset(("int2", "int4", "int8", "text", "varchar", "bpchar", "uuid", "date", "timestamp",
                             "timestamptz", "numeric", "bool", "bytea"))


def keys_selects(head: str, schema: TableSchema, keys: Sequence[Key]) -> Iterator[tuple[str, list]]:
    """``head WHERE`` exactly ``keys``: array parameters when every key column allows it, else
    lists of KEY_BATCH literals."""
    columns = [column for column in (schema.column(name) for name in schema.key) if column is not None]
    if len(columns) == len(schema.key) and all(column.data_type in ARRAY_KEY_TYPES for column in columns):
        # format_type of the column is in its column_type (with modifiers: char(4), numeric(10,2)).
        casts = [f"%s::{column.column_type.split(' collate ')[0]}[]" for column in columns]
        for start in range(0, len(keys), SLOT_KEY_BATCH):
            batch = keys[start:start + SLOT_KEY_BATCH]
            values = [[key[index] for key in batch] for index in range(len(columns))]
            if len(columns) == 1:
                yield f"{head} WHERE {quote(columns[0].name)} = ANY({casts[0]})", values
            else:
                names = key_list(schema)
                yield (f"{head} WHERE ({names}) IN (SELECT * FROM unnest({', '.join(casts)}) AS chosen_keys({names}))",
                       values)
        return
    for start in range(0, len(keys), KEY_BATCH):
        yield keys_predicate_sql(head, schema, keys[start:start + KEY_BATCH])


def keys_predicate_sql(head: str, schema: TableSchema, keys: Sequence[Key]) -> tuple[str, list]:
    where, parameters = keys_predicate(schema.key, quote, keys)
    return f"{head} WHERE {where}", parameters


def copy_blocks(out: Iterable) -> Iterator[bytes]:
    """A COPY TO's output a megabyte at a time: the source sends one message per row, and the
    target's COPY FROM then takes a call per megabyte instead of one per row."""
    pending: list = []
    size = 0
    for data in out:
        pending.append(data)
        size += len(data)
        if size >= COPY_BUFFER_BYTES:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)


def copy_rows(source: Server, target: Server, schema: TableSchema, lower: Key | None = None,
              upper: Key | None = None, keys: Sequence[Key] | None = None) -> int:
    """Stream the source's rows (a key range, or exact keys) into the target with COPY; rows copied."""
    if keys is not None and not keys:
        return 0
    target.writes += 1
    copied = 0
    selects = list(_source_selects(schema, lower, upper, keys))
    # Binary skips formatting on the source and parsing on the target (a third of a load's time),
    # but carries type OIDs inside arrays and records, and each COPY's output has its own header,
    # so only one COPY of built-in types goes binary.
    form = " (FORMAT binary)" if len(selects) == 1 and binary_copy(schema) else ""
    try:
        into_table = f"COPY {quote_table(schema.name)} ({column_list(schema)}) FROM STDIN{form}"
        with target.connection.cursor() as writer, source.connection.cursor() as reader:
            # The target's writes go out from a thread of their own while the source's rows come in.
            with writer.copy(into_table, writer=QueuedLibpqWriter(writer)) as into:
                for select, parameters in selects:
                    with reader.copy(f"COPY ({select}) TO STDOUT{form}", parameters or None) as out:
                        for block in copy_blocks(out):
                            into.write(block)
            copied = int(writer.rowcount or 0)
    except psycopg.Error as exc:
        raise DeltaError(f"copying rows of {schema.name} failed: {str(exc).strip()}", side="target",
                         table=schema.name) from exc
    return copied


def delete_keys(server: Server, schema: TableSchema, keys: Sequence[Key]) -> int:
    deleted = 0
    for statement, parameters in keys_selects(f"DELETE FROM {quote_table(schema.name)}", schema, keys):
        deleted += server.write(statement, parameters)
    return deleted


def delete_range(server: Server, schema: TableSchema, lower: Key | None, upper: Key | None) -> int:
    where, parameters = where_range(schema, lower, upper)
    return server.write(f"DELETE FROM {quote_table(schema.name)} WHERE {where}", parameters)


def is_unique_violation(exc: BaseException) -> bool:
    """A unique index's violation, or an exclusion constraint's (the same kind of collision)."""
    return isinstance(exc.__cause__, (psycopg.errors.UniqueViolation, psycopg.errors.ExclusionViolation))


@dataclass(frozen=True)
class Uniqueness:
    """A unique index on an expression or with a predicate, or an exclusion constraint: two rows
    satisfying ``predicate`` whose ``expressions`` all compare true by ``operators`` (``=`` for a
    unique index) cannot both exist."""
    name: str
    expressions: tuple[str, ...]
    operators: tuple[str, ...]
    predicate: str | None


# Each key column of such an index, as the index defines it (a column name or an expression).
_UNIQUENESS_SQL = """
SELECT ci.relname, pg_get_indexdef(i.indexrelid, k.position, true),
       (SELECT 'OPERATOR(' || quote_ident(n.nspname) || '.' || o.oprname || ')'
          FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace WHERE o.oid = x.conexclop[k.position]),
       pg_get_expr(i.indpred, i.indrelid, true)
  FROM pg_index i
  JOIN pg_class ci ON ci.oid = i.indexrelid
  CROSS JOIN LATERAL generate_series(1, i.indnkeyatts) AS k(position)
  LEFT JOIN pg_constraint x ON x.conindid = i.indexrelid AND x.contype = 'x'
 WHERE i.indrelid = %s::regclass
   AND ((i.indisunique AND (i.indpred IS NOT NULL OR i.indexprs IS NOT NULL)) OR x.oid IS NOT NULL)
 ORDER BY 1, k.position
"""


def uniqueness_beyond_keys(server: Server, table: str) -> list[Uniqueness]:
    """The table's unique indexes on expressions or with predicates, and its exclusion constraints."""
    parts: dict[str, list[tuple[str, str, str | None]]] = {}
    for name, expression, operator, predicate in server.query(_UNIQUENESS_SQL, [quote_table(table)]):
        parts.setdefault(str(name), []).append((str(expression), str(operator or "="), predicate))
    return [Uniqueness(name, tuple(f"({expression})" for expression, _o, _p in found),
                       tuple(operator for _e, operator, _p in found), found[0][2])
            for name, found in parts.items()]


def free_unique_values(source: Server, target: Server, schema: TableSchema, lower: Key | None = None,
                       upper: Key | None = None, keys: Sequence[Key] | None = None) -> int:
    """Delete the target's rows holding a value of a unique key other than the chunking key that
    the source's rows of the range (or ``keys``) carry; rows deleted. Such a row is not one about to
    be copied (those are deleted already): its value has moved on the source, so it differs there,
    and its own chunk brings it back (see run.copy_freeing_unique_values)."""
    freed = 0
    types = key_types(target, [schema.name]).get(schema.name, {})
    for unique in schema.other_unique_keys:
        text = ", ".join(f"{quote(name)}::text" for name in unique)
        held = [row for select, parameters in _source_selects(schema, lower, upper, keys, text)
                for row in source.query(select, parameters) if None not in row]
        for start in range(0, len(held), SLOT_KEY_BATCH):
            where, parameters = values_in(unique, types, held[start:start + SLOT_KEY_BATCH])
            freed += target.write(f"DELETE FROM {quote_table(schema.name)} WHERE {where}", parameters)
    if schema.other_constraints:
        for uniqueness in uniqueness_beyond_keys(target, schema.name):
            freed += free_colliding_rows(source, target, schema, uniqueness, lower, upper, keys)
    return freed


def free_colliding_rows(source: Server, target: Server, schema: TableSchema, uniqueness: Uniqueness,
                        lower: Key | None, upper: Key | None, keys: Sequence[Key] | None) -> int:
    """Delete the target's rows that collide, in ``uniqueness``, with the source's rows of the range
    (or ``keys``). The source evaluates the index's own expressions on its rows (with their types,
    as the target must compare them) and its predicate; the target deletes the rows for which the
    predicate holds and every expression compares true with one incoming row's."""
    selected = ", ".join(f"{expression}::text, pg_typeof({expression})::text" for expression in uniqueness.expressions)
    holds = f"({uniqueness.predicate}) IS TRUE" if uniqueness.predicate else "true"
    width = len(uniqueness.expressions)
    incoming = [row for select, parameters in _source_selects(schema, lower, upper, keys, f"{selected}, {holds}")
                for row in source.query(select, parameters)
                if row[-1] and None not in row[:-1]]
    if not incoming:
        return 0
    types = [incoming[0][2 * index + 1] for index in range(width)]
    aliases = [f"cutover_incoming_{index}" for index in range(width)]
    arrays = ", ".join(f"%s::text[]::{type_name}[]" for type_name in types)
    collides = " AND ".join(f"{uniqueness.expressions[index]} {uniqueness.operators[index]} {aliases[index]}"
                            for index in range(width))
    where = f"({uniqueness.predicate}) AND " if uniqueness.predicate else ""
    freed = 0
    for start in range(0, len(incoming), SLOT_KEY_BATCH):
        part = incoming[start:start + SLOT_KEY_BATCH]
        values = [text_array([row[2 * index] for row in part]) for index in range(width)]
        freed += target.write(
            f"DELETE FROM {quote_table(schema.name)} WHERE {where}EXISTS (SELECT 1 FROM unnest({arrays}) AS "
            f"cutover_incoming({', '.join(aliases)}) WHERE {collides})", values)
    return freed


# --- secondary indexes of a table being loaded --------------------------------------------------

def deferrable_indexes(server: Server, schema: TableSchema) -> list[tuple[str, str]]:
    """``(name, CREATE INDEX ...)`` of a plain table's indexes that back no key or constraint:
    a load builds those once at the end, as pg_restore does, instead of row by row."""
    return [(str(name), str(definition)) for name, definition in server.query(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(ci.relname), pg_get_indexdef(i.indexrelid) "
        "FROM pg_index i JOIN pg_class ci ON ci.oid = i.indexrelid JOIN pg_namespace n ON n.oid = ci.relnamespace "
        "JOIN pg_class t ON t.oid = i.indrelid "
        "WHERE i.indrelid = %s::regclass AND t.relkind = 'r' AND NOT i.indisprimary AND NOT i.indisunique "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) ORDER BY 1",
        [quote_table(schema.name)])]


def drop_indexes(server: Server, indexes: Sequence[Sequence[str]]) -> None:
    for name, _definition in indexes:
        server.write(f"DROP INDEX IF EXISTS {name}")


def create_indexes(server: Server, indexes: Sequence[Sequence[str]]) -> None:
    """Create the indexes that do not exist (a rerun after a crash finds some already built)."""
    server.execute("SET maintenance_work_mem = '256MB'")
    for name, definition in indexes:
        if server.query("SELECT to_regclass(%s) IS NULL", [name])[0][0]:
            server.write(definition)


# --- sequences -------------------------------------------------------------------------------

_SEQUENCES_SQL = """
SELECT DISTINCT tn.nspname || '.' || t.relname, a.attname, sn.nspname || '.' || s.relname
  FROM pg_depend d
  JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
  JOIN pg_namespace sn ON sn.oid = s.relnamespace
  JOIN pg_class t ON t.oid = d.refobjid
  JOIN pg_namespace tn ON tn.oid = t.relnamespace
  JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
 WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
   AND tn.nspname || '.' || t.relname = ANY(%s)
UNION
SELECT DISTINCT tn.nspname || '.' || t.relname, a.attname, sn.nspname || '.' || s.relname
  FROM pg_attrdef ad
  JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid AND d.refclassid = 'pg_class'::regclass
  JOIN pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'
  JOIN pg_namespace sn ON sn.oid = s.relnamespace
  JOIN pg_class t ON t.oid = ad.adrelid
  JOIN pg_namespace tn ON tn.oid = t.relnamespace
  JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ad.adnum
 WHERE tn.nspname || '.' || t.relname = ANY(%s)
"""


@dataclass(frozen=True)
class SequenceState:
    name: str
    last_value: int
    is_called: bool
    increment: int
    max_value: int

    @property
    def next_value(self) -> int:
        """What ``nextval`` would return now."""
        return self.last_value + self.increment if self.is_called else self.last_value


def column_sequences(server: Server, tables: Sequence[str]) -> dict[tuple[str, str], str]:
    """``{(table, column): sequence}`` for serial, identity and ``DEFAULT nextval(...)`` columns."""
    if not tables:
        return {}
    found: dict[tuple[str, str], str] = {}
    for table, column, sequence in server.query(_SEQUENCES_SQL, [list(tables), list(tables)]):
        found.setdefault((table, column), sequence)
    return found


# Sequences (or columns) read per statement by sequence_states / max_values: one round trip for a
# schema's worth, where two or three per sequence added up over a link to a data centre (300
# sequences at 20 ms were half a minute of the cutover window).
SEQUENCES_PER_STATEMENT = 200


def sequence_states(server: Server, sequences: Sequence[str]) -> dict[str, SequenceState]:
    """``{sequence: state}``, one UNION ALL statement per SEQUENCES_PER_STATEMENT sequences."""
    names = sorted(set(sequences))
    found: dict[str, SequenceState] = {}
    for start in range(0, len(names), SEQUENCES_PER_STATEMENT):
        part = names[start:start + SEQUENCES_PER_STATEMENT]
        # The sequence's own row holds last_value and is_called (pg_sequences shows no value for
        # a sequence set with is_called = false); pg_sequence holds its increment and maximum.
        branches = [f"SELECT {index}, s.last_value, s.is_called, q.seqincrement, q.seqmax "
                    f"FROM {quote_table(name)} AS s, pg_catalog.pg_sequence AS q WHERE q.seqrelid = %s::regclass"
                    for index, name in enumerate(part)]
        for index, last_value, is_called, increment, maximum in server.query(
                " UNION ALL ".join(branches), [quote_table(name) for name in part]):
            name = part[int(index)]
            found[name] = SequenceState(name, int(last_value), bool(is_called), int(increment), int(maximum))
    return found


def max_values(server: Server, columns: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int | None]:
    """``{(table, column): max}`` (None for an empty table), one statement per
    SEQUENCES_PER_STATEMENT columns; each max is an index's end where the column is indexed."""
    pairs = sorted(set(columns))
    found: dict[tuple[str, str], int | None] = {}
    for start in range(0, len(pairs), SEQUENCES_PER_STATEMENT):
        part = pairs[start:start + SEQUENCES_PER_STATEMENT]
        # As text: the columns' integer types differ, and a numeric one may hold any size.
        branches = [f"SELECT {index}, (SELECT max({quote(column)}) FROM {quote_table(table)})::text"
                    for index, (table, column) in enumerate(part)]
        for index, value in server.query(" UNION ALL ".join(branches)):
            found[part[int(index)]] = None if value is None else int(Decimal(value))
    return found


def set_sequences_next(server: Server, next_values: Mapping[str, int]) -> None:
    """Each sequence's next ``nextval()`` set to its value, in one statement. ``is_called = false``:
    the next nextval() returns exactly that value (setval(s, v) with the default is_called = true
    would skip it and return v + increment)."""
    if not next_values:
        return
    names = sorted(next_values)
    server.write("SELECT count(setval(sequence_name::regclass, next_value, false)) "
                 "FROM unnest(%s::text[], %s::bigint[]) AS wanted(sequence_name, next_value)",
                 [[quote_table(name) for name in names], [int(next_values[name]) for name in names]])


# --- freezing the source ----------------------------------------------------------------------

def database_read_only(server: Server) -> bool:
    rows = server.query(
        "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
        "WHERE d.datname = current_database() AND s.setrole = 0")
    settings = rows[0][0] if rows and rows[0][0] else []
    return any(entry.lower() in ("default_transaction_read_only=on", "default_transaction_read_only=true")
               for entry in settings)


def freeze_database(server: Server) -> dict[str, Any]:
    """Default new sessions to read-only, then end the sessions holding a write transaction."""
    try:
        server.execute(f"ALTER DATABASE {quote(server.database)} SET default_transaction_read_only = on")
    except DeltaError as exc:
        raise InvalidOptions(f"freeze_source=read_only: the source refused ALTER DATABASE ... SET "
                             f"default_transaction_read_only ({exc}); connect as the database owner or a superuser, "
                             "or freeze the application another way and use freeze_source=none",
                             side="source", option="freeze_source") from exc
    frozen_at = time.time()
    terminated = [int(row[0]) for row in server.query(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND backend_type = 'client backend' AND backend_xid IS NOT NULL AND pg_terminate_backend(pid)")]
    writable = [int(row[0]) for row in server.query(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND backend_type = 'client backend' AND backend_start < now() AND application_name <> %s",
        ["cutover.postgresql_delta_apply"])]
    return {"frozen_at": frozen_at, "terminated_pids": terminated, "sessions_opened_before_freeze": writable}


# --- state table -----------------------------------------------------------------------------

def state_table_exists(server: Server, schema: str, name: str) -> bool:
    return bool(server.query("SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                             "WHERE n.nspname = %s AND c.relname = %s", [schema, name]))


def create_state_table(server: Server, schema: str, name: str) -> None:
    table = f"{quote(schema)}.{quote(name)}"
    server.write(f"CREATE TABLE IF NOT EXISTS {table} (table_name text NOT NULL, item text NOT NULL, "
                 "value text NOT NULL, updated_at timestamptz NOT NULL, PRIMARY KEY (table_name, item))")
    server.write(f"COMMENT ON TABLE {table} IS "
                 "'cutover.migration.postgresql_delta_apply progress; safe to drop after the cutover'")


def read_state(server: Server, schema: str, name: str) -> dict[tuple[str, str], str]:
    if not state_table_exists(server, schema, name):
        return {}
    return {(t, i): v for t, i, v in server.query(f"SELECT table_name, item, value FROM {quote(schema)}.{quote(name)}")}


def write_state(server: Server, schema: str, name: str, table: str, item: str, value: str) -> None:
    server.write(f"INSERT INTO {quote(schema)}.{quote(name)} (table_name, item, value, updated_at) "
                 "VALUES (%s, %s, %s, now()) ON CONFLICT (table_name, item) DO UPDATE SET value = EXCLUDED.value, "
                 "updated_at = EXCLUDED.updated_at", [table, item, value])


def delete_state_entry(server: Server, schema: str, name: str, table: str, item: str) -> None:
    server.write(f"DELETE FROM {quote(schema)}.{quote(name)} WHERE table_name = %s AND item = %s", [table, item])


def delete_state(server: Server, schema: str, name: str, items: Sequence[str]) -> int:
    if not state_table_exists(server, schema, name):
        return 0
    return server.write(f"DELETE FROM {quote(schema)}.{quote(name)} WHERE item = ANY(%s)", [list(items)])


# --- logical decoding (source) ----------------------------------------------------------------

@dataclass(frozen=True)
class SlotState:
    name: str
    plugin: str
    database: str
    active: bool
    confirmed_flush_lsn: str | None
    retained_wal_bytes: int | None


def slot_state(server: Server, slot: str) -> SlotState | None:
    rows = server.query(
        "SELECT slot_name, plugin, database, active, confirmed_flush_lsn::text, "
        "pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint FROM pg_replication_slots WHERE slot_name = %s",
        [slot])
    if not rows:
        return None
    name, plugin, database, active, confirmed, retained = rows[0]
    return SlotState(name, plugin or "", database or "", bool(active), confirmed,
                     None if retained is None else int(retained))


FLUSH_WAL_SQL = ("BEGIN; SET LOCAL synchronous_commit = on; "
                 "SELECT pg_logical_emit_message(true, 'cutover.migration', 'flush'); COMMIT")


def current_lsn(server: Server, wait_s: float = 10.0) -> str:
    """Where the source's WAL ends now, once it is flushed: logical decoding reads flushed WAL
    only, and a commit made with synchronous_commit=off reaches disk up to 3 x wal_writer_delay
    later (0.6 s by default). Should the wait run out, the flushed end is returned instead: the
    slot is confirmed up to this end, and confirming past WAL it could not read would skip it."""
    end, flushed = server.query("SELECT pg_current_wal_insert_lsn()::text, pg_current_wal_flush_lsn()::text")[0]
    end = str(end)
    if lsn_number(str(flushed)) >= lsn_number(end):
        return end
    # Not flushed yet: commit a transaction that wrote WAL with synchronous_commit on; its commit
    # flushes the WAL up to its own record, past the end read above. One round trip instead of
    # waiting for the WAL writer (up to wal_writer_delay); polling remains the fallback. The WAL it
    # writes is a logical message (any role may emit one, in a read-only transaction too; pgoutput
    # passes it on only to a subscriber that asks for messages): a transaction that only took an
    # ID (txid_current) commits without a flush, since it wrote nothing before its commit record.
    try:
        server.execute(FLUSH_WAL_SQL)
    except DeltaError:
        # Failed inside its BEGIN: end that transaction, or every later statement would fail too.
        with contextlib.suppress(DeltaError):
            server.execute("ROLLBACK")
    deadline = time.monotonic() + wait_s
    while True:
        flushed = str(server.query("SELECT pg_current_wal_flush_lsn()::text")[0][0])
        if lsn_number(flushed) >= lsn_number(end) or time.monotonic() >= deadline:
            return end if lsn_number(flushed) >= lsn_number(end) else flushed
        time.sleep(0.05)


def lsn_number(lsn: str | None) -> int:
    if not lsn:
        return 0
    high, _slash, low = lsn.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def lsn_text(number: int) -> str:
    return f"{number >> 32:X}/{number & 0xFFFFFFFF:X}"


def publication_tables(server: Server, publication: str) -> list[str] | None:
    if not server.query("SELECT 1 FROM pg_publication WHERE pubname = %s", [publication]):
        return None
    rows = server.query("SELECT pr.prrelid::regclass::text, n.nspname || '.' || c.relname FROM pg_publication_rel pr "
                        "JOIN pg_publication p ON p.oid = pr.prpubid JOIN pg_class c ON c.oid = pr.prrelid "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE p.pubname = %s", [publication])
    return sorted(row[1] for row in rows)


def create_publication(server: Server, publication: str, tables: Sequence[str]) -> None:
    names = ", ".join(quote_table(name) for name in tables)
    options = " WITH (publish_via_partition_root = true)" if server.version() >= 130000 else ""
    server.write(f"CREATE PUBLICATION {quote(publication)} FOR TABLE {names}{options}")


def alter_publication(server: Server, publication: str, tables: Sequence[str]) -> None:
    names = ", ".join(quote_table(name) for name in tables)
    server.write(f"ALTER PUBLICATION {quote(publication)} SET TABLE {names}")


def create_slot(server: Server, slot: str) -> str:
    """Create the logical slot; returns its consistent point (changes after it are in the slot)."""
    return str(server.query("SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'pgoutput')",
                            [slot])[0][0])


def peek_changes(server: Server, slot: str, publication: str, upto_lsn: str, changes: int) -> list[tuple[str, bytes]]:
    """The slot's messages up to ``upto_lsn`` as ``("", data)`` rows, without consuming them.

    Only ``data`` is asked for, in binary: a bytea in text form would be hex, twice the bytes,
    encoded by the server and decoded here (the messages carry their own commit LSNs)."""
    try:
        with server.connection.cursor(binary=True) as cursor:
            cursor.execute("SELECT data FROM pg_logical_slot_peek_binary_changes(%s, %s::pg_lsn, %s, "
                           "'proto_version', '1', 'publication_names', %s)", [slot, upto_lsn, int(changes), publication])
            return [("", bytes(data)) for (data,) in cursor.fetchall()]
    except psycopg.Error as exc:
        raise DeltaError(f"{server.side} server rejected a statement: {str(exc).strip()}", side=server.side,
                         statement="pg_logical_slot_peek_binary_changes") from exc


# Messages per chunk while a peek streams: only the chunk, never the whole batch, is held in memory
# (the decoder keeps keys only), however wide the rows are.
STREAM_ROWS = 2000


def stream_changes(server: Server, slot: str, publication: str, upto_lsn: str,
                   changes: int) -> Iterator[tuple[str, bytes]]:
    """:func:`peek_changes` as a stream of chunks of rows (libpq 17+; older ones fetch at once).

    The stream must be read to its end before the connection runs another statement."""
    if psycopg.pq.version() < 170000:
        yield from peek_changes(server, slot, publication, upto_lsn, changes)
        return
    try:
        with server.connection.cursor(binary=True) as cursor:
            for (data,) in cursor.stream("SELECT data FROM pg_logical_slot_peek_binary_changes(%s, %s::pg_lsn, %s, "
                                         "'proto_version', '1', 'publication_names', %s)",
                                         [slot, upto_lsn, int(changes), publication], size=STREAM_ROWS):
                yield "", data
    except psycopg.Error as exc:
        raise DeltaError(f"{server.side} server rejected a statement: {str(exc).strip()}", side=server.side,
                         statement="pg_logical_slot_peek_binary_changes") from exc


def advance_slot(server: Server, slot: str, lsn: str) -> None:
    server.execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", [slot, lsn])


def drop_slot(server: Server, slot: str) -> bool:
    if slot_state(server, slot) is None:
        return False
    server.execute("SELECT pg_drop_replication_slot(%s)", [slot])
    return True


def drop_publication(server: Server, publication: str) -> bool:
    if not server.query("SELECT 1 FROM pg_publication WHERE pubname = %s", [publication]):
        return False
    server.execute(f"DROP PUBLICATION {quote(publication)}")
    return True


# --- applying slot changes by key ---------------------------------------------------------------

# Keys per statement when applying slot changes: one array parameter per key column, so a
# statement costs one round trip and one index scan whatever the count, within bounded memory.
SLOT_KEY_BATCH = 50_000


def key_types(server: Server, tables: Sequence[str]) -> dict[str, dict[str, str]]:
    """``{table: {column: SQL type}}`` with modifiers (``character(4)``, not ``character``, which
    would cut values to one character) and schema-qualified when not on the search path."""
    if not tables:
        return {}
    found: dict[str, dict[str, str]] = {}
    for table, column, type_name in server.query(
            "SELECT n.nspname || '.' || c.relname, a.attname, format_type(a.atttypid, a.atttypmod) "
            "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname || '.' || c.relname = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped", [list(tables)]):
        found.setdefault(table, {})[column] = type_name
    return found


def keys_in(schema: TableSchema, types: dict[str, str], keys: Sequence[Key]) -> tuple[str, list]:
    """WHERE text selecting exactly ``keys`` given as text (the slot's values), with one array
    parameter per key column cast to the column's type: an index scan, and no statement text
    that grows with the number of keys."""
    return values_in(schema.key, types, keys)


def text_array(values: list[str | None]) -> str | list[str | None]:
    """``values`` as one array literal for a ``%s::text[]`` parameter, every element quoted: two
    joins, where psycopg adapts a list element by element (~0.4 ms of CPU per thousand keys, paid
    twice per slice of slot keys). A list holding NULLs goes to psycopg as it is."""
    if None in values:
        return values
    if not values:
        return "{}"
    texts = cast("list[str]", values)
    joined = "".join(texts)
    if '"' in joined or "\\" in joined:
        texts = [text.replace("\\", "\\\\").replace('"', '\\"') for text in texts]
    return '{"' + '","'.join(texts) + '"}'


def values_in(names: Sequence[str], types: dict[str, str], rows: Sequence[Sequence]) -> tuple[str, list]:
    """WHERE text selecting the rows whose columns ``names`` hold one of ``rows`` (values as text),
    one array parameter per column cast to its type."""
    arrays = [f"%s::text[]::{types[name]}[]" for name in names]
    values = [text_array([None if row[index] is None else str(row[index]) for row in rows])
              for index in range(len(names))]
    if len(names) == 1:
        return f"{quote(names[0])} = ANY({arrays[0]})", values
    columns = ", ".join(quote(name) for name in names)
    return f"({columns}) IN (SELECT * FROM unnest({', '.join(arrays)}) AS slot_keys({columns}))", values


def delete_slot_keys(server: Server, schema: TableSchema, types: dict[str, str], keys: Sequence[Key]) -> int:
    deleted = 0
    for start in range(0, len(keys), SLOT_KEY_BATCH):
        where, parameters = keys_in(schema, types, keys[start:start + SLOT_KEY_BATCH])
        deleted += server.write(f"DELETE FROM {quote_table(schema.name)} WHERE {where}", parameters)
    return deleted


def read_slot_rows(server: Server, schema: TableSchema, types: dict[str, str], keys: Sequence[Key]) -> list[bytes]:
    """The source's rows of ``keys`` now, as COPY data (rows since deleted are simply absent)."""
    data: list[bytes] = []
    try:
        with server.connection.cursor() as reader:
            for start in range(0, len(keys), SLOT_KEY_BATCH):
                where, parameters = keys_in(schema, types, keys[start:start + SLOT_KEY_BATCH])
                with reader.copy(f"COPY (SELECT {column_list(schema)} FROM {quote_table(schema.name)} WHERE {where}) "
                                 "TO STDOUT", parameters) as out:
                    data.extend(copy_blocks(out))
    except psycopg.Error as exc:
        raise DeltaError(f"reading rows of {schema.name} from the source failed: {str(exc).strip()}",
                         side="source", table=schema.name) from exc
    return data


def write_copy_data(server: Server, schema: TableSchema, data: Sequence[bytes]) -> int:
    """COPY data read by :func:`read_slot_rows` into the table; rows written."""
    if not data:
        return 0
    server.writes += 1
    try:
        with server.connection.cursor() as writer:
            with writer.copy(f"COPY {quote_table(schema.name)} ({column_list(schema)}) FROM STDIN") as into:
                for block in data:
                    into.write(block)
            return int(writer.rowcount or 0)
    except psycopg.Error as exc:
        raise DeltaError(f"copying rows of {schema.name} failed: {str(exc).strip()}", side="target",
                         table=schema.name) from exc


def connect_both(source: SideOptions, target: SideOptions, pool: ThreadPoolExecutor) -> tuple[Server, Server]:
    """A source (autocommit reads) and a target write connection, opened at the same moment: each
    is a TCP (and TLS) handshake and a SCRAM exchange, a few milliseconds of waiting. The source's
    failure is the one reported when both fail, as when they were opened one after the other."""
    opening = pool.submit(Server, target, autocommit=False, role="write")
    try:
        first = Server(source)
    except BaseException:
        with contextlib.suppress(Exception):
            opening.result().close()
        raise
    try:
        return first, opening.result()
    except BaseException:
        first.close()
        raise


def both(first: Server, second: Server, on_first: Any, on_second: Any, pool: ThreadPoolExecutor) -> tuple:
    """The same question asked of two servers at the same moment."""
    answer = pool.submit(on_second, second)
    return on_first(first), answer.result()
