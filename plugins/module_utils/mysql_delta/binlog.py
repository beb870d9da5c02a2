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

import random
from dataclasses import dataclass, field

from .errors import BinlogNotReady
from .options import SideOptions
from .schema import TableSchema
from .state import BinlogPosition

try:
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
    if problems:
        raise BinlogNotReady("strategy=binlog needs the source to log full row images: " + "; ".join(problems)
                             + "; fix the source's server parameters (parameter group on RDS) or use "
                             "strategy=checksum", side="source", option=option, settings=settings)


def key_of(values: dict, positions: tuple[int, ...]) -> tuple:
    row = list(values.values())
    return tuple(_plain(row[position]) for position in positions)


def _plain(value):
    # The library returns some key types as Python objects; the server compares their text.
    if isinstance(value, (int, str, bytes)) or value is None:
        return value
    return str(value)


def read_changes(source: SideOptions, schemas: dict[str, TableSchema], start: BinlogPosition,
                 end: BinlogPosition, skip_until: dict[str, BinlogPosition], mariadb: bool,
                 max_keys: int = 1_000_000) -> list[ChangeBatch]:
    """Batches of keys touched between ``start`` and ``end``, cut only at transaction ends.

    ``skip_until`` holds, per table, the position the table is already consistent with (a table
    loaded later than another has a later position; its older events are skipped). Stops early,
    at a transaction end, once ``max_keys`` keys are held; the caller continues from the last end.
    """
    del mariadb  # MariaDB's GTID events are parsed either way
    if not HAS_REPLICATION:
        raise BinlogNotReady(f"strategy=binlog needs the mysql-replication package on the controller: "
                             f"{REPLICATION_IMPORT_ERROR}", side="source", option="strategy")
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
        # is_mariadb=True switches the library to a GTID dump that ignores log_file/log_pos and
        # starts at the oldest binary log; the file/position dump works on MariaDB too.
        is_mariadb=False,
        enable_logging=False,
        # Only keys are used; other columns may be bytes the library cannot decode without the
        # charset metadata that binlog_row_metadata=FULL adds, and must not stop the stream.
        ignore_decode_errors=True,
    )
    batches: list[ChangeBatch] = []
    held = 0
    batch: dict[str, TableChanges] = {}
    pending = 0
    gtid = start.gtid
    file = start.file
    last_committed = start
    try:
        for event in stream:
            if isinstance(event, RotateEvent):
                file = event.next_binlog
                continue
            position = BinlogPosition(file=stream.log_file or file, position=int(event.packet.log_pos), gtid=gtid)
            if isinstance(event, MariadbGtidEvent):
                gtid = event.gtid
                continue
            if isinstance(event, (WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent)):
                schema = schemas.get(event.table)
                if schema is None or event.schema != source.database:
                    continue
                since = skip_until.get(event.table)
                if since is not None and position.order() <= since.order():
                    continue
                changes = batch.setdefault(event.table, TableChanges())
                if schema.keyless:
                    changes.whole_table = True
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
                    pending += 1
                continue
            committed = isinstance(event, XidEvent) or (
                isinstance(event, QueryEvent) and _text(event.query).strip().upper() in ("COMMIT", ""))
            if isinstance(event, QueryEvent) and not committed:
                # DDL and non-transactional statements end their own group.
                committed = not _text(event.query).strip().upper().startswith(("BEGIN", "XA"))
            if committed:
                last_committed = BinlogPosition(file=position.file, position=position.position, gtid=gtid)
                if pending >= BATCH_KEYS:
                    batches.append(ChangeBatch(tables=batch, end=last_committed))
                    held += pending
                    batch, pending = {}, 0
                if last_committed.order() >= end.order() or held >= max_keys:
                    break
    finally:
        stream.close()
    if batch or last_committed != start:
        batches.append(ChangeBatch(tables=batch, end=last_committed))
    return batches


def _check_width(event, values: dict, schema: TableSchema) -> None:
    if len(values) != len(schema.columns):
        raise BinlogNotReady(
            f"table {schema.name}: a binary log row at {event.packet.log_pos} has {len(values)} columns but the table "
            f"has {len(schema.columns)}; its schema changed after the recorded position: reload it with "
            "strategy=checksum", side="source", option="strategy")


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)
