# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decoding pgoutput (protocol 1) messages into the keys each committed transaction touched.

Only keys are taken from the stream, as with MySQL's binary log: rows are re-read from the
source by key when a transaction batch is applied, so applying is idempotent and a value's text
never depends on this decoder. Values arrive in text form, length-prefixed, so no quoting rules
are involved. A transaction is handed out only at its COMMIT, with the LSN of the commit
record's end: a slot advanced to that LSN never sends the transaction again.
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


@dataclass
class Transaction:
    end_lsn: int = 0
    tables: dict[str, TableChanges] = field(default_factory=dict)

    def changes(self, table: str) -> TableChanges:
        return self.tables.setdefault(table, TableChanges())

    @property
    def rows(self) -> int:
        return sum(len(c.keys) + (1 if c.whole_table else 0) for c in self.tables.values())


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.offset = 0

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.offset + size > len(self.data):
            raise DecodeError("pgoutput message ends early")
        values = struct.unpack_from(fmt, self.data, self.offset)
        self.offset += size
        return values

    def byte(self) -> str:
        return chr(self.take(">B")[0])

    def string(self) -> str:
        end = self.data.index(b"\x00", self.offset)
        text = self.data[self.offset:end].decode("utf-8")
        self.offset = end + 1
        return text

    def raw(self, size: int) -> bytes:
        chunk = self.data[self.offset:self.offset + size]
        self.offset += size
        return chunk

    def tuple_data(self) -> list[str | None]:
        (count,) = self.take(">h")
        values: list[str | None] = []
        for _index in range(count):
            kind = self.byte()
            if kind in ("n", "u"):
                values.append(None)
            elif kind in ("t", "b"):
                (size,) = self.take(">i")
                values.append(self.raw(size).decode("utf-8") if kind == "t" else self.raw(size).hex())
            else:
                raise DecodeError(f"unknown tuple column kind {kind!r}")
        return values


class Decoder:
    """Feeds on ``(lsn, data)`` rows of ``pg_logical_slot_peek_binary_changes``; yields transactions.

    ``keys`` names the chunking key columns of each table the run copies; changes to other
    relations are ignored.
    """

    def __init__(self, keys: Mapping[str, tuple[str, ...]]):
        self.keys = dict(keys)
        self.relations: dict[int, Relation] = {}
        self.current: Transaction | None = None

    def feed(self, rows: Iterable[tuple[str, bytes]]) -> Iterator[Transaction]:
        for _lsn, data in rows:
            done = self.message(bytes(data))
            if done is not None:
                yield done

    def message(self, data: bytes) -> Transaction | None:
        reader = _Reader(data)
        kind = reader.byte()
        if kind == "B":
            self.current = Transaction()
        elif kind == "C":
            _flags, _commit_lsn, end_lsn, _timestamp = reader.take(">bQQq")
            done = self.current or Transaction()
            done.end_lsn = int(end_lsn)
            self.current = None
            return done
        elif kind == "R":
            (relid,) = reader.take(">I")
            namespace, name = reader.string(), reader.string()
            reader.take(">b")
            (count,) = reader.take(">h")
            columns = []
            for _index in range(count):
                reader.take(">b")
                columns.append(reader.string())
                reader.take(">Ii")
            self.relations[relid] = Relation(f"{namespace or 'pg_catalog'}.{name}", tuple(columns))
        elif kind == "I":
            relation = self._relation(reader)
            if reader.byte() != "N":
                raise DecodeError("INSERT without a new tuple")
            self._touch(relation, reader.tuple_data(), "inserted")
        elif kind == "U":
            relation = self._relation(reader)
            marker = reader.byte()
            if marker in ("K", "O"):
                # The key changed (or the table has REPLICA IDENTITY FULL): the old key's row is gone.
                self._touch(relation, reader.tuple_data(), None)
                marker = reader.byte()
            if marker != "N":
                raise DecodeError("UPDATE without a new tuple")
            self._touch(relation, reader.tuple_data(), "updated")
        elif kind == "D":
            relation = self._relation(reader)
            if reader.byte() not in ("K", "O"):
                raise DecodeError("DELETE without a key")
            self._touch(relation, reader.tuple_data(), "deleted")
        elif kind == "T":
            (count,) = reader.take(">i")
            reader.take(">b")
            for _index in range(count):
                (relid,) = reader.take(">I")
                relation = self.relations.get(relid)
                if relation is not None and relation.table in self.keys:
                    self._transaction().changes(relation.table).whole_table = True
        elif kind in ("Y", "O", "M"):
            pass  # types, origins and logical messages carry no rows
        else:
            raise DecodeError(f"unknown pgoutput message {kind!r}")
        return None

    def _transaction(self) -> Transaction:
        if self.current is None:
            self.current = Transaction()
        return self.current

    def _relation(self, reader: _Reader) -> Relation | None:
        (relid,) = reader.take(">I")
        if relid not in self.relations:
            raise DecodeError(f"row for relation {relid} before its RELATION message")
        relation = self.relations[relid]
        return relation if relation.table in self.keys else None

    def _touch(self, relation: Relation | None, values: list[str | None], counter: str | None) -> None:
        if relation is None:
            return
        by_name = dict(zip(relation.columns, values))  # noqa: B905 - strict= is 3.10+; modules import on 3.9
        key = tuple(by_name.get(name) for name in self.keys[relation.table])
        changes = self._transaction().changes(relation.table)
        changes.touch(key)
        if counter:
            setattr(changes, counter, getattr(changes, counter) + 1)


def merge(into: Transaction, other: Transaction) -> Transaction:
    """Two consecutive transactions as one batch (keys in order, counts added)."""
    for table, changes in other.tables.items():
        mine = into.changes(table)
        for key in changes.keys:
            mine.touch(key)
        mine.inserted += changes.inserted
        mine.updated += changes.updated
        mine.deleted += changes.deleted
        mine.whole_table = mine.whole_table or changes.whole_table
    into.end_lsn = max(into.end_lsn, other.end_lsn)
    return into
