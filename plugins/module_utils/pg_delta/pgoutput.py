# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decoding pgoutput (protocol 1) messages into the keys each committed transaction touched.

Only keys are taken from the stream, as with MySQL's binary log: rows are re-read from the
source by key when a transaction batch is applied, so applying is idempotent and a value's text
never depends on this decoder (a value TOAST left unchanged is not even in the stream). Values
arrive in text form, length-prefixed, so no quoting rules are involved; only the key's columns
are decoded, the others are skipped by their length. A transaction is handed out at its
COMMIT, with the LSN of the commit record's end: a slot advanced to that LSN never sends the
transaction again. The server sends a transaction only once it has decoded its commit, so the
keys of an open one are already committed ones: ``take_fresh`` hands them out as they are
decoded, for an apply that starts on them before the COMMIT message arrives.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from ..mysql_delta.binlog import TableChanges


class DecodeError(ValueError):
    """A pgoutput message this decoder does not understand."""


@dataclass(frozen=True)
class Relation:
    table: str                      # schema.name
    columns: tuple[str, ...]
    # Where the chunking key's columns are in the relation's tuples; empty for tables not copied.
    key_positions: tuple[int, ...] = ()
    # A copied table whose tuples lack a key column (WAL written before the key was renamed):
    # its changes cannot be narrowed to keys, so the table is re-read whole.
    whole_table: bool = False


@dataclass
class Transaction:
    end_lsn: int = 0
    # The commit record's own LSN, from BEGIN (it precedes end_lsn): known before the changes.
    commit_lsn: int = 0
    tables: dict[str, TableChanges] = field(default_factory=dict)

    def changes(self, table: str) -> TableChanges:
        return self.tables.setdefault(table, TableChanges())

    @property
    def rows(self) -> int:
        return sum(len(c.keys) + (1 if c.whole_table else 0) for c in self.tables.values())


_UINT32 = struct.Struct(">I")
_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_BEGIN_FIELDS = struct.Struct(">Qq")
_COMMIT = struct.Struct(">bQQq")
_TRUNCATE = struct.Struct(">ib")
_BEGIN, _COMMIT_KIND, _RELATION, _INSERT, _UPDATE, _DELETE, _TRUNCATE_KIND = (ord(kind) for kind in "BCRIUDT")
_TEXT, _BINARY, _NULL, _UNCHANGED = (ord(kind) for kind in "tbnu")
_NEW, _OLD_KEY, _OLD_ROW = (ord(kind) for kind in "NKO")
_FIRST_COLUMN = (0,)
# A key column whose value TOAST left out of the stream: the key is unknown, the table is re-read whole.
UNKNOWN = object()


def _string(data: bytes, offset: int) -> tuple[str, int]:
    end = data.index(b"\x00", offset)
    return data[offset:end].decode("utf-8"), end + 1


def _tuple_key(data: bytes, offset: int, positions: tuple[int, ...], to_end: bool = False) -> tuple[tuple | None, int]:
    """The key's values from the tuple at ``offset``, and the offset after the last column read.

    Columns after the key's last are read only when ``to_end`` (another tuple follows): on
    wide rows that is what costs time. The key is None when one of its values is not in the stream.
    """
    (count,) = _INT16.unpack_from(data, offset)
    if positions == _FIRST_COLUMN and not to_end and count and data[offset + 2] == _TEXT:
        # The usual key, one column first in the row: read without the general loop, which is
        # most of the decoder's time per message.
        (size,) = _INT32.unpack_from(data, offset + 3)
        start = offset + 7
        if start + size > len(data):
            raise DecodeError("pgoutput message ends early")
        return (data[start:start + size].decode("utf-8"),), start + size
    offset += 2
    stop = count if to_end else min(count, max(positions) + 1)
    values: list = []
    for _index in range(stop):
        kind = data[offset]
        offset += 1
        if kind == _TEXT:
            (size,) = _INT32.unpack_from(data, offset)
            offset += 4
            values.append(data[offset:offset + size].decode("utf-8"))
            offset += size
        elif kind == _NULL:
            values.append(None)
        elif kind == _UNCHANGED:
            values.append(UNKNOWN)
        elif kind == _BINARY:
            (size,) = _INT32.unpack_from(data, offset)
            offset += 4
            values.append(data[offset:offset + size].hex())
            offset += size
        else:
            raise DecodeError(f"unknown tuple column kind {chr(kind)!r}")
    if offset > len(data):
        raise DecodeError("pgoutput message ends early")
    key = tuple(values[position] for position in positions)
    return (None if UNKNOWN in key else key), offset


