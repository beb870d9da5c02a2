# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading the source's ROW binary log from a recorded position to "now", in transaction batches.

Only keys are taken from the events. Row images are re-read from the source by key when a
batch is applied: the library's decoding of ENUM/SET/BIT/TIMESTAMP and of strings without full
row metadata is not byte-exact, while the source's own text is. Applying "the source's row for
this key now" is idempotent, so a batch replayed after a crash converges to the same rows; the
position is stored in the same target transaction as the rows, so it is not replayed at all.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import BinlogNotReady
from .options import SideOptions
from .schema import TableSchema
from .state import BinlogPosition

try:
    import pymysql.connections
    import pymysql.protocol
    from pymysqlreplication import BinLogStreamReader
    from pymysqlreplication.event import (
        MariadbGtidEvent,
        QueryEvent,
        RotateEvent,
        XidEvent,
    )
    from pymysqlreplication.row_event import (
        DeleteRowsEvent,
        UpdateRowsEvent,
        WriteRowsEvent,
    )

    HAS_REPLICATION = True
    REPLICATION_IMPORT_ERROR: Exception | None = None
except ImportError as exc:  # pragma: no cover - reported by the module as missing_required_lib
    HAS_REPLICATION = False
    REPLICATION_IMPORT_ERROR = exc

# The library warns on stderr, through logging's last resort, when binlog_row_metadata is not FULL;
# keys are cut by column position and rows re-read from the source, which needs no such metadata.
logging.getLogger("pymysqlreplication").addHandler(logging.NullHandler())

# Event type codes, read from a packet's header before the library parses it.
ROWS_EVENT_TYPES = frozenset((23, 24, 25, 30, 31, 32, 39))   # WRITE/UPDATE/DELETE v1 and v2, PARTIAL_UPDATE
COMPRESSED_ROWS_EVENT_TYPES = frozenset(range(166, 172))     # MariaDB log_bin_compress
TRANSACTION_PAYLOAD_EVENT = 40                                # MySQL binlog_transaction_compression

# Keys per target transaction: big enough to amortise the commit, small enough that a crash
# loses little work and the re-read of source rows stays a handful of IN (...) queries.
BATCH_KEYS = 5000


@dataclass
class TableChanges:
    """Keys touched in one batch, in event order, and what the events were."""

    keys: dict = field(default_factory=dict)   # key -> None (an ordered set)
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    whole_table: bool = False

    def touch(self, key: tuple) -> None:
        self.keys[key] = None


@dataclass
class ChangeBatch:
    tables: dict[str, TableChanges]
    end: BinlogPosition

    @property
    def rows(self) -> int:
        return sum(len(c.keys) + (1 if c.whole_table else 0) for c in self.tables.values())


def check_source_binlog(settings: dict, option: str = "strategy") -> None:
    """Fail, naming the setting and the fix, when the source cannot serve row events."""
    problems = []
    if str(settings.get("log_bin") or "").upper() not in ("1", "ON"):
        problems.append("log_bin is OFF (start the server with log_bin, or on RDS/Aurora set backup retention > 0)")
    if str(settings.get("binlog_format") or "").upper() != "ROW":
        problems.append(f"binlog_format is {settings.get('binlog_format')} (set binlog_format=ROW)")
    if str(settings.get("binlog_row_image") or "").upper() != "FULL":
        problems.append(f"binlog_row_image is {settings.get('binlog_row_image')} (set binlog_row_image=FULL)")
    # Compressed events are not understood by mysql-replication, which would pass over them in silence.
    for name in ("log_bin_compress", "binlog_transaction_compression"):
        if str(settings.get(name) or "").upper() in ("1", "ON"):
            problems.append(f"{name} is ON (set {name}=OFF: compressed events cannot be read)")
    if problems:
        raise BinlogNotReady("strategy=binlog needs the source to log full row images: " + "; ".join(problems)
                             + "; fix the source's server parameters (parameter group on RDS) or use "
                             "strategy=checksum", side="source", option=option, settings=settings)


