# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Key ranges (chunks) and the SQL predicates that select them.

A chunk is ``lower < key <= upper`` in the key's own order, with an open end as ``None``; the
first chunk of a table has no lower bound and the last has no upper bound, so rows that exist
only on the target (outside the source's key range) are still inside some chunk.

The predicates are written as nested OR/AND instead of row constructors because both MySQL and
PostgreSQL turn that shape into an index range scan; only identifier quoting is the dialect's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Key = tuple  # one key value per key column, as the driver returned it

TARGET_CHUNK_SECONDS = 0.5
MIN_CHUNK_ROWS = 500
MAX_CHUNK_ROWS = 200_000
FIRST_CHUNK_ROWS = 5_000


@dataclass(frozen=True)
class Chunk:
    table: str
    index: int
    lower: Key | None   # exclusive
    upper: Key | None   # inclusive

    def describe(self) -> str:
        low = "-inf" if self.lower is None else ",".join(map(_show, self.lower))
        high = "+inf" if self.upper is None else ",".join(map(_show, self.upper))
        return f"{self.table}#{self.index} ({low} .. {high}]"


def _show(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    return str(value)


def after_predicate(columns: Sequence[str], quote: Callable[[str], str]) -> str:
    """``key > (%s, ...)`` for a composite key; parameters: :func:`after_parameters`."""
    return _compare(columns, quote, ">")


def upto_predicate(columns: Sequence[str], quote: Callable[[str], str]) -> str:
    """``key <= (%s, ...)``; parameters: :func:`upto_parameters`."""
    return _compare(columns, quote, "<=")


def _compare(columns: Sequence[str], quote: Callable[[str], str], last_operator: str) -> str:
    strict = ">" if last_operator == ">" else "<"
    first, rest = quote(columns[0]), columns[1:]
    if not rest:
        return f"{first} {last_operator} %s"
    return f"({first} {strict} %s OR ({first} = %s AND {_compare(rest, quote, last_operator)}))"


def after_parameters(key: Key) -> list:
    return _compare_parameters(key)


def upto_parameters(key: Key) -> list:
    return _compare_parameters(key)


def _compare_parameters(key: Key) -> list:
    if len(key) == 1:
        return [key[0]]
    return [key[0], key[0]] + _compare_parameters(key[1:])


def range_predicate(columns: Sequence[str], quote: Callable[[str], str],
                    lower: Key | None, upper: Key | None) -> tuple[str, list]:
    """WHERE text (``1=1`` when unbounded) and its parameters for ``lower < key <= upper``."""
    parts, parameters = [], []
    if lower is not None:
        parts.append(after_predicate(columns, quote))
        parameters += after_parameters(lower)
    if upper is not None:
        parts.append(upto_predicate(columns, quote))
        parameters += upto_parameters(upper)
    return (" AND ".join(parts) or "1=1"), parameters


def keys_predicate(columns: Sequence[str], quote: Callable[[str], str], keys: Sequence[Key]) -> tuple[str, list]:
    """WHERE text selecting exactly ``keys`` (IN for one column, OR of ANDs for composite keys)."""
    if len(columns) == 1:
        return f"{quote(columns[0])} IN ({', '.join(['%s'] * len(keys))})", [key[0] for key in keys]
    one = "(" + " AND ".join(f"{quote(name)} = %s" for name in columns) + ")"
    return "(" + " OR ".join([one] * len(keys)) + ")", [value for key in keys for value in key]


def next_chunk_size(current: int, elapsed_s: float, target_s: float = TARGET_CHUNK_SECONDS) -> int:
    """Rows for the next chunk so that one checksum takes about ``target_s``, changing by at most 4x."""
    proposed = current * 4 if elapsed_s <= 0 else int(current * target_s / elapsed_s)
    proposed = max(current // 4, min(current * 4, proposed))
    return max(MIN_CHUNK_ROWS, min(MAX_CHUNK_ROWS, proposed))


def batches(items: Sequence, size: int) -> list:
    return [items[start:start + size] for start in range(0, len(items), size)]