class Decoder:
    """Feeds on ``(lsn, data)`` rows of ``pg_logical_slot_peek_binary_changes``; yields transactions.

    ``keys`` names the chunking key columns of each table the run copies; changes to other
    relations are ignored.
    """

    def __init__(self, keys: Mapping[str, tuple[str, ...]]):
        self.keys = dict(keys)
        self.relations: dict[int, Relation] = {}
        self.current: Transaction | None = None
        self.messages = 0               # messages fed so far
        # (table, key) first touched by the open transaction since take_fresh last ran.
        self.fresh: list[tuple[str, tuple]] = []

    def feed(self, rows: Iterable[tuple[str, bytes]], tick: int = 0) -> Iterator[Transaction | None]:
        """Each transaction at its COMMIT; with ``tick``, also None after every ``tick`` messages
        that committed nothing, so the caller can ``take_fresh`` inside a long transaction."""
        message = self.message
        since_tick = 0
        for _lsn, data in rows:
            self.messages += 1
            done = message(data if isinstance(data, bytes) else bytes(data))
            if done is not None:
                since_tick = 0
                yield done
            elif tick:
                since_tick += 1
                if since_tick >= tick:
                    since_tick = 0
                    yield None

    @property
    def open_transaction(self) -> Transaction | None:
        return self.current

    def take_fresh(self) -> list[tuple[str, tuple]]:
        """The ``(table, key)`` pairs the open transaction touched first since the last call."""
        fresh, self.fresh = self.fresh, []
        return fresh

    def message(self, data: bytes) -> Transaction | None:
        try:
            return self._message(data)
        except DecodeError:
            raise
        except (struct.error, IndexError, ValueError) as exc:
            raise DecodeError(f"pgoutput message ends early or is malformed: {exc}") from None

    def _message(self, data: bytes) -> Transaction | None:
        kind = data[0]
        if kind in (_UPDATE, _INSERT, _DELETE):
            (relid,) = _UINT32.unpack_from(data, 1)
            relation = self.relations.get(relid)
            if relation is None:
                raise DecodeError(f"row for relation {relid} before its RELATION message")
            if relation.key_positions:
                self._row(kind, relation, data)
            elif relation.whole_table:
                self._touch(relation, None, None)
        elif kind == _BEGIN:
            final_lsn, _timestamp = _BEGIN_FIELDS.unpack_from(data, 1)
            self.current = Transaction(commit_lsn=int(final_lsn))
            self.fresh = []
        elif kind == _COMMIT_KIND:
            _flags, commit_lsn, end_lsn, _timestamp = _COMMIT.unpack_from(data, 1)
            done = self.current or Transaction()
            done.end_lsn = int(end_lsn)
            done.commit_lsn = int(commit_lsn)
            self.current = None
            # The whole transaction is handed out now; what was not taken fresh comes with it.
            self.fresh = []
            return done
        elif kind == _RELATION:
            self._read_relation(data)
        elif kind == _TRUNCATE_KIND:
            count, _options = _TRUNCATE.unpack_from(data, 1)
            for index in range(count):
                (relid,) = _UINT32.unpack_from(data, 6 + 4 * index)
                relation = self.relations.get(relid)
                if relation is not None and relation.table in self.keys:
                    self._transaction().changes(relation.table).whole_table = True
        elif kind in (ord("Y"), ord("O"), ord("M")):
            pass  # types, origins and logical messages carry no rows
        else:
            raise DecodeError(f"unknown pgoutput message {chr(kind)!r}")
        return None

    def _row(self, kind: int, relation: Relation, data: bytes) -> None:
        positions = relation.key_positions
        marker = data[5]
        if kind == _INSERT:
            if marker != _NEW:
                raise DecodeError("INSERT without a new tuple")
            self._touch(relation, _tuple_key(data, 6, positions)[0], "inserted")
        elif kind == _DELETE:
            if marker not in (_OLD_KEY, _OLD_ROW):
                raise DecodeError("DELETE without a key")
            self._touch(relation, _tuple_key(data, 6, positions)[0], "deleted")
        else:
            offset = 6
            if marker in (_OLD_KEY, _OLD_ROW):
                # The key changed (or the table has REPLICA IDENTITY FULL): the old key's row is gone.
                old, offset = _tuple_key(data, offset, positions, to_end=True)
                self._touch(relation, old, None)
                marker = data[offset]
                offset += 1
            if marker != _NEW:
                raise DecodeError("UPDATE without a new tuple")
            self._touch(relation, _tuple_key(data, offset, positions)[0], "updated")

    def _read_relation(self, data: bytes) -> None:
        (relid,) = _UINT32.unpack_from(data, 1)
        namespace, offset = _string(data, 5)
        name, offset = _string(data, offset)
        offset += 1                                     # replica identity setting
        (count,) = _INT16.unpack_from(data, offset)
        offset += 2
        columns = []
        for _index in range(count):
            offset += 1                                 # flags (part of the replica identity)
            column, offset = _string(data, offset)
            columns.append(column)
            offset += 8                                 # type OID and modifier
        if offset > len(data):
            raise DecodeError("pgoutput message ends early")
        table = f"{namespace or 'pg_catalog'}.{name}"
        key = self.keys.get(table)
        if key is None:
            self.relations[relid] = Relation(table, tuple(columns))
        elif all(column in columns for column in key):
            self.relations[relid] = Relation(table, tuple(columns), tuple(columns.index(column) for column in key))
        else:
            self.relations[relid] = Relation(table, tuple(columns), whole_table=True)

    def _transaction(self) -> Transaction:
        if self.current is None:
            self.current = Transaction()
        return self.current

    def _touch(self, relation: Relation, key: tuple | None, counter: str | None) -> None:
        current = self.current
        if current is None:
            current = self._transaction()
        changes = current.tables.get(relation.table)
        if changes is None:
            changes = current.tables[relation.table] = TableChanges()
        if key is None:
            changes.whole_table = True
        elif key not in changes.keys:
            changes.keys[key] = None
            self.fresh.append((relation.table, key))
        if counter == "updated":
            changes.updated += 1
        elif counter == "inserted":
            changes.inserted += 1
        elif counter == "deleted":
            changes.deleted += 1


def merge(into: Transaction, other: Transaction) -> Transaction:
    """Two consecutive transactions as one batch (keys in order, counts added)."""
    for table, changes in other.tables.items():
        mine = into.changes(table)
        mine.keys.update(changes.keys)      # an ordered set: a key keeps its first place
        mine.inserted += changes.inserted
        mine.updated += changes.updated
        mine.deleted += changes.deleted
        mine.whole_table = mine.whole_table or changes.whole_table
    into.end_lsn = max(into.end_lsn, other.end_lsn)
    return into