if HAS_REPLICATION:
    class FilteringConnection(pymysql.connections.Connection):
        """The replication stream's connection: once ``keep`` is set, packets it refuses are dropped
        before the library parses them."""

        keep: Callable[[bytes], bool] | None = None

        def connect(self, sock=None):
            super().connect(sock)
            # The dump is a one-way flood of ~8 KB events: read it in big gulps, not a system call
            # each. Swapped while nothing is buffered: the handshake's answers are all read.
            self._rfile = self._sock.makefile("rb", buffering=1 << 20)

        def _read_packet(self, packet_type=pymysql.protocol.MysqlPacket):
            while True:
                packet = super()._read_packet(packet_type)
                if self.keep is None or self.keep(packet.get_all_data()):
                    return packet


def event_filter(stream) -> Callable[[bytes], bool]:
    """Which raw packets of ``stream`` the library gets: all but row events of tables it has not
    mapped (other databases, tables not copied). On a shared server those are most of the log,
    and the library would build objects for each only to drop it."""
    def keep(data: bytes) -> bool:
        # A packet: the OK byte, the 19-byte event header, then a rows event's 6-byte table id.
        if len(data) < 26 or data[0] != 0:
            return True
        kind = data[5]
        if kind in ROWS_EVENT_TYPES or kind in COMPRESSED_ROWS_EVENT_TYPES:
            if int.from_bytes(data[20:26], "little") not in stream.table_map:
                # The library resumes a dropped connection from its last position; a skipped event counts.
                stream.log_pos = int.from_bytes(data[14:18], "little") or stream.log_pos
                return False
            if kind in COMPRESSED_ROWS_EVENT_TYPES:
                raise BinlogNotReady("the source's binary log holds compressed row events for a copied table, which "
                                     "cannot be read: set log_bin_compress=OFF on the source and reload with "
                                     "strategy=checksum", side="source", option="strategy")
        elif kind == TRANSACTION_PAYLOAD_EVENT:
            raise BinlogNotReady("the source's binary log holds compressed transactions, which cannot be read: set "
                                 "binlog_transaction_compression=OFF on the source and reload with strategy=checksum",
                                 side="source", option="strategy")
        return True
    return keep


def key_of(values: dict, positions: tuple[int, ...]) -> tuple:
    row = list(values.values())
    return tuple(_plain(row[position]) for position in positions)


def _plain(value):
    # The library returns some key types as Python objects; the server compares their text.
    if isinstance(value, (int, str, bytes)) or value is None:
        return value
    return str(value)


# TRUNCATE is logged as a statement even with binlog_format=ROW: no row event says the rows went.
_LEADING_COMMENTS = re.compile(r"^(?:\s|/\*.*?\*/)*", re.S)
_TRUNCATE = re.compile(r"TRUNCATE\s+(?:TABLE\s+)?(?:`((?:[^`]|``)+)`|(\w+))(?:\s*\.\s*(?:`((?:[^`]|``)+)`|(\w+)))?",
                       re.I)


def truncated_table(query: str, default_database: str) -> tuple[str, str] | None:
    """``(database, table)`` a TRUNCATE statement empties, or None for any other statement."""
    match = _TRUNCATE.match(_LEADING_COMMENTS.sub("", query, count=1))
    if match is None:
        return None
    first = (match.group(1) or "").replace("``", "`") or match.group(2)
    second = (match.group(3) or "").replace("``", "`") or match.group(4)
    return (first, second) if second else (default_database, first)


def ends_group(event_type: str, query: str) -> bool:
    """Whether an event ends its transaction (or is a statement standing alone, like DDL)."""
    if event_type == "Xid":
        return True
    if event_type != "Query":
        return False
    text = query.strip().upper()
    return text in ("COMMIT", "") or not text.startswith(("BEGIN", "XA"))


def read_changes(source: SideOptions, schemas: dict[str, TableSchema], start: BinlogPosition,
                 end: BinlogPosition, skip_until: dict[str, BinlogPosition], mariadb: bool,
                 max_keys: int = 1_000_000, on_batch: Callable[[ChangeBatch], None] | None = None,
                 stop: Callable[[], bool] | None = None) -> list[ChangeBatch]:
    """Batches of keys touched between ``start`` and ``end``, cut only at transaction ends.

    ``skip_until`` holds, per table, the position the table is already consistent with (a table
    loaded later than another has a later position; its older events are skipped). Stops early,
    at a transaction end, once ``max_keys`` keys are held; the caller continues from the last end.
    ``on_batch`` is given each batch as soon as it is complete, so it can be applied while the
    stream goes on; ``stop`` is asked at each transaction end whether to stop reading there.
    """
    del mariadb  # MariaDB's GTID events are parsed either way
    if not HAS_REPLICATION:
        raise BinlogNotReady(f"strategy=binlog needs the mysql-replication package on the controller: "
                             f"{REPLICATION_IMPORT_ERROR}", side="source", option="strategy")
    reader = _Reader(source, schemas, start, skip_until, max_keys, on_batch, stop)
    reader.stream(start, end)
    return reader.finish()


