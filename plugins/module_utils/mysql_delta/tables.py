# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a delta run does across its tables, whatever the engine: the run's shared record, one
worker per table (``parallel_tables`` at once), the walk over a table's chunks, and the verify
pass that names every chunk still differing. The engines (``apply.py`` here, ``pg_delta/run.py``)
supply only their own SQL: how to find a chunk's upper key and how to compare a chunk.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .checksum import TableCounts
from .chunking import FIRST_CHUNK_ROWS, Chunk, Key, next_chunk_size
from .errors import DeltaError, VerifyFailed
from .schema import TableSchema
from .state import loads


@dataclass
class DeltaRun:
    """One run's options, the schemas it checked, the state it read, and what it has done so far."""

    options: Any
    check_mode: bool
    schemas: dict[str, TableSchema]
    state: dict[tuple[str, str], str]
    counts: dict[str, TableCounts] = field(default_factory=dict)
    target_writes: int = 0
    warnings: list[str] = field(default_factory=list)
    # Test seam: called after each chunk or change batch commits with (table, chunk index or position).
    after_chunk: Callable[[str, Any], None] | None = None

    def stored(self, table: str, item: str) -> dict:
        return loads(self.state.get((table, item)))


def add_counts(first: TableCounts, second: TableCounts) -> TableCounts:
    """``second``'s work added to ``first`` (a table worked on twice in one run, e.g. load then stream)."""
    first.rows_inserted += second.rows_inserted
    first.rows_updated += second.rows_updated
    first.rows_deleted += second.rows_deleted
    first.chunks_checked += second.chunks_checked
    first.chunks_differing += second.chunks_differing
    first.copied_whole = first.copied_whole or second.copied_whole
    first.differing_chunks.extend(second.differing_chunks)
    first.resumed_from = first.resumed_from or second.resumed_from
    return first


def parallel_tables(run: DeltaRun, tables: Sequence[str]) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max(1, min(run.options.parallel_tables, len(tables))))


def for_each_table(run: DeltaRun, tables: Sequence[str], work: Callable[[Any, TableSchema], TableCounts]) -> None:
    """``work`` on every table, ``parallel_tables`` at once; its counts go into ``run.counts``.

    Every table is finished (or has failed) before the first error is raised, so a failure in one
    table never leaves another one's chunk half-written.
    """
    if not tables:
        return
    with parallel_tables(run, tables) as pool:
        futures = {name: pool.submit(work, run, run.schemas[name]) for name in tables}
        errors = []
        for name, future in futures.items():
            try:
                counts = future.result()
            except DeltaError as exc:
                errors.append(exc)
                continue
            previous = run.counts.get(name)
            run.counts[name] = add_counts(previous, counts) if previous else counts
    if errors:
        raise errors[0]


def walk_chunks(schema: TableSchema, chunk_size: int | None, upper_bound: Callable[[Key | None, int], Key | None],
                compare: Callable[[Chunk], tuple], lower: Key | None = None) -> Iterator[tuple]:
    """Every chunk of ``schema`` from ``lower`` to the end, each as ``(chunk, *compare(chunk))``.

    ``upper_bound(lower, rows)`` is the key ``rows`` rows after ``lower`` on the source (None when
    fewer remain); ``compare`` asks both servers about the chunk. Without a fixed ``chunk_size``
    each chunk's size is set from the previous one's time, aiming at ~0.5 s. A keyless table is
    one chunk.
    """
    if schema.keyless:
        chunk = Chunk(schema.name, 0, None, None)
        yield (chunk, *compare(chunk))
        return
    size = chunk_size or FIRST_CHUNK_ROWS
    index = 0
    while True:
        upper = upper_bound(lower, size)
        chunk = Chunk(schema.name, index, lower, upper)
        began = time.monotonic()
        answers = compare(chunk)
        if chunk_size is None:
            size = next_chunk_size(size, time.monotonic() - began)
        yield (chunk, *answers)
        if upper is None:
            return
        lower, index = upper, index + 1


def verify_tables(run: DeltaRun, tables: Sequence[str],
                  differing_chunks: Callable[[Any, TableSchema], list[Chunk]]) -> None:
    """Fail with every chunk, of every table, that ``differing_chunks`` still finds different.

    Tables are compared ``parallel_tables`` at once; the error names each table and chunk and
    what to do, and carries them as ``differing_chunks`` and ``tables`` for the module's result.
    """
    failures = []
    with parallel_tables(run, tables) as pool:
        futures = {name: pool.submit(differing_chunks, run, run.schemas[name]) for name in tables}
        for name, future in futures.items():
            bad = [chunk.describe() for chunk in future.result()]
            if bad:
                failures.append(VerifyFailed(
                    f"verify: {len(bad)} chunk(s) of {name} differ after applying: {', '.join(bad)}; if the source "
                    "is still being written, freeze it (freeze_source=read_only) and rerun",
                    side="target", option="verify", differing_chunks=bad, table=name))
    if failures:
        chunks = [chunk for exc in failures for chunk in exc.details["differing_chunks"]]
        raise VerifyFailed("verify failed, chunks still differ: " + "; ".join(str(exc) for exc in failures),
                           side="target", option="verify", differing_chunks=chunks,
                           tables=sorted(exc.details["table"] for exc in failures))
