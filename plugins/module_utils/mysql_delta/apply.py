# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A delta run: validate both sides, plan each chunk (data), apply it (the only writer), verify.

    run_delta(delta_options(params), check_mode=False) -> result dict (the module's return values)

Tables are worked on in parallel (``parallel_tables``), each with its own connection pair; a
chunk's checksum is asked of both servers at the same moment. Nothing is written before every
table has passed the drift and prerequisite checks.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import Any

from . import mysql as sql
from .binlog import ChangeBatch, check_source_binlog, read_changes
from .checksum import ChunkChecksum, RowChanges, TableCounts, plan_row_changes
from .chunking import Chunk, Key
from .errors import BinlogNotReady, DeltaError, InvalidOptions
from .options import DeltaOptions
from .schema import TableSchema, check_schemas
from .state import (
    ITEM_BINLOG,
    ITEM_CHECKSUM,
    ITEM_WATERMARK,
    BinlogPosition,
    decode_key,
    decode_value,
    dumps,
    encode_key,
    encode_value,
)
from .tables import DeltaRun, for_each_table, verify_tables
from .tables import walk_chunks as tables_walk

# A differing chunk in which more than this share of rows changed is re-read as a range (one
# sequential scan) instead of by key lists (many index lookups).
RANGE_READ_SHARE = 0.3
WATERMARK_BATCH_ROWS = 5000
# Keys read from the binary log before they are applied (about 100 bytes each).
MAX_KEYS_IN_MEMORY = 1_000_000
# Target connections per table while it is loaded into an empty target: the target's insert work
# is what a load waits on, and inserts into disjoint key ranges of an empty table take no locks
# that conflict. Chunks still commit in key order (see apply_chunk), so resuming stays exact.
LOAD_WRITERS = 2


@dataclass(frozen=True)
class ChunkPlan:
    """What one chunk needs on the target; ``rows`` are the source's row literals to upsert."""

    chunk: Chunk
    changes: RowChanges
    rows: tuple[bytes, ...] = ()
    into_empty: bool = False   # the target has no row in the range: plain INSERT, no upsert


@dataclass
class Run(DeltaRun):
    # The source's binlog coordinates when the run began: what a checksum load records.
    start: BinlogPosition | None = None


def run_delta(options: DeltaOptions, check_mode: bool = False,
              after_chunk: Callable[[str, int], None] | None = None) -> dict:
    began = time.monotonic()
    source = sql.Server(options.source)
    target = sql.Server(options.target, autocommit=False, role="write")
    try:
        tables, schemas = validate(options, source, target)
        state = sql.read_state(target, options.state_table)
        target.commit()
        frozen_at = None
        was_read_only = str(source.variable("read_only")).upper() in ("1", "ON")
        if options.freeze_source == "read_only" and not was_read_only and not check_mode:
            frozen_at = datetime.fromtimestamp(sql.set_read_only(source), timezone.utc).isoformat()  # noqa: UP017 - datetime.UTC is 3.11+
        start = sql.current_position(source)
        run = Run(options=options, check_mode=check_mode, schemas=schemas, state=state, start=start,
                  after_chunk=after_chunk)
        if not check_mode and not sql.state_table_exists(target, options.state_table):
            sql.create_state_table(target, options.state_table)
            run.target_writes += 1
        target.commit()

        position: BinlogPosition | None = start
        if options.strategy == "checksum":
            for_each_table(run, tables, sync_by_checksum)
        elif options.strategy == "binlog":
            position = sync_by_binlog(run, tables, source, target)
        else:
            for_each_table(run, tables, sync_by_watermark)
            run.warnings.append("strategy=watermark does not see rows deleted on the source; run "
                                "strategy=checksum (or binlog) for the final pass if deletes matter")

        if options.fix_auto_increment:
            fix_auto_increments(run, tables, source, target)

        verified = None
        if options.verify and not check_mode:
            verify(run, tables)
            verified = True
    finally:
        source.close()
        target.close()

    changed = run.target_writes > 0 or frozen_at is not None or any(c.rows_changed for c in run.counts.values())
    result: dict[str, Any] = {
        "changed": bool(changed),
        "strategy": options.strategy,
        "rows_inserted": sum(c.rows_inserted for c in run.counts.values()),
        "rows_updated": sum(c.rows_updated for c in run.counts.values()),
        "rows_deleted": sum(c.rows_deleted for c in run.counts.values()),
        "tables": {name: run.counts[name].as_result() for name in tables},
        "binlog_position": position.as_result() if position else None,
        "verified": verified,
        "elapsed_s": round(time.monotonic() - began, 3),
        "target_writes": run.target_writes,
        "source_read_only": was_read_only or frozen_at is not None,
        "source_frozen_at": frozen_at,
        "deletes_seen": options.strategy != "watermark",
        "keyless_tables": sorted(name for name in tables if schemas[name].keyless),
        "warnings": run.warnings,
    }
    return result


# --- validation: everything that can be wrong is found before the first write ---------------

def validate(options: DeltaOptions, source: sql.Server, target: sql.Server) -> tuple[list[str], dict[str, TableSchema]]:
    for server in (source, target):
        if not sql.database_exists(server):
            raise InvalidOptions(f"{server.side}.database {server.database!r} does not exist on "
                                 f"{server.options.host}:{server.options.port}; create it (the target needs the "
                                 "schema loaded) or fix the name", side=server.side, option="database")
    available = [name for name in sql.base_tables(source) if name != options.state_table]
    if options.tables:
        missing = [name for name in options.tables if name not in available]
        if missing:
            raise InvalidOptions(f"tables: {', '.join(missing)} not found in source database "
                                 f"{options.source.database} (base tables only; views are not copied)",
                                 side="source", option="tables")
        tables = list(options.tables)
    else:
        tables = available
    tables = [name for name in tables if name not in set(options.exclude_tables)]
    if not tables:
        raise InvalidOptions(f"no table to copy: source database {options.source.database} has none left after "
                             "tables/exclude_tables", side="source", option="tables")
    schemas = sql.read_schemas(source, tables)
    check_schemas([schemas[name] for name in tables], sql.read_schemas(target, tables))
    if options.strategy == "binlog":
        check_source_binlog(sql.binlog_settings(source))
    if options.strategy == "watermark":
        watermarks = options.watermark_map
        unknown = sorted(set(watermarks) - set(tables))
        if unknown:
            raise InvalidOptions(f"watermark_columns names {', '.join(unknown)}, not among the tables copied",
                                 option="watermark_columns")
        for name in tables:
            column = watermarks.get(name)
            if column is None:
                raise InvalidOptions(f"watermark_columns has no column for table {name}: add one (a column whose "
                                     "value grows on every write, e.g. updated_at) or list it in exclude_tables",
                                     option="watermark_columns")
            if schemas[name].column(column) is None:
                raise InvalidOptions(f"watermark_columns.{name}: column {column} does not exist in the source table",
                                     side="source", option="watermark_columns")
            if schemas[name].keyless:
                raise InvalidOptions(f"watermark_columns.{name}: the table has no primary or non-null unique key to "
                                     "upsert by; use strategy=checksum for it", side="source",
                                     option="watermark_columns")
    return tables, schemas


class TablePair:
    """A worker's own connections: source (autocommit reads) and target (one transaction per chunk)."""

    def __init__(self, run: Run, source: sql.Server | None = None, target: sql.Server | None = None):
        """``source``/``target``: connections the caller keeps (and closes); new ones otherwise."""
        self.run = run
        self.borrowed = source is not None and target is not None
        self.source = source if source is not None and target is not None else sql.Server(run.options.source)
        self.target = target if source is not None and target is not None else \
            sql.Server(run.options.target, autocommit=False, role="write")
        self.writes_before = self.target.writes
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.writers: list[sql.Server] = [self.target]
        self.write_pool: ThreadPoolExecutor | None = None

    def add_writers(self, count: int) -> None:
        while len(self.writers) < count:
            self.writers.append(sql.Server(self.run.options.target, autocommit=False, role="write"))
        self.write_pool = ThreadPoolExecutor(max_workers=count)

    def both(self, on_source: Callable[[sql.Server], Any], on_target: Callable[[sql.Server], Any]) -> tuple:
        """The same question asked of both servers at once."""
        target_answer = self.pool.submit(on_target, self.target)
        source_answer = on_source(self.source)
        answer = target_answer.result()
        # Reads on the target run inside its transaction; ending it lets the next read see
        # fresh rows (REPEATABLE READ would otherwise pin the first snapshot).
        self.target.commit()
        return source_answer, answer

    def close(self) -> None:
        if self.write_pool is not None:
            self.write_pool.shutdown()
        self.pool.shutdown()
        for writer in self.writers:
            self.run.target_writes += writer.writes - (self.writes_before if writer is self.target else 0)
            if writer is not self.target or not self.borrowed:
                writer.close()
        if not self.borrowed:
            self.source.close()

    def __enter__(self):  # typing.Self is 3.11+; modules also import on 3.9
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --- chunks -----------------------------------------------------------------------------------

def checksums(pair: TablePair, schema: TableSchema, chunk: Chunk) -> tuple[ChunkChecksum, ChunkChecksum]:
    def ask(server: sql.Server) -> ChunkChecksum:
        statement, parameters = sql.chunk_checksum_sql(server, schema, chunk.lower, chunk.upper)
        return ChunkChecksum.from_row(server.query(statement, parameters)[0])
    return pair.both(ask, ask)


def walk_chunks(pair: TablePair, schema: TableSchema, lower: Key | None = None,
                compare: Callable[[Chunk], tuple] | None = None) -> Iterator[tuple]:
    """Every chunk from ``lower`` to the end with ``compare``'s answer (default: both sides'
    checksums); sizes adapt to ~0.5 s."""
    return tables_walk(schema, pair.run.options.chunk_size, partial(sql.chunk_upper_bound, pair.source, schema),
                       compare or partial(checksums, pair, schema), lower)


def plan_chunk(pair: TablePair, schema: TableSchema, chunk: Chunk, source_sum: ChunkChecksum,
               target_sum: ChunkChecksum) -> ChunkPlan:
    """Narrow a differing chunk down to its differing rows (reads only)."""
    if schema.keyless:
        whole = tuple(literal for _key, literal in sql.rows_in_range(pair.source, schema, None, None))
        deletes = tuple(() for _row in range(target_sum.rows))
        return ChunkPlan(chunk, RowChanges(inserts=tuple(() for _row in whole), deletes=deletes), whole, into_empty=True)
    if target_sum.rows == 0:
        found = sql.literals_in_range(pair.source, schema, chunk.lower, chunk.upper)
        return ChunkPlan(chunk, RowChanges(inserts=((),) * len(found)), tuple(found), into_empty=True)
    return narrow(pair, schema, chunk)


def narrow(pair: TablePair, schema: TableSchema, chunk: Chunk) -> ChunkPlan:
    source_rows, target_rows = pair.both(lambda s: sql.row_hashes(s, schema, chunk.lower, chunk.upper),
                                         lambda t: sql.row_hashes(t, schema, chunk.lower, chunk.upper))
    changes = plan_row_changes(source_rows, target_rows)
    wanted = set(changes.upserts)
    rows: tuple[bytes, ...]
    if not wanted:
        rows = ()
    elif len(wanted) > RANGE_READ_SHARE * max(1, len(source_rows)):
        rows = tuple(literal for key, literal in sql.rows_in_range(pair.source, schema, chunk.lower, chunk.upper)
                     if key in wanted)
    else:
        rows = tuple(literal for _key, literal in sql.rows_by_keys(pair.source, schema, list(wanted)))
    return ChunkPlan(chunk, changes, rows)


def apply_chunk(pair: TablePair, schema: TableSchema, plan: ChunkPlan, progress: list[tuple[str, str, str]],
                target: sql.Server | None = None, previous: Future | None = None) -> None:
    """One target transaction: deletes, then upserts, then the progress rows that describe them.

    With several writers, ``previous`` is the chunk before this one: its commit is awaited before
    the progress row is written, so progress never claims a chunk that is not committed.
    """
    target = target or pair.target
    try:
        target.begin()
        if schema.keyless:
            sql.delete_all(target, schema)
        elif plan.changes.deletes:
            sql.delete_keys(target, schema, plan.changes.deletes)
        if schema.other_unique_keys:
            # A value of another unique key can move on the source to a row of this chunk from a
            # row of a later one, which the target still has: REPLACE deletes that row (it differs
            # from the source, so its chunk brings it back, in this pass or the next), where an
            # upsert or INSERT fails on every rerun.
            sql.insert_rows(target, schema, plan.rows, verb="REPLACE")
        else:
            sql.insert_rows(target, schema, plan.rows, upsert=not plan.into_empty)
        if previous is not None:
            try:
                previous.result()
            except BaseException as exc:
                target.rollback()
                raise DeltaError(f"{plan.chunk.describe()} was rolled back because the chunk before it failed: {exc}",
                                 side="target", chunk=plan.chunk.describe()) from exc
        for table, item, value in progress:
            sql.write_state(target, pair.run.options.state_table, table, item, value)
        target.commit()
    except DeltaError as exc:
        target.rollback()
        raise DeltaError(f"applying {plan.chunk.describe()} failed on the target and was rolled back: {exc}; fix the "
                         "cause and rerun, the run resumes after the last committed chunk",
                         side="target", chunk=plan.chunk.describe()) from exc


def sync_by_checksum(run: Run, schema: TableSchema) -> TableCounts:
    counts = TableCounts()
    progress = run.stored(schema.name, ITEM_CHECKSUM)
    resume = decode_key(progress.get("completed_through")) if progress.get("status") == "in_progress" else None
    coords = progress.get("coords") if resume is not None else (run.start.as_result() if run.start else None)
    if resume is not None and not schema.keyless:
        counts.resumed_from = encode_key(resume)
    with TablePair(run) as pair:
        wrote = False
        load = not schema.keyless and sql.count_rows(pair.target, schema) == 0
        pair.target.commit()
        chunks = load_chunks(pair, schema, resume) if load else plans(pair, schema, resume, counts)
        # Loading: LOAD_WRITERS connections. Otherwise a connection of its own for writing, so the
        # target hashes chunk N+1 while chunk N is written; only with no other unique key, since an
        # upsert can then touch no row outside its own chunk (a chunk found equal stays equal).
        # Opened with the first chunk to write: a run with nothing to do opens none.
        separate_writer = not load and not schema.keyless and len(schema.unique_keys) <= 1
        connections: list[sql.Server] = []
        writers = LOAD_WRITERS if load else 1
        pending: deque = deque()
        previous: Future | None = None
        submitted = 0
        finished = False   # the last chunk written was the table's final one, and marked the pass done
        for plan in chunks:
            counts.chunks_checked += 1
            if plan is None:
                continue
            counts.chunks_differing += 1
            counts.differing_chunks.append(plan.chunk)
            counts.rows_inserted += len(plan.changes.inserts)
            counts.rows_updated += len(plan.changes.updates)
            counts.rows_deleted += len(plan.changes.deletes)
            if schema.keyless:
                counts.copied_whole = True
            if run.check_mode:
                continue
            chunk = plan.chunk
            last = chunk.upper is None
            entries = [(schema.name, ITEM_CHECKSUM, dumps({
                "status": "done" if last else "in_progress", "completed_through": encode_key(chunk.upper),
                "coords": coords, "run_started_at": progress.get("run_started_at") or _now()}))]
            if last and coords:
                entries.append((schema.name, ITEM_BINLOG, dumps(coords)))
            if not wrote and load:
                pair.add_writers(LOAD_WRITERS)
                connections = pair.writers
            elif not wrote and separate_writer:
                pair.add_writers(2)
                connections = pair.writers[1:]
            # The target writes chunk N (and, loading, N-1) while the source reads chunk N+1.
            if len(pending) >= writers:
                finish(run, schema, pending.popleft())
            if connections and pair.write_pool is not None:
                previous = pair.write_pool.submit(apply_chunk, pair, schema, plan, entries,
                                                  connections[submitted % writers], previous)
            else:
                previous = pair.pool.submit(apply_chunk, pair, schema, plan, entries)
            submitted += 1
            pending.append((previous, chunk.index))
            wrote, finished = True, last
        while pending:
            finish(run, schema, pending.popleft())
        # A pass that ends on equal chunks still has to say it got through, or the next run would
        # resume after its last differing chunk and never compare the ones before.
        if not run.check_mode and not finished:
            entries = []
            if wrote or progress.get("status") == "in_progress":
                entries.append((schema.name, ITEM_CHECKSUM, dumps({"status": "done", "coords": coords})))
            if coords and (entries or not run.stored(schema.name, ITEM_BINLOG)):
                entries.append((schema.name, ITEM_BINLOG, dumps(coords)))
            if entries:
                write_entries(pair, entries)
    return counts


def finish(run: Run, schema: TableSchema, pending: tuple) -> None:
    future, index = pending
    future.result()
    if run.after_chunk:
        run.after_chunk(schema.name, index)


def load_chunks(pair: TablePair, schema: TableSchema, lower: Key | None) -> Iterator[ChunkPlan | None]:
    """An empty target: every chunk is "all rows differ", so no checksum is asked, only rows read."""
    def read_rows(chunk: Chunk) -> tuple[list[bytes]]:
        return (sql.literals_in_range(pair.source, schema, chunk.lower, chunk.upper),)

    for chunk, found in walk_chunks(pair, schema, lower, read_rows):
        # Into an empty range every row is an insert; only their number is reported.
        yield (ChunkPlan(chunk, RowChanges(inserts=((),) * len(found)), tuple(found), into_empty=True)
               if found or chunk.upper is None else None)


def plans(pair: TablePair, schema: TableSchema, lower: Key | None, counts: TableCounts) -> Iterator[ChunkPlan | None]:
    """Each chunk's plan, or None when it is equal on both sides."""
    def plan(chunk: Chunk) -> tuple[ChunkPlan | None]:
        # When most chunks so far differed (changes spread over the whole table), the chunk
        # checksum is skipped: the per-row hashes answer "equal?" and "which rows?" in one read.
        if not schema.keyless and counts.chunks_checked >= 2 and counts.chunks_differing * 2 > counts.chunks_checked:
            narrowed = narrow(pair, schema, chunk)
            return (narrowed if narrowed.changes else None,)
        source_sum, target_sum = checksums(pair, schema, chunk)
        return (None if source_sum == target_sum else plan_chunk(pair, schema, chunk, source_sum, target_sum),)

    for _chunk, found in walk_chunks(pair, schema, lower, plan):
        yield found


def write_entries(pair: TablePair, entries: list[tuple[str, str, str]]) -> None:
    pair.target.begin()
    for table, item, value in entries:
        sql.write_state(pair.target, pair.run.options.state_table, table, item, value)
    pair.target.commit()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()  # noqa: UP017 - datetime.UTC is 3.11+


# --- binlog ------------------------------------------------------------------------------------

def sync_by_binlog(run: Run, tables: list[str], source: sql.Server, target: sql.Server) -> BinlogPosition | None:
    positions = {name: BinlogPosition.from_result(run.stored(name, ITEM_BINLOG)) for name in tables}
    unloaded = [name for name, position in positions.items() if position is None]
    if unloaded:
        # Nothing recorded yet: load/verify by checksum, which records the coordinates to stream from.
        for_each_table(run, unloaded, sync_by_checksum)
    streamed = {name: position for name, position in positions.items() if position is not None}
    for name in streamed:
        run.counts[name] = TableCounts()
    end = sql.current_position(source)
    if not streamed or end is None:
        return end
    start = min(streamed.values(), key=BinlogPosition.order)
    files = sql.binlog_files(source)
    if start.file not in files:
        raise BinlogNotReady(f"the source no longer has binary log {start.file} (recorded position of "
                             f"{', '.join(n for n, p in streamed.items() if p.file == start.file)}); it was purged: "
                             "raise the binlog retention (RDS: mysql.rds_set_configuration('binlog retention hours', "
                             "168)) and reload with strategy=checksum", side="source", option="strategy")
    if start.order() >= end.order():
        return start
    schemas = {name: run.schemas[name] for name in streamed}
    last = start
    # The run's own connections: a binlog delta is usually small, and connecting is a fixed cost.
    # One thread streams, one reads source rows: pair.source serves one statement at a time.
    with TablePair(run, source, target) as pair, ThreadPoolExecutor(max_workers=1) as streamer, \
            ThreadPoolExecutor(max_workers=1) as reader:
        while last.order() < end.order():
            batches, last = _stream_and_apply(run, pair, (streamer, reader), schemas, streamed, last, end,
                                              sql.is_mariadb(source))
            if not batches or (batches[-1].end == batches[0].end and not batches[-1].tables):
                break
    return last


_STREAM_DONE = object()


def _stream_and_apply(run: Run, pair: TablePair, workers: tuple[ThreadPoolExecutor, ThreadPoolExecutor],
                      schemas: dict[str, TableSchema],
                      streamed: dict[str, BinlogPosition], last: BinlogPosition, end: BinlogPosition,
                      mariadb: bool) -> tuple[list[ChangeBatch], BinlogPosition]:
    """One read of the log, each batch applied as soon as it is complete, in order.

    The stream is read on a thread of its own that never waits for the writes: a replica
    connection left waiting gets dropped by the server, and the library's reconnect re-reads
    events from an earlier position. The source's rows of batch N+1 are read while batch N is
    written to the target.
    """
    handed: queue.Queue = queue.Queue()
    failed = threading.Event()

    def read() -> list[ChangeBatch]:
        try:
            return read_changes(run.options.source, schemas, last, end, streamed, mariadb,
                                max_keys=MAX_KEYS_IN_MEMORY, on_batch=handed.put, stop=failed.is_set)
        finally:
            handed.put(_STREAM_DONE)

    streamer, reader = workers
    reading = streamer.submit(read)
    waiting: deque[tuple[ChangeBatch, Future | None]] = deque()
    try:
        while True:
            if waiting and (handed.empty() or len(waiting) > 1):
                # Applied as soon as its rows are in; a batch already queued behind it has its
                # rows read meanwhile.
                last = _apply_streamed(run, pair, streamed, *waiting.popleft())
                continue
            batch = handed.get()
            if batch is _STREAM_DONE:
                break
            rows = None if run.check_mode or not batch.tables else reader.submit(read_batch_rows, pair, batch)
            waiting.append((batch, rows))
        while waiting:
            last = _apply_streamed(run, pair, streamed, *waiting.popleft())
    except BaseException:
        failed.set()
        raise
    return reading.result(), last


def _apply_streamed(run: Run, pair: TablePair, streamed: dict[str, BinlogPosition], batch: ChangeBatch,
                    rows: Future | None) -> BinlogPosition:
    found = rows.result() if rows is not None else {}
    for name, changes in batch.tables.items():
        counts = run.counts[name]
        counts.rows_inserted += changes.inserted
        counts.rows_updated += changes.updated
        counts.rows_deleted += changes.deleted
        counts.copied_whole = counts.copied_whole or changes.whole_table
    if batch.tables and not run.check_mode:
        apply_batch(pair, batch, streamed, found)
    return batch.end


def read_batch_rows(pair: TablePair, batch: ChangeBatch) -> dict[str, list[tuple]]:
    """The source's rows now for every key of the batch (all rows of a keyless table).

    Read after the batch's events were streamed, so each row is at least as new as its events;
    re-applying "the source's row now" is idempotent, which makes reading it early safe.
    """
    found = {}
    for name, changes in batch.tables.items():
        schema = pair.run.schemas[name]
        if changes.whole_table:
            found[name] = sql.rows_in_range(pair.source, schema, None, None)
        else:
            found[name] = sql.rows_by_keys(pair.source, schema, list(changes.keys))
    return found


def apply_batch(pair: TablePair, batch: ChangeBatch, streamed: dict[str, BinlogPosition],
                source_rows: dict[str, list[tuple]] | None = None) -> None:
    """The batch's rows as the source has them now, and the new position, in one target transaction."""
    target = pair.target
    if not source_rows:
        source_rows = read_batch_rows(pair, batch)
    try:
        target.begin()
        for name, changes in batch.tables.items():
            schema = pair.run.schemas[name]
            if changes.whole_table:
                sql.delete_all(target, schema)
                sql.insert_rows(target, schema, [literal for _key, literal in source_rows[name]])
                continue
            keys = list(changes.keys)
            found = source_rows[name]
            present = {_comparable(key) for key, _literal in found}
            # Only keys the source no longer has are deleted; the others are replaced in place,
            # which rewrites only the secondary indexes whose columns changed (a DELETE plus
            # INSERT rewrites every index entry of the row).
            vanished = [key for key in keys if _comparable(key) not in present]
            if vanished:
                sql.delete_keys(target, schema, vanished)
            # REPLACE, not INSERT: a row re-read "now" may carry a unique value another row still
            # holds on the target until a later batch moves it; REPLACE converges where INSERT fails.
            sql.insert_rows(target, schema, [literal for _key, literal in found], verb="REPLACE")
        for name, position in streamed.items():
            if batch.end.order() > position.order():
                sql.write_state(target, pair.run.options.state_table, name, ITEM_BINLOG, dumps(batch.end.as_result()))
        target.commit()
    except DeltaError as exc:
        target.rollback()
        raise DeltaError(f"applying binary log events up to {batch.end.file}:{batch.end.position} failed on the target "
                         f"and was rolled back: {exc}; fix the cause and rerun, it resumes from the stored position",
                         side="target") from exc
    if pair.run.after_chunk:
        pair.run.after_chunk("binlog", batch.end.position)


def _comparable(key: tuple) -> tuple:
    # Keys from the binary log are ints where the source's text protocol gives digits.
    return tuple(str(value) if isinstance(value, int) else value for value in key)


# --- watermark ---------------------------------------------------------------------------------

def sync_by_watermark(run: Run, schema: TableSchema) -> TableCounts:
    counts = TableCounts()
    column = run.options.watermark_map[schema.name]
    stored = run.stored(schema.name, ITEM_WATERMARK)
    quote = sql.quote
    key_names = sql.key_list(schema)
    with TablePair(run) as pair:
        mark = decode_value(stored.get("value")) if stored.get("column") == column else None
        mark_key = decode_key(stored.get("key")) if mark is not None else None
        if mark is None and sql.count_rows(pair.target, schema) > 0:
            mark = pair.target.query(f"SELECT MAX({quote(column)}) FROM {pair.target.table(schema.name)}")[0][0]
        pair.target.commit()
        batch_rows = run.options.chunk_size or WATERMARK_BATCH_ROWS
        while True:
            where, parameters = _above_mark(schema, column, mark, mark_key)
            found = pair.source.query(
                f"SELECT {key_names}, {quote(column)}, {sql.row_literal(schema)} FROM "
                f"{pair.source.table(schema.name)} WHERE {where} ORDER BY {quote(column)}, {key_names} "
                f"LIMIT {int(batch_rows)}", parameters)
            if not found:
                break
            width = len(schema.key)
            keys = [tuple(row[:width]) for row in found]
            existing = sql.existing_keys(pair.target, schema, keys)
            counts.chunks_checked += 1
            mark, mark_key = found[-1][width], tuple(found[-1][:width])
            if run.check_mode:
                pair.target.commit()
                counts.rows_inserted += len(keys) - existing
                counts.rows_updated += existing
                continue
            try:
                literals = [row[width + 1] for row in found]
                affected = sql.insert_rows(pair.target, schema, literals, upsert=True)
                sql.write_state(pair.target, run.options.state_table, schema.name, ITEM_WATERMARK, dumps({
                    "column": column, "value": encode_value(mark), "key": encode_key(mark_key)}))
                pair.target.commit()
            except DeltaError:
                pair.target.rollback()
                raise
            inserted = len(keys) - existing
            counts.rows_inserted += inserted
            counts.rows_updated += max(0, (affected - inserted) // 2)
            counts.chunks_differing += 1
            if len(found) < batch_rows:
                break
    return counts


def _above_mark(schema: TableSchema, column: str, mark: Any, mark_key: Key | None) -> tuple[str, list]:
    from .chunking import after_parameters, after_predicate
    name = sql.quote(column)
    if mark is None:
        return f"{name} IS NOT NULL", []
    if mark_key is None:
        return f"{name} >= %s", [mark]
    return (f"({name} > %s OR ({name} = %s AND {after_predicate(schema.key, sql.quote)}))",
            [mark, mark] + after_parameters(mark_key))


# --- AUTO_INCREMENT and verify -------------------------------------------------------------------

def fix_auto_increments(run: Run, tables: list[str], source: sql.Server, target: sql.Server) -> None:
    for name in tables:
        column = run.schemas[name].auto_increment_column
        if column is None:
            continue
        counts = run.counts.setdefault(name, TableCounts())
        source_next = sql.auto_increment_value(source, name)
        target_max = sql.max_value(target, name, column.name)
        wanted = max(source_next, (target_max or 0) + 1)
        current = sql.auto_increment_value(target, name)
        target.commit()
        if current < wanted and not run.check_mode:
            sql.set_auto_increment(target, name, wanted)
            run.target_writes += 1
            target.commit()
            current = sql.auto_increment_value(target, name)
            target.commit()
        counts.auto_increment = max(current, wanted) if run.check_mode else current


def verify(run: Run, tables: list[str]) -> None:
    def differing_chunks(run: Run, schema: TableSchema) -> list[Chunk]:
        counts = run.counts.setdefault(schema.name, TableCounts())
        # A checksum pass that walked the whole table compares again only the chunks it changed.
        recheck_only = run.options.strategy == "checksum" and counts.resumed_from is None
        with TablePair(run) as pair:
            chunks = ([(chunk, *checksums(pair, schema, chunk)) for chunk in counts.differing_chunks]
                      if recheck_only else list(walk_chunks(pair, schema)))
        return [chunk for chunk, source_sum, target_sum in chunks if source_sum != target_sum]

    verify_tables(run, tables, differing_chunks)