class _Reader:
    """The keys of one read of the binary log, in batches cut at transaction ends."""

    def __init__(self, source: SideOptions, schemas: dict[str, TableSchema], start: BinlogPosition,
                 skip_until: dict[str, BinlogPosition], max_keys: int,
                 on_batch: Callable[[ChangeBatch], None] | None = None, stop: Callable[[], bool] | None = None):
        self.source = source
        self.on_batch = on_batch
        self.stop = stop
        self.schemas = schemas
        self.start = start
        self.skip_until = skip_until
        self.max_keys = max_keys
        self.batches: list[ChangeBatch] = []
        self.held = 0
        self.batch: dict[str, TableChanges] = {}
        self.pending = 0
        self.gtid = start.gtid
        self.last_committed = start
        self.full = False

    def finish(self) -> list[ChangeBatch]:
        if self.batch or self.last_committed != self.start:
            self.complete(ChangeBatch(tables=self.batch, end=self.last_committed))
            self.batch = {}
        return self.batches

    def complete(self, batch: ChangeBatch) -> None:
        self.batches.append(batch)
        if self.on_batch is not None:
            self.on_batch(batch)

    def stream(self, start: BinlogPosition, end: BinlogPosition) -> None:
        """Read from ``start`` to the first transaction end at or after ``end``."""
        source = self.source
        settings = {"host": source.host, "port": source.port, "user": source.user or "", "password": source.password or ""}
        ssl = {name: value for name, value in (("ca", source.ssl_ca), ("cert", source.ssl_cert),
                                               ("key", source.ssl_key)) if value}
        if ssl:
            settings["ssl"] = ssl
        stream = BinLogStreamReader(
            connection_settings=settings,
            # A replica id must be unique among the source's replicas; a random one in a range
            # real servers rarely use avoids kicking off a real replica with the same id.
            server_id=random.randint(1_000_000_000, 4_000_000_000),
            resume_stream=True,  # without it the library ignores log_pos and starts at the file's head
            log_file=start.file,
            log_pos=start.position,
            blocking=False,
            only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, XidEvent, QueryEvent, RotateEvent,
                         MariadbGtidEvent],
            only_schemas=[source.database],
            only_tables=list(self.schemas),
            pymysql_wrapper=FilteringConnection,
            # is_mariadb=True switches the library to a GTID dump that ignores log_file/log_pos and
            # starts at the oldest binary log; the file/position dump works on MariaDB too.
            is_mariadb=False,
            enable_logging=False,
            # Only keys are used; other columns may be bytes the library cannot decode without the
            # charset metadata that binlog_row_metadata=FULL adds, and must not stop the stream.
            ignore_decode_errors=True,
        )
        keep = event_filter(stream)
        file = start.file
        schemas = self.schemas
        database = source.database
        try:
            for event in stream:
                connection = getattr(stream, "_stream_connection", None)
                # Set once the dump has started: before it, the connection also reads query results.
                if isinstance(connection, FilteringConnection) and connection.keep is None:
                    connection.keep = keep
                if isinstance(event, RotateEvent):
                    file = event.next_binlog
                    continue
                position = BinlogPosition(file=stream.log_file or file, position=int(event.packet.log_pos), gtid=self.gtid)
                if isinstance(event, MariadbGtidEvent):
                    self.gtid = event.gtid
                    continue
                if isinstance(event, (WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent)):
                    schema = schemas.get(event.table)
                    if schema is None or event.schema != database:
                        continue
                    since = self.skip_until.get(event.table)
                    if since is not None and position.order() <= since.order():
                        continue
                    self.take(event, schema)
                    continue
                if isinstance(event, QueryEvent):
                    self.take_statement(_text(event.query), _text(event.schema), position)
                committed = isinstance(event, XidEvent) or (
                    isinstance(event, QueryEvent) and ends_group("Query", _text(event.query)))
                if committed:
                    self.last_committed = BinlogPosition(file=position.file, position=position.position, gtid=self.gtid)
                    if self.pending >= BATCH_KEYS:
                        self.complete(ChangeBatch(tables=self.batch, end=self.last_committed))
                        self.held += self.pending
                        self.batch, self.pending = {}, 0
                    if self.held >= self.max_keys or (self.stop is not None and self.stop()):
                        self.full = True
                        break
                    if self.last_committed.order() >= end.order():
                        break
        finally:
            stream.close()

    def take_statement(self, query: str, default_database: str, position: BinlogPosition) -> None:
        """A TRUNCATE of a copied table: the table is copied whole from the source, in this batch."""
        emptied = truncated_table(query, default_database)
        if emptied is None or emptied[0] != self.source.database:
            return
        schema = self.schemas.get(emptied[1])
        since = self.skip_until.get(emptied[1])
        if schema is None or (since is not None and position.order() <= since.order()):
            return
        self.batch.setdefault(schema.name, TableChanges()).whole_table = True
        self.pending += 1

    def take(self, event, schema: TableSchema) -> None:
        changes = self.batch.setdefault(schema.name, TableChanges())
        if schema.keyless:
            changes.whole_table = True
        fast = _fast_keys(event, schema)
        if fast is not None:
            images, keys = fast
            if isinstance(event, UpdateRowsEvent):
                changes.updated += images // 2
            elif isinstance(event, WriteRowsEvent):
                changes.inserted += images
            else:
                changes.deleted += images
            if not schema.keyless:
                for key in keys:
                    changes.touch(key)
            self.pending += images // 2 if isinstance(event, UpdateRowsEvent) else images
            return
        positions = schema.key_positions()
        for row in event.rows:
            if isinstance(event, UpdateRowsEvent):
                changes.updated += 1
                if not schema.keyless:
                    _check_width(event, row["before_values"], schema)
                    changes.touch(key_of(row["before_values"], positions))
                    changes.touch(key_of(row["after_values"], positions))
            else:
                if isinstance(event, WriteRowsEvent):
                    changes.inserted += 1
                else:
                    changes.deleted += 1
                if not schema.keyless:
                    _check_width(event, row["values"], schema)
                    changes.touch(key_of(row["values"], positions))
            self.pending += 1


