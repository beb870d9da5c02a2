# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Buckets: the second level of narrowing a differing chunk, as pure planning.

Changes scattered over a whole table (1% of rows here and there) make nearly every chunk differ,
so a chunk checksum narrows nothing. Each server therefore answers, in the same scan of the
chunk, one entry per bucket of about ROWS_PER_BUCKET rows: ``"bucket rows digest"`` (or the
tuple of the three, where the server answers with rows). Entries both sides hold are equal
buckets; only the rows of the other buckets are hashed one by one and compared by key
(:func:`checksum.plan_row_changes`). What a bucket is is decided here, the same for every engine;
the SQL that computes the entries is the dialect's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .chunking import Key

# With 1% of rows changed anywhere, about 8% of 8-row buckets differ: those rows are hashed one
# by one, while a chunk's answer stays one entry per 8 rows.
ROWS_PER_BUCKET = 8


@dataclass(frozen=True)
class Buckets:
    """How a chunk's rows are split, alike on both servers whichever rows each holds.

    With ``width``, bucket n holds the integer keys in (start + n * width, start + (n + 1) * width],
    so a bucket's rows are found through the key's index. Otherwise (other keys, or a chunk open
    at one end) a row's bucket is a hash of its key modulo ``count``, and finding a bucket's rows
    scans the chunk again.
    """

    count: int
    start: int = 0
    width: int = 0


def chunk_buckets(lower: Key | None, upper: Key | None, count: int, integer_key: bool) -> Buckets:
    """Buckets for the chunk (lower, upper]; ``integer_key``: the key is one integer column."""
    count = max(1, count)
    if (integer_key and lower is not None and upper is not None and isinstance(lower[0], int)
            and isinstance(upper[0], int) and 0 < upper[0] - lower[0] < 2 ** 62):
        return Buckets(count, lower[0], max(1, -(-(upper[0] - lower[0]) // count)))
    # A key read back from the state table is text; it still bounds the chunk, hashed buckets do.
    return Buckets(count)


def differing_buckets(source: Iterable[str | tuple], target: Iterable[str | tuple]) -> list[int]:
    """Buckets whose entry one side holds and the other does not (missing buckets included)."""
    return sorted({entry_bucket(entry) for entry in set(source) ^ set(target)})


def bucket_rows(entries: Iterable[str | tuple]) -> int:
    """Rows counted by a side's entries."""
    return sum(int(entry.split(" ", 2)[1]) if isinstance(entry, str) else int(entry[1]) for entry in entries)


def entry_bucket(entry: str | tuple) -> int:
    """A bucket entry's number: entries are the text ``"bucket rows digest"`` (MySQL) or the tuple
    ``(bucket, rows, digest)`` (PostgreSQL, which answers with rows)."""
    return int(entry.split(" ", 1)[0]) if isinstance(entry, str) else int(entry[0])
