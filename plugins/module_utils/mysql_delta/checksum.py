# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Chunk checksums and the row-level narrowing of a differing chunk, as pure comparisons.

A chunk checksum is computed by each server over its own rows: the row count, two 64-bit
XORs of the 128-bit MD5 of every row's text and a 64-bit sum of its first 32 bits (the XOR
alone cancels out pairs of identical rows, which keyless tables can have). The row text is
every written column's value as the server renders it, text and binary values quoted and
escaped, ``NULL`` a bare word, numbers and dates as they are (their text has no comma or
quote), so a checksum match means the copy would change nothing, NULL and '' hash differently,
and a value containing the separator cannot collide with two values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .chunking import Chunk, Key


@dataclass(frozen=True)
class ChunkChecksum:
    rows: int
    xor_high: int
    xor_low: int
    sum_high: int

    @classmethod
    def from_row(cls, row: Iterable) -> ChunkChecksum:
        values = [int(value or 0) for value in row]
        return cls(*values)


EMPTY = ChunkChecksum(0, 0, 0, 0)


@dataclass(frozen=True)
class RowChanges:
    """What makes the target's rows of one chunk equal to the source's."""

    inserts: tuple[Key, ...] = ()
    updates: tuple[Key, ...] = ()
    deletes: tuple[Key, ...] = ()

    @property
    def upserts(self) -> tuple[Key, ...]:
        return self.inserts + self.updates

    def __bool__(self) -> bool:
        return bool(self.inserts or self.updates or self.deletes)

    def __len__(self) -> int:
        return len(self.inserts) + len(self.updates) + len(self.deletes)


def plan_row_changes(source: Mapping[Key, str], target: Mapping[Key, str]) -> RowChanges:
    """Row changes from each side's ``{key: row hash}`` of the same chunk."""
    inserts = tuple(key for key in source if key not in target)
    updates = tuple(key for key, digest in source.items() if key in target and target[key] != digest)
    deletes = tuple(key for key in target if key not in source)
    return RowChanges(inserts=inserts, updates=updates, deletes=deletes)


@dataclass
class TableCounts:
    """Per-table result; field names are the module's return keys."""

    rows_inserted: int = 0
    rows_updated: int = 0
    rows_deleted: int = 0
    chunks_checked: int = 0
    chunks_differing: int = 0
    auto_increment: int | None = None
    copied_whole: bool = False
    resumed_from: list | None = None  # the key a resumed pass started after
    differing_chunks: list = field(default_factory=list)

    @property
    def rows_changed(self) -> int:
        return self.rows_inserted + self.rows_updated + self.rows_deleted

    def as_result(self) -> dict:
        result: dict = {
            "rows_inserted": self.rows_inserted,
            "rows_updated": self.rows_updated,
            "rows_deleted": self.rows_deleted,
            "chunks_checked": self.chunks_checked,
            "chunks_differing": self.chunks_differing,
            "auto_increment": self.auto_increment,
            "copied_whole": self.copied_whole,
        }
        if self.resumed_from is not None:
            result["resumed_from"] = self.resumed_from
        return result


def differing(chunk: Chunk, source: ChunkChecksum, target: ChunkChecksum) -> bool:
    del chunk
    return source != target