# --- keys straight from the row images ---------------------------------------------------------
#
# The library decodes every column of every row image into Python objects (dates, decimals,
# strings), which is most of a binlog run's time; only the key is needed. Row images are a null
# bitmap and the non-null values back to back, each with a width the table map's metadata
# gives, so the key columns are cut out and everything else is skipped. Any type or layout not
# known here falls back to the library's decoding of that event.

_DECIMAL_DIGIT_BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)
_INTEGER_TYPES = {1: 1, 2: 2, 9: 3, 3: 4, 8: 8}   # TINY, SHORT, INT24, LONG, LONGLONG -> bytes
_FIXED_WIDTHS = {4: 4, 5: 8, 6: 0, 7: 4, 10: 3, 11: 3, 12: 8, 13: 1}  # FLOAT DOUBLE NULL TIMESTAMP DATE TIME DATETIME YEAR
_TEMPORAL2 = {17: 4, 18: 5, 19: 3}                  # TIMESTAMP2, DATETIME2, TIME2 -> bytes before fractions
_LENGTH_PREFIXED = {245, 249, 250, 251, 252, 255}    # JSON, blobs, GEOMETRY: length_size bytes of length


def _decimal_width(precision: int, decimals: int) -> int:
    whole = precision - decimals
    return ((whole // 9) * 4 + _DECIMAL_DIGIT_BYTES[whole % 9]
            + (decimals // 9) * 4 + _DECIMAL_DIGIT_BYTES[decimals % 9])


def _column_reader(column) -> tuple[int, int] | None:
    """(kind, size) of one table-map column: kind 0 fixed width, 1/2 a 1/2-byte length, 3 a
    ``size``-byte length; None when the type is not known here."""
    kind = column.type
    if kind in _INTEGER_TYPES:
        return 0, _INTEGER_TYPES[kind]
    if kind in _FIXED_WIDTHS:
        return 0, _FIXED_WIDTHS[kind]
    if kind in _TEMPORAL2:
        return 0, _TEMPORAL2[kind] + (int(column.fsp) + 1) // 2
    if kind == 246:                                  # NEWDECIMAL
        return 0, _decimal_width(int(column.precision), int(column.decimals))
    if kind in (247, 248):                           # ENUM, SET
        return 0, int(column.size)
    if kind == 16:                                   # BIT
        return 0, int(column.bytes)
    if kind in (15, 253, 254):                       # VARCHAR, VAR_STRING, STRING
        return (2 if column.max_length > 255 else 1), 0
    if kind in _LENGTH_PREFIXED:
        return 3, int(column.length_size)
    return None


def _fast_keys(event, schema: TableSchema) -> tuple[int, list[tuple]] | None:
    """(row images, keys) read from the raw event, or None to let the library decode it."""
    if not getattr(event, "complete", True):
        return 0, []
    columns = event.columns
    if len(columns) != len(schema.columns):
        return None                                  # _check_width reports it on the slow path
    key_positions = schema.key_positions()
    decoders: dict[int, Callable[[bytes], object]] = {}
    for position in key_positions:
        column = columns[position]
        if column.type not in _INTEGER_TYPES:
            return None
        # Signedness from the catalog: without binlog_row_metadata=FULL the table map does not carry it.
        unsigned = "unsigned" in schema.columns[position].column_type.lower()
        decoders[position] = _unsigned_integer if unsigned else _signed_integer
    readers = [_column_reader(column) for column in columns]
    if any(reader is None for reader in readers):
        return None
    count = len(columns)
    full = bytes([0xFF] * (count // 8)) + (bytes([(1 << (count % 8)) - 1]) if count % 8 else b"")
    bitmaps = [getattr(event, "columns_present_bitmap", None)]
    if hasattr(event, "columns_present_bitmap2"):
        bitmaps.append(event.columns_present_bitmap2)
    if any(bytes(bitmap or b"") != full for bitmap in bitmaps):
        return None                                  # not a full row image
    remaining = event.event_size - event.packet.read_bytes
    data = event.packet.read(remaining)
    try:
        images, keys = _cut_keys(data, readers, decoders, key_positions, (count + 7) // 8)
    except (IndexError, ValueError):
        images, keys = -1, []
    if images < 0:
        event.packet.unread(data)
        return None
    return images, keys


def _unsigned_integer(raw: bytes) -> int:
    return int.from_bytes(raw, "little", signed=False)


def _signed_integer(raw: bytes) -> int:
    return int.from_bytes(raw, "little", signed=True)


def _cut_keys(data: bytes, readers: list, decoders: dict, key_positions: tuple[int, ...],
              null_bytes: int) -> tuple[int, list[tuple]]:
    keys = []
    offset = 0
    end = len(data)
    images = 0
    while offset < end:
        nulls = data[offset:offset + null_bytes]
        offset += null_bytes
        found = {}
        for position, (kind, size) in enumerate(readers):
            if nulls[position >> 3] & (1 << (position & 7)):
                continue
            if kind == 0:
                width = size
            elif kind == 1:
                width = data[offset]
                offset += 1
            elif kind == 2:
                width = data[offset] | (data[offset + 1] << 8)
                offset += 2
            else:
                width = int.from_bytes(data[offset:offset + size], "little")
                offset += size
            if position in decoders:
                found[position] = decoders[position](data[offset:offset + width])
            offset += width
        if len(found) != len(key_positions) or offset > end:
            return -1, []
        keys.append(tuple(found[position] for position in key_positions))
        images += 1
    return images, keys


def _check_width(event, values: dict, schema: TableSchema) -> None:
    if len(values) != len(schema.columns):
        raise BinlogNotReady(
            f"table {schema.name}: a binary log row at {event.packet.log_pos} has {len(values)} columns but the table "
            f"has {len(schema.columns)}; its schema changed after the recorded position: reload it with "
            "strategy=checksum", side="source", option="strategy")


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)
