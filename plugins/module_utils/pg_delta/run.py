# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A PostgreSQL delta run: validate both sides, plan each chunk (data), apply it (the only writer),
stream the logical slot, fix sequences, verify.

    run_delta(delta_options(params), check_mode=False) -> result dict (the module's return values)

The run record, the per-table workers, the chunk walk and verify's report (mysql_delta/tables.py),
chunk bounds, checksum comparison, bucket planning, row-level narrowing, drift sentences and
progress encoding are mysql_delta's; what is PostgreSQL's own is the SQL (postgres.py), the slot
(pgoutput.py) and sequences. Nothing is written before every table has passed the drift and prerequisite checks.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from typing import Any

from ..collection_pauses import older_objects_left_out_of_collection
from ..mysql_delta.buckets import ROWS_PER_BUCKET, Buckets, bucket_rows, differing_buckets
from ..mysql_delta.checksum import ChunkChecksum, RowChanges, TableCounts, plan_row_changes
from ..mysql_delta.chunking import FIRST_CHUNK_ROWS, Chunk, Key, next_chunk_size
from ..mysql_delta.errors import ConnectionFailed, DeltaError, InvalidOptions, SchemaDrift
from ..mysql_delta.schema import TableSchema, check_schemas
from ..mysql_delta.state import decode_key, dumps, encode_key, loads
from ..mysql_delta.tables import DeltaRun, for_each_table, verify_tables
from ..mysql_delta.tables import walk_chunks as tables_walk
from . import postgres as pg
from .options import DeltaOptions
from .pgoutput import Decoder, Transaction, merge
from .versions import LoneKey, SideVersions, baseline_problem, keys_to_ask, lone_keys, xid32

ITEM_CHECKSUM = "checksum"
ITEM_LOGICAL = "logical"
ITEM_INDEXES = "deferred_indexes"
ALL_TABLES = "*"
# A differing chunk in which more than this share of rows changed is replaced as a range (one
# sequential scan and one COPY) instead of by key lists (many index lookups).
RANGE_READ_SHARE = 0.3
# Decoded messages per peek; the server finishes the transaction it is in, so a batch is always
# whole transactions, applied in one target transaction with the position it reaches. Each peek
# decodes the WAL again from the slot's restart point, so a batch is as large as the keys kept in
# memory allow (messages stream through in chunks; only keys are kept).
PEEK_CHANGES = 200_000
# Keys a decoded peek gathers before the target deletes them and the source reads their rows, one
# statement each, while the peek goes on.
APPLY_SLICE_KEYS = 2_000
# Rows per COPY transaction when loading an empty table: large enough that index maintenance and
# commits amortise, small enough that a crash loses at most a few seconds of work.
EMPTY_LOAD_CHUNK_ROWS = 100_000
# Buckets per chunk when a written chunk is compared again (its row count is not kept): enough
# that no bucket holds more than a few dozen rows of a 100,000-row load chunk.
VERIFY_BUCKETS = 4096
# Rows per bucket of key sums in a pass that compares changed rows only: a key sum is cheap, but
# each bucket is an entry both servers format and send; a bucket that differs (a key on one side
# only) has its rows hashed one by one.
KEY_ROWS_PER_BUCKET = 32
# Rows new since the last pass read for a whole table at once (see new_rows_of_table); more than
# this on a side and each chunk reads its own.
WHOLE_TABLE_NEW_ROWS = 200_000


class NotReady(DeltaError):
    """The source cannot serve the ``logical`` strategy (wal_level, slots, privileges)."""


@dataclass(frozen=True)
class ChunkPlan:
    """What one chunk needs on the target: ``mode`` is keys (exact rows), range (replace the range),
    empty (copy into an empty range) or whole (a keyless table, replaced whole)."""

    chunk: Chunk
    changes: RowChanges
    mode: str
    target_rows: int = 0


@dataclass
class Run(DeltaRun):
    """The shared run record, and per table how its checksum pass compared: ``changed_rows``
    (since the last complete pass, see versions.py) or ``every_row`` with the reason."""

    compared: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class PassVersions:
    """A checksum pass's row versions (see versions.py): both sides' horizons, taken before it
    compared anything (the target's with the transactions the pass committed added), and the
    ``baseline`` it compares against — the horizons of the last complete pass — or None when it
    compares every row."""

    source: SideVersions
    target: SideVersions
    baseline: tuple[SideVersions, SideVersions] | None = None

    def as_state(self) -> dict[str, Any]:
        return sides_state((self.source, self.target))


def sides_state(sides: tuple[SideVersions, SideVersions]) -> dict[str, Any]:
    return {"source": sides[0].as_state(), "target": sides[1].as_state()}


def stored_versions(value: Any) -> tuple[SideVersions, SideVersions] | None:
    if not isinstance(value, dict):
        return None
    source, target = SideVersions.from_state(value.get("source")), SideVersions.from_state(value.get("target"))
    return (source, target) if source is not None and target is not None else None


def plan_pass_versions(run: Run, schema: TableSchema, progress: dict, current: tuple[Any, Any]
                       ) -> PassVersions | None:
    """This pass's row versions from the stored progress and both sides' ``current`` ones; None
    when none are kept (option off, keyless table, a server older than 14, a resumed pass that
    began without them). Whether the pass compares changed rows only is ``baseline``."""
    source_now, target_now = current
    if not run.options.trust_row_versions or schema.keyless or source_now is None or target_now is None:
        return None
    if progress.get("status") == "in_progress":
        # A resumed pass keeps the horizons of its first attempt: its chunks were compared after them.
        began = stored_versions(progress.get("versions"))
        if began is None:
            return None
        baseline = stored_versions(progress.get("baseline"))
        return PassVersions(began[0], began[1], baseline if first_problem(baseline, current) is None else None)
    baseline = stored_versions(progress.get("versions")) if progress.get("status") == "done" else None
    return PassVersions(source_now, target_now, baseline if first_problem(baseline, current) is None else None)


def compared_how(run: Run, schema: TableSchema, progress: dict, current: tuple[Any, Any],
                 versions: PassVersions | None, empty: bool) -> dict[str, Any]:
    """The table's ``compared`` and ``compared_reason`` results."""
    if versions is not None and versions.baseline is not None:
        return {"compared": "changed_rows", "compared_reason": None}
    if empty:
        reason = "the target table was empty: loaded"
    elif not run.options.trust_row_versions:
        reason = "trust_row_versions is off"
    elif schema.keyless:
        reason = "the table has no key"
    elif current[0] is None or current[1] is None:
        reason = "row versions need PostgreSQL 14 or later on both sides"
    elif versions is None:
        reason = "the resumed pass began without row versions"
    else:
        recorded = stored_versions((progress.get("baseline") if progress.get("status") == "in_progress"
                                    else progress.get("versions")) if progress.get("status") else None)
        reason = first_problem(recorded, current) or "no complete pass has recorded row versions yet"
    return {"compared": "every_row", "compared_reason": reason}


def first_problem(baseline: tuple[SideVersions, SideVersions] | None, current: tuple[Any, Any]) -> str | None:
    """Why a recorded ``baseline`` cannot be trusted on this pass (source first), or None."""
    return (baseline_problem("source", baseline[0] if baseline else None, current[0])
            or baseline_problem("target", baseline[1] if baseline else None, current[1]))


@dataclass
class PassProgress:
    """What a pass of one table records with each chunk it commits: how far it got, when it
    began, and its row versions (the target transaction committing the chunk added to them)."""

    table: str
    started_at: str
    versions: PassVersions | None = None

    def entries(self, upper: Key | None, last: bool, xid: int | None = None) -> list[tuple[str, str, str]]:
        value: dict[str, Any] = {"status": "done" if last else "in_progress", "completed_through": encode_key(upper),
                                 "run_started_at": self.started_at}
        if self.versions is not None:
            if xid is not None:
                self.versions.target = self.versions.target.with_own([xid])
            value["versions"] = self.versions.as_state()
            if self.versions.baseline is not None and not last:
                value["baseline"] = sides_state(self.versions.baseline)
        return [(self.table, ITEM_CHECKSUM, dumps(value))]

    def record(self, upper: Key | None, last: bool) -> Callable[[pg.Server], list[tuple[str, str, str]]]:
        """The entries for a chunk, made inside the target transaction that commits it."""
        def made(target: pg.Server) -> list[tuple[str, str, str]]:
            return self.entries(upper, last, pg.transaction_id(target) if self.versions is not None else None)
        return made


def run_delta(options: DeltaOptions, check_mode: bool = False,
              after_chunk: Callable[[str, Any], None] | None = None) -> dict:
    """One run of the module: the delta (or the removal) and its result."""
    with older_objects_left_out_of_collection():
        return sync_delta(options, check_mode, after_chunk)


def sync_delta(options: DeltaOptions, check_mode: bool,
               after_chunk: Callable[[str, Any], None] | None) -> dict:
    began = time.monotonic()
    # Asks the target its half of each question put to both main connections at once.
    beside = ThreadPoolExecutor(max_workers=1)
    try:
        source, target = pg.connect_both(options.source, options.target, beside)
    except BaseException:
        beside.shutdown()
        raise
    try:
        if options.state == "absent":
            return remove(options, source, target, check_mode, began)
        tables, schemas = validate(options, source, target, beside)
        state = pg.read_state(target, options.state_schema, options.state_name)
        target.commit()
        run = Run(options=options, check_mode=check_mode, schemas=schemas, state=state, after_chunk=after_chunk)
        run.warnings.extend(target.warnings)
        was_read_only = pg.database_read_only(source)
        freeze: dict[str, Any] = {}
        if options.freeze_source == "read_only" and not was_read_only and not check_mode:
            freeze = pg.freeze_database(source)
            if freeze["sessions_opened_before_freeze"]:
                run.warnings.append(
                    f"source sessions {freeze['sessions_opened_before_freeze']} were opened before the freeze and "
                    "keep default_transaction_read_only=off until they reconnect; stop those clients or end them "
                    "with pg_terminate_backend before the final pass")
        frozen = was_read_only or bool(freeze)
        if not check_mode and not pg.state_table_exists(target, options.state_schema, options.state_name):
            pg.create_state_table(target, options.state_schema, options.state_name)
            run.target_writes += 2
        # Which columns own which sequences, and the source's sequences, asked now: after a slot's
        # decoding the source session reads its catalogs again (the decoding's catalog snapshots
        # invalidated its caches). The source's values are as good now as after the delta: the
        # target's own maximum, read at the end, covers every row the delta brings.
        owned = fix_sequences_columns(source, target, tables, beside) if options.fix_sequences else None
        target.commit()

        slot: dict[str, Any] | None = None
        if options.strategy == "checksum":
            for_each_table(run, tables, sync_by_checksum)
        else:
            slot = sync_logical(run, tables, source, target, frozen)

        # The slot's state on the source and the sequences on the target, at the same moment: the
        # run ends with these.
        _report, sequences = pg.both(
            source, target, partial(finish_report, slot) if slot is not None else (lambda _source: None),
            partial(fix_sequences, run, owned) if owned is not None else (lambda _target: []), beside)

        verified = None
        if options.verify and not check_mode:
            verify(run, tables)
            verified = True
        if slot is not None and frozen and verified and not check_mode:
            finish_logical(run, source, target, slot)
        if slot is not None and slot.get("exists"):
            run.warnings.append(
                f"replication slot {options.slot_name} stays on the source and holds WAL from "
                f"{slot.get('position')} ({slot.get('retained_wal_bytes')} bytes now) until the next run; it is dropped "
                "by the final pass with freeze_source=read_only, or by state=absent")
    finally:
        source.close()
        target.close()
        beside.shutdown()

    changed = run.target_writes > 0 or bool(freeze) or any(c.rows_changed for c in run.counts.values())
    if slot is not None and (slot.get("created") or slot.get("dropped")):
        changed = True
    return {
        "changed": bool(changed),
        "strategy": options.strategy,
        "rows_inserted": sum(c.rows_inserted for c in run.counts.values()),
        "rows_updated": sum(c.rows_updated for c in run.counts.values()),
        "rows_deleted": sum(c.rows_deleted for c in run.counts.values()),
        "tables": {name: table_result(run, name, sequences) for name in tables},
        "sequences": sequences,
        "replication_slot": slot,
        "verified": verified,
        "elapsed_s": round(time.monotonic() - began, 3),
        "target_writes": run.target_writes,
        "source_read_only": frozen,
        "source_frozen_at": _iso(freeze["frozen_at"]) if freeze else None,
        "terminated_sessions": freeze.get("terminated_pids", []) if freeze else [],
        "deletes_seen": True,
        "keyless_tables": sorted(name for name in tables if schemas[name].keyless),
        "warnings": run.warnings,
    }


def table_result(run: Run, name: str, sequences: list[dict]) -> dict:
    result = run.counts.setdefault(name, TableCounts()).as_result()
    result.pop("auto_increment", None)
    if name in run.compared:
        result.update(run.compared[name])
    result["sequences"] = [entry for entry in sequences if entry["table"] == name]
    return result


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat()  # noqa: UP017 - datetime.UTC is 3.11+


# --- validation: everything that can be wrong is found before the first write ---------------

def validate(options: DeltaOptions, source: pg.Server, target: pg.Server, beside: ThreadPoolExecutor
             ) -> tuple[list[str], dict[str, TableSchema]]:
    missing = pg.missing_schemas(source, options.schemas)
    if missing:
        raise InvalidOptions(f"schemas: {', '.join(missing)} not found in source database {options.source.database}; "
                             "fix the schema names", side="source", option="schemas")
    available = [name for name in pg.base_tables(source, options.schemas)
                 if name != f"{options.state_schema}.{options.state_name}"]
    if options.tables:
        unknown = [name for name in options.tables if name not in available]
        if unknown:
            raise InvalidOptions(f"tables: {', '.join(unknown)} not found in source database "
                                 f"{options.source.database} (tables of schemas {', '.join(options.schemas)}; views "
                                 "are not copied, partitions are copied through their partitioned table)",
                                 side="source", option="tables")
        tables = list(options.tables)
    else:
        tables = available
    tables = [name for name in tables if name not in set(options.exclude_tables)]
    if not tables:
        raise InvalidOptions(f"no table to copy: source database {options.source.database} has none left after "
                             "schemas/tables/exclude_tables", side="source", option="tables")
    schema_reader = partial(pg.read_schemas, tables=tables)
    schemas, targets = pg.both(source, target, schema_reader, schema_reader, beside)
    try:
        check_schemas([schemas[name] for name in tables], targets)
    except SchemaDrift as exc:
        # The shared sentences name MySQL's tool for loading a schema.
        problems = [problem.replace("mysqldump --no-data", "pg_dump --schema-only | psql")
                    for problem in exc.details.get("problems", [])]
        raise SchemaDrift("schema drift between source and target, nothing was written: " + "; ".join(problems),
                          side="target", option="tables", problems=problems) from None
    text_keys = [name for name in tables if any(column.data_type in ("text", "varchar", "bpchar", "citext")
                                                for column in schemas[name].key_columns)]
    if text_keys:
        collations = pg.database_collation(source), pg.database_collation(target)
        if collations[0] != collations[1]:
            raise SchemaDrift(f"tables {', '.join(text_keys)} are keyed by text, and the source database sorts text "
                              f"as {collations[0]} but the target as {collations[1]}: chunks would hold different "
                              "rows on each side; create the target database with the source's LC_COLLATE",
                              side="target", option="tables")
    if options.strategy == "logical":
        check_logical_ready(source, options)
    return tables, schemas


def check_logical_ready(source: pg.Server, options: DeltaOptions) -> None:
    wal_level = source.setting("wal_level")
    if wal_level != "logical":
        raise NotReady(f"strategy=logical needs wal_level=logical on the source, which has wal_level={wal_level}: set "
                       "it in postgresql.conf (RDS: rds.logical_replication=1 in the parameter group) and restart the "
                       "source, or use strategy=checksum", side="source", option="strategy", wal_level=wal_level)
    if int(source.setting("max_replication_slots")) < 1:
        raise NotReady("strategy=logical needs max_replication_slots >= 1 on the source (restart needed), or use "
                       "strategy=checksum", side="source", option="strategy")
    allowed = source.query("SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user")
    if not allowed or not allowed[0][0]:
        member = source.query("SELECT pg_has_role(current_user, 'rds_replication', 'member') "
                              "WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rds_replication')")
        if not member or not member[0][0]:
            raise NotReady(f"strategy=logical: source user {options.source.user} may not create replication slots; "
                           "ALTER ROLE ... REPLICATION (RDS: GRANT rds_replication), or use strategy=checksum",
                           side="source", option="strategy")


class TablePair:
    """A worker's own connections: source (autocommit reads) and target (one transaction per chunk)."""

    def __init__(self, run: Run):
        self.run = run
        self.pool = ThreadPoolExecutor(max_workers=1)
        try:
            self.source, self.target = pg.connect_both(run.options.source, run.options.target, self.pool)
        except BaseException:
            self.pool.shutdown()
            raise

    def both(self, on_source: Callable[[pg.Server], Any], on_target: Callable[[pg.Server], Any]) -> tuple:
        answers = pg.both(self.source, self.target, on_source, on_target, self.pool)
        # Ending the target's read transaction keeps it from holding a snapshot between chunks.
        self.target.commit()
        return answers

    def close(self) -> None:
        self.run.target_writes += self.target.writes
        self.pool.shutdown()
        self.source.close()
        self.target.close()

    def __enter__(self):  # typing.Self is 3.11+; modules also import on 3.9
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --- checksum ---------------------------------------------------------------------------------

def checksums(pair: TablePair, schema: TableSchema, chunk: Chunk) -> tuple[ChunkChecksum, ChunkChecksum]:
    def ask(server: pg.Server) -> ChunkChecksum:
        statement, parameters = pg.chunk_checksum_sql(schema, chunk.lower, chunk.upper)
        return ChunkChecksum.from_row(server.query(statement, parameters)[0])
    return pair.both(ask, ask)


def walk_chunks(pair: TablePair, schema: TableSchema, lower: Key | None = None
                ) -> Iterator[tuple[Chunk, ChunkChecksum, ChunkChecksum]]:
    """Every chunk from ``lower`` to the end with both sides' checksums; sizes adapt to ~0.5 s."""
    return tables_walk(schema, pair.run.options.chunk_size, partial(pg.chunk_upper_bound, pair.source, schema),
                       partial(checksums, pair, schema), lower)


class BoundReader:
    """Chunk bounds read ahead on a source connection of their own: the next chunk's upper key is
    found while the current chunk is compared or copied, not before it. A large table's bounds
    come from one sample of its keys (pg.sample_keys), a small one's from an index walk each."""

    def __init__(self, run: Run, schema: TableSchema):
        self.schema = schema
        self.server = pg.Server(run.options.source)
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.sample: pg.KeySample | None = None
        self.sampled = False

    def after(self, lower: Key | None, rows: int) -> Future:
        return self.pool.submit(self.bound_after, lower, rows)

    def bound_after(self, lower: Key | None, rows: int) -> Key | None:
        if not self.sampled:
            self.sample, self.sampled = pg.sample_keys(self.server, self.schema, lower), True
        if self.sample is not None and self.sample.follows(lower):
            return self.sample.after(rows)
        return pg.chunk_upper_bound(self.server, self.schema, lower, rows)

    def close(self) -> None:
        self.pool.shutdown()
        self.server.close()

    def __enter__(self):  # typing.Self is 3.11+; modules also import on 3.9
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def walk_buckets(pair: TablePair, schema: TableSchema, lower: Key | None = None, per_bucket: int = ROWS_PER_BUCKET,
                 ask: Callable[[TablePair, TableSchema, Chunk, Buckets], tuple[Any, Any]] | None = None
                 ) -> Iterator[tuple[Chunk, Buckets, Any, Any]]:
    """Every chunk of a keyed table from ``lower`` to the end with both sides' answers to ``ask``
    (default: bucket sums, see :func:`pg.bucket_digests`) for buckets of ``per_bucket`` rows;
    sizes adapt to ~0.5 s."""
    ask = ask or bucket_sums
    size = pair.run.options.chunk_size or FIRST_CHUNK_ROWS
    index = 0
    with BoundReader(pair.run, schema) as bounds:
        rows, upcoming = size, bounds.after(lower, size)
        while True:
            upper = upcoming.result()
            chunk = Chunk(schema.name, index, lower, upper)
            buckets = pg.chunk_buckets(schema, lower, upper, rows // per_bucket)
            if upper is not None:
                rows, upcoming = size, bounds.after(upper, size)
            began = time.monotonic()
            source_sums, target_sums = ask(pair, schema, chunk, buckets)
            if pair.run.options.chunk_size is None:
                size = next_chunk_size(size, time.monotonic() - began)
            yield chunk, buckets, source_sums, target_sums
            if upper is None:
                return
            lower, index = upper, index + 1


def bucket_sums(pair: TablePair, schema: TableSchema, chunk: Chunk, buckets: Buckets
                ) -> tuple[frozenset[tuple], frozenset[tuple]]:
    def ask(server: pg.Server) -> frozenset[tuple]:
        return pg.bucket_digests(server, schema, chunk.lower, chunk.upper, buckets)
    return pair.both(ask, ask)


def differences(pair: TablePair, schema: TableSchema, lower: Key | None, versions: PassVersions | None = None
                ) -> Iterator[tuple[Chunk, Callable[[TablePair], ChunkPlan] | None]]:
    """Each chunk with what narrows it to its plan (reads only), or None when both sides hold the
    same rows. The narrowing takes the connection pair to read with, which may be another one."""
    if versions is not None and versions.baseline is not None and not schema.keyless:
        yield from differences_since(pair, schema, lower, versions.baseline)
        return
    if schema.keyless:
        for chunk, source_sum, target_sum in walk_chunks(pair, schema):
            yield chunk, (None if source_sum == target_sum else partial(plan_whole, chunk, source_sum, target_sum))
        return
    for chunk, buckets, source_sums, target_sums in walk_buckets(pair, schema, lower):
        yield chunk, (None if source_sums == target_sums else
                      partial(plan_chunk, schema=schema, chunk=chunk, buckets=buckets, source_sums=source_sums,
                              target_sums=target_sums))


def differences_since(pair: TablePair, schema: TableSchema, lower: Key | None,
                      baseline: tuple[SideVersions, SideVersions]
                      ) -> Iterator[tuple[Chunk, Callable[[TablePair], ChunkPlan] | None]]:
    """:func:`differences` of a pass that compares only what changed since ``baseline`` (see
    versions.py): per chunk, both sides' key sums by bucket and their rows new since it. A chunk
    where either side has more new rows than a range copy is worth is compared whole instead."""
    whole_table = new_rows_of_table(pair, schema, baseline) if lower is None else None

    def changed_since(pair: TablePair, schema: TableSchema, chunk: Chunk, buckets: Buckets) -> tuple[Any, Any]:
        limit = max(64, int(RANGE_READ_SHARE * buckets.count * KEY_ROWS_PER_BUCKET))

        def ask(index: int) -> Callable[[pg.Server], tuple[frozenset[tuple], dict[Key, str] | None]]:
            def on(server: pg.Server) -> tuple[frozenset[tuple], dict[Key, str] | None]:
                sums = pg.bucket_key_sums(server, schema, chunk.lower, chunk.upper, buckets)
                if whole_table is not None:
                    found = whole_table[index].within(chunk.lower, chunk.upper)
                    return sums, (found if len(found) <= limit else None)
                then = baseline[index]
                return sums, pg.new_row_hashes(server, schema, chunk.lower, chunk.upper, xid32(then.xmin),
                                               [xid32(xid) for xid in then.own], limit)
            return on
        return pair.both(ask(0), ask(1))

    for chunk, buckets, (source_sums, source_new), (target_sums, target_new) in walk_buckets(
            pair, schema, lower, KEY_ROWS_PER_BUCKET, changed_since):
        if source_new is None or target_new is None:
            digest_buckets = pg.chunk_buckets(schema, chunk.lower, chunk.upper,
                                              bucket_rows(source_sums) // ROWS_PER_BUCKET)
            source_digests, target_digests = bucket_sums(pair, schema, chunk, digest_buckets)
            yield chunk, (None if source_digests == target_digests else
                          partial(plan_chunk, schema=schema, chunk=chunk, buckets=digest_buckets,
                                  source_sums=source_digests, target_sums=target_digests))
            continue
        chosen = differing_buckets(source_sums, target_sums)
        yield chunk, (None if not chosen and not source_new and not target_new else
                      partial(plan_changed_rows, schema=schema, chunk=chunk, buckets=buckets, chosen=chosen,
                              source_new=source_new, target_new=target_new,
                              rows=(bucket_rows(source_sums), bucket_rows(target_sums)),
                              lone=lone_keys(source_sums, target_sums, chosen, buckets)))


class KeyedRows:
    """``{(integer key,): row hash}`` in key order, from which a chunk takes its range."""

    def __init__(self, rows: dict[Key, str]):
        self.keys = sorted(rows)
        self.rows = rows

    def within(self, lower: Key | None, upper: Key | None) -> dict[Key, str]:
        first = 0 if lower is None else bisect_right(self.keys, lower)
        last = len(self.keys) if upper is None else bisect_right(self.keys, upper)
        return {key: self.rows[key] for key in self.keys[first:last]}


def new_rows_of_table(pair: TablePair, schema: TableSchema, baseline: tuple[SideVersions, SideVersions]
                      ) -> tuple[KeyedRows, KeyedRows] | None:
    """Both sides' rows new since ``baseline``, for the whole table in one sequential scan each
    (instead of one range scan per chunk), when the key is one integer column: Python orders
    integers as the server does, so each chunk's share is picked here. None when either side has
    more than WHOLE_TABLE_NEW_ROWS, or the key is of another kind: then each chunk asks."""
    column = schema.column(schema.key[0]) if len(schema.key) == 1 else None
    if column is None or column.data_type not in pg.INTEGER_TYPES:
        return None

    def ask(then: SideVersions) -> Callable[[pg.Server], dict[Key, str] | None]:
        return lambda server: pg.new_row_hashes(server, schema, None, None, xid32(then.xmin),
                                                [xid32(xid) for xid in then.own], WHOLE_TABLE_NEW_ROWS)
    source_new, target_new = pair.both(ask(baseline[0]), ask(baseline[1]))
    if source_new is None or target_new is None:
        return None
    return KeyedRows(source_new), KeyedRows(target_new)


def plan_changed_rows(pair: TablePair, schema: TableSchema, chunk: Chunk, buckets: Buckets, chosen: list[int],
                      source_new: dict[Key, str], target_new: dict[Key, str], rows: tuple[int, int],
                      lone: dict[int, LoneKey] | None = None) -> ChunkPlan:
    """A chunk's plan from the rows new on either side and the buckets whose keys differ.

    The keys of those buckets are listed on both sides: a key on one side only is an insert or a
    delete; a key on both whose rows are old on both is equal (versions.py). A bucket that differs
    by one key its sums name (``lone``) is not listed once the source confirms that key's hash.
    Every new row is compared by hash with the other side's row, which is asked for when not yet
    read."""
    lone = lone or {}
    to_list = [bucket for bucket in chosen if bucket not in lone]

    def listed(buckets_listed: list[int]) -> Callable[[pg.Server], dict[Key, str | None]]:
        def on(server: pg.Server) -> dict[Key, str | None]:
            if not buckets_listed:
                return {}
            # Present, row not read.
            return dict.fromkeys(pg.bucket_keys(server, schema, chunk.lower, chunk.upper, buckets, buckets_listed))
        return on

    def listed_and_hashed(server: pg.Server) -> tuple[dict[Key, str | None], dict[int, int]]:
        hashes = pg.integer_key_hashes(server, [found.key for found in lone.values()]) if lone else {}
        return listed(to_list)(server), hashes

    (source_rows, hashes), target_rows = pair.both(listed_and_hashed, listed(to_list))
    unconfirmed = sorted(bucket for bucket, found in lone.items() if hashes.get(found.key) != found.key_hash)
    if unconfirmed:
        more_source, more_target = pair.both(listed(unconfirmed), listed(unconfirmed))
        source_rows.update(more_source)
        target_rows.update(more_target)
    for bucket, found in lone.items():
        if bucket not in unconfirmed:
            holder = source_rows if found.side == 0 else target_rows
            holder.setdefault((found.key,), None)
    source_rows.update(source_new)
    target_rows.update(target_new)
    ask_source, ask_target = keys_to_ask(source_rows, target_new), keys_to_ask(target_rows, source_new)
    extra_source, extra_target = pair.both(lambda server: pg.row_hashes_of_keys(server, schema, ask_source),
                                           lambda server: pg.row_hashes_of_keys(server, schema, ask_target))
    source_rows.update(extra_source)
    target_rows.update(extra_target)
    changes = plan_row_changes(source_rows, target_rows)
    mode = "range" if len(changes) > RANGE_READ_SHARE * max(1, rows[0]) else "keys"
    return ChunkPlan(chunk, changes, mode, rows[1])


def plan_whole(chunk: Chunk, source_sum: ChunkChecksum, target_sum: ChunkChecksum, pair: TablePair) -> ChunkPlan:
    """A keyless table has no key to narrow by: it is replaced whole."""
    del pair
    return ChunkPlan(chunk, RowChanges(inserts=((),) * source_sum.rows, deletes=((),) * target_sum.rows),
                     "whole", target_sum.rows)


def plan_chunk(pair: TablePair, schema: TableSchema, chunk: Chunk, buckets: Buckets, source_sums: frozenset[tuple],
               target_sums: frozenset[tuple]) -> ChunkPlan:
    """Narrow a differing chunk to its differing buckets, then to their differing rows (reads only)."""
    source_rows = bucket_rows(source_sums)
    if not target_sums:
        return ChunkPlan(chunk, RowChanges(inserts=((),) * source_rows), "empty")
    chosen = differing_buckets(source_sums, target_sums)
    source_hashes, target_hashes = pair.both(
        lambda server: pg.bucket_row_hashes(server, schema, chunk.lower, chunk.upper, buckets, chosen),
        lambda server: pg.bucket_row_hashes(server, schema, chunk.lower, chunk.upper, buckets, chosen))
    changes = plan_row_changes(source_hashes, target_hashes)
    mode = "range" if len(changes) > RANGE_READ_SHARE * max(1, source_rows) else "keys"
    return ChunkPlan(chunk, changes, mode, bucket_rows(target_sums))


def apply_chunk(pair: TablePair, schema: TableSchema, plan: ChunkPlan,
                record: Callable[[pg.Server], list[tuple[str, str, str]]]) -> None:
    """One target transaction: deletes, then the source's rows by COPY, then the progress rows
    (made by ``record`` inside the transaction, which may name it)."""
    target, chunk = pair.target, plan.chunk
    try:
        if plan.mode in ("whole", "range"):
            pg.delete_range(target, schema, chunk.lower, chunk.upper)
            copy_freeing_unique_values(pair, schema, chunk.lower, chunk.upper)
        elif plan.mode == "empty":
            copy_freeing_unique_values(pair, schema, chunk.lower, chunk.upper)
        else:
            stale = list(plan.changes.updates) + list(plan.changes.deletes)
            if stale:
                pg.delete_keys(target, schema, stale)
            copy_freeing_unique_values(pair, schema, keys=list(plan.changes.upserts))
        write_entries(pair, record(target))
    except DeltaError as exc:
        target.rollback()
        raise DeltaError(f"applying {chunk.describe()} failed on the target and was rolled back: {exc}; fix the "
                         "cause and rerun, the run resumes after the last committed chunk",
                         side="target", chunk=chunk.describe()) from exc


def copy_freeing_unique_values(pair: TablePair, schema: TableSchema, lower: Key | None = None,
                               upper: Key | None = None, keys: list[Key] | None = None) -> None:
    """Copy the source's rows of the range (or ``keys``) in. A table with another unique key may
    have a value that moved on the source to a row of this chunk from a row of a later one: the
    target's row of the later chunk still holds it, and the copy would fail the same way on every
    rerun. So, on a unique violation, the rows holding the values are deleted and the copy is made
    again. Such a row differs from the source (the value left it there), so its chunk brings it
    back: later in this pass, or, if the source changed it after its chunk was compared, in the
    next one (which a verify in between reports as a difference)."""
    copy = partial(pg.copy_rows, pair.source, pair.target, schema, lower, upper, keys=keys)
    if not schema.values_can_collide:
        copy()
        return
    copy_again_once_freed(pair.target, copy, partial(pg.free_unique_values, pair.source, pair.target, schema,
                                                     lower, upper, keys))


def copy_again_once_freed(target: pg.Server, copy: Callable[[], Any], free: Callable[[], Any]) -> None:
    """``copy()`` inside a savepoint; on a unique violation, roll back to it, ``free()`` the values
    and copy again."""
    target.execute("SAVEPOINT cutover_copy")
    try:
        copy()
        return
    except DeltaError as exc:
        if not pg.is_unique_violation(exc):
            raise
    target.execute("ROLLBACK TO SAVEPOINT cutover_copy")
    free()
    copy()


def write_entries(pair: TablePair, entries: list[tuple[str, str, str]], durably: bool = False) -> None:
    for table, item, value in entries:
        pg.write_state(pair.target, pair.run.options.state_schema, pair.run.options.state_name, table, item, value)
    if durably:
        pair.target.commit_durably()
    else:
        pair.target.commit()


def load_empty(run: Run, schema: TableSchema, progress: PassProgress) -> TableCounts:
    """An empty target table: every chunk differs, so none is checksummed before its COPY."""
    counts = TableCounts(copied_whole=schema.keyless)
    size = run.options.chunk_size or EMPTY_LOAD_CHUNK_ROWS
    with TablePair(run) as pair:
        if run.check_mode:
            counts.rows_inserted = pg.count_rows(pair.source, schema)
            counts.chunks_checked = counts.chunks_differing = 1
            return counts
        indexes = pg.deferrable_indexes(pair.target, schema)
        if indexes:
            # Dropped with a note of their definitions in one transaction: a run that stops before
            # the end of the load finds the note and builds them when its pass is through.
            pg.drop_indexes(pair.target, indexes)
            write_entries(pair, [(schema.name, ITEM_INDEXES, dumps({"indexes": [list(entry) for entry in indexes]}))])
        lower: Key | None = None
        index = 0
        bounds = None if schema.keyless else BoundReader(run, schema)
        upcoming = None if bounds is None else bounds.after(None, size)
        try:
            while True:
                upper = None if upcoming is None else upcoming.result()
                if bounds is not None and upper is not None:
                    upcoming = bounds.after(upper, size)
                chunk = Chunk(schema.name, index, lower, upper)
                last = upper is None
                try:
                    copied = pg.copy_rows(pair.source, pair.target, schema, lower, upper)
                    write_entries(pair, progress.record(upper, last)(pair.target))
                except DeltaError as exc:
                    pair.target.rollback()
                    raise DeltaError(f"loading {chunk.describe()} failed on the target and was rolled back: {exc}; fix "
                                     "the cause and rerun, the run resumes after the last committed chunk",
                                     side="target", chunk=chunk.describe()) from exc
                counts.rows_inserted += copied
                counts.chunks_checked += 1
                counts.chunks_differing += 1
                counts.differing_chunks.append(chunk)
                if run.after_chunk:
                    run.after_chunk(schema.name, index)
                if last:
                    rebuild_indexes(pair, schema, indexes)
                    return counts
                lower, index = upper, index + 1
        finally:
            if bounds is not None:
                bounds.close()


def rebuild_indexes(pair: TablePair, schema: TableSchema, indexes: Sequence[Sequence[str]]) -> None:
    """Build the indexes a load deferred, and forget the note, in one target transaction."""
    if not indexes:
        return
    try:
        pg.create_indexes(pair.target, indexes)
        pg.delete_state_entry(pair.target, pair.run.options.state_schema, pair.run.options.state_name,
                              schema.name, ITEM_INDEXES)
        pair.target.commit()
    except DeltaError as exc:
        pair.target.rollback()
        raise DeltaError(f"building the indexes of {schema.name} deferred by its load failed: {exc}; fix the cause "
                         "and rerun, the indexes are built at the end of the next pass",
                         side="target", table=schema.name) from exc


def sync_by_checksum(run: Run, schema: TableSchema) -> TableCounts:
    counts = TableCounts()
    progress = run.stored(schema.name, ITEM_CHECKSUM)
    resuming = progress.get("status") == "in_progress"
    with TablePair(run) as pair:
        # Taken before anything is compared: what is committed after them counts as new next time.
        current = pair.both(partial(pg.row_versions, schema=schema), partial(pg.row_versions, schema=schema)) \
            if run.options.trust_row_versions and not schema.keyless else (None, None)
        empty = not resuming and pg.is_empty(pair.target, schema)
        pair.target.commit()
    versions = plan_pass_versions(run, schema, progress, current)
    run.compared[schema.name] = compared_how(run, schema, progress, current, versions, empty)
    record = PassProgress(schema.name, (progress.get("run_started_at") if resuming else None) or _now(), versions)
    if empty:
        return load_empty(run, schema, PassProgress(schema.name, _now(), versions and PassVersions(
            versions.source, versions.target)))
    resume = decode_key(progress.get("completed_through")) if resuming else None
    if resume is not None and not schema.keyless:
        counts.resumed_from = encode_key(resume)
    # The chunks are compared on one connection pair while a second pair narrows and writes the
    # differing chunk before (the comparison of chunk N+1 is the long part, and it runs on both
    # servers while chunk N's few rows are found and copied). Only with no uniqueness besides the
    # chunking key: a copy then touches no row outside its own chunk (it frees no value held by a
    # later one), so a chunk found equal stays equal.
    separate_writer = not schema.keyless and not schema.values_can_collide
    with TablePair(run) as pair, ThreadPoolExecutor(max_workers=1) as settler:
        writer: TablePair | None = None
        pending: Future | None = None
        wrote = False
        finished = True   # the last chunk written marked the pass done
        try:
            for chunk, narrow in differences(pair, schema, None if schema.keyless else resume, versions):
                counts.chunks_checked += 1
                if narrow is None:
                    continue
                if writer is None:
                    # Opened with the first differing chunk: a run with nothing to do opens none.
                    writer = TablePair(run) if separate_writer else pair
                if pending is not None:
                    wrote, finished = settled(run, schema, counts, pending.result(), (wrote, finished))
                pending = settler.submit(settle, writer, schema, chunk, narrow,
                                         record.record(chunk.upper, chunk.upper is None))
                if writer is pair:
                    wrote, finished = settled(run, schema, counts, pending.result(), (wrote, finished))
                    pending = None
            if pending is not None:
                wrote, finished = settled(run, schema, counts, pending.result(), (wrote, finished))
                pending = None
        finally:
            if pending is not None:
                pending.exception()
            if writer is not None and writer is not pair:
                writer.close()
        # A pass that ends on equal chunks still has to say it got through, or the next run would
        # resume after its last differing chunk and never compare the ones before. A pass that
        # compared every row records its row versions even when it wrote nothing else, so that the
        # next one can compare changed rows only; a pass that did and wrote nothing writes nothing.
        first_versions = versions is not None and versions.baseline is None
        if not run.check_mode and ((wrote and not finished) or (not wrote and (resuming or first_versions))):
            write_entries(pair, record.entries(None, True))
        deferred = run.stored(schema.name, ITEM_INDEXES).get("indexes")
        if deferred and not run.check_mode:
            rebuild_indexes(pair, schema, deferred)
    return counts


def settle(pair: TablePair, schema: TableSchema, chunk: Chunk, narrow: Callable[[TablePair], ChunkPlan],
           record: Callable[[pg.Server], list[tuple[str, str, str]]]) -> tuple[ChunkPlan, bool]:
    """Narrow a chunk that may differ and, unless in check mode or its rows turn out equal (a row
    rewritten with the same values is new, not different), apply it with its progress row."""
    plan = narrow(pair)
    applied = bool(plan.changes) and not pair.run.check_mode
    if applied:
        apply_chunk(pair, schema, plan, record)
    return plan, applied


def settled(run: Run, schema: TableSchema, counts: TableCounts, outcome: tuple[ChunkPlan, bool],
            written: tuple[bool, bool]) -> tuple[bool, bool]:
    """Count a settled chunk; returns whether the pass has written, and whether its last write
    was the table's last chunk (which records the pass done)."""
    plan, applied = outcome
    if plan.changes:
        counts.chunks_differing += 1
        counts.differing_chunks.append(plan.chunk)
    counts.rows_inserted += len(plan.changes.inserts)
    counts.rows_updated += len(plan.changes.updates)
    counts.rows_deleted += len(plan.changes.deletes)
    counts.copied_whole = counts.copied_whole or schema.keyless
    if not applied:
        return written
    if run.after_chunk:
        run.after_chunk(schema.name, plan.chunk.index)
    return True, plan.chunk.upper is None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()  # noqa: UP017 - datetime.UTC is 3.11+


# --- logical ----------------------------------------------------------------------------------

def streamable_tables(source: pg.Server, tables: list[str], schemas: dict[str, TableSchema]) -> list[str]:
    """Tables whose UPDATE/DELETE events carry the chunking key: a primary key with the default
    replica identity, or REPLICA IDENTITY FULL. Publishing any other table would make the source
    reject UPDATE and DELETE on it, so those are compared by checksum on every run instead."""
    identities = dict(source.query(
        "SELECT n.nspname || '.' || c.relname, c.relreplident FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname || '.' || c.relname = ANY(%s)", [tables]))
    chosen = []
    for name in tables:
        identity, schema = identities.get(name), schemas[name]
        if (identity == "d" and schema.key_kind == "primary") or (identity == "f" and not schema.keyless):
            chosen.append(name)
    return chosen


def sync_logical(run: Run, tables: list[str], source: pg.Server, target: pg.Server, frozen: bool) -> dict[str, Any]:
    options = run.options
    stored = run.stored(ALL_TABLES, ITEM_LOGICAL)
    streamed = streamable_tables(source, tables, run.schemas)
    others = [name for name in tables if name not in streamed]
    slot = pg.slot_state(source, options.slot_name)
    report: dict[str, Any] = {"name": options.slot_name, "publication": options.publication_name,
                              "created": False, "dropped": False, "streamed_tables": streamed,
                              "checksum_tables": others, "consistent_lsn": stored.get("consistent_lsn"),
                              "position": stored.get("position")}
    if slot is not None and slot.plugin != "pgoutput":
        raise InvalidOptions(f"replication slot {options.slot_name} exists on the source with plugin {slot.plugin}, "
                             "not pgoutput; it is not this module's: choose another slot_name",
                             side="source", option="slot_name")
    if slot is None and (frozen or stored.get("status") == "finished"):
        # The source takes no more writes: a slot would only hold WAL. Compare everything.
        for_each_table(run, tables, sync_by_checksum)
        return report
    if slot is None:
        if stored.get("consistent_lsn"):
            run.warnings.append(f"replication slot {options.slot_name} recorded at {stored.get('consistent_lsn')} is "
                                "gone from the source; a new one was created and every table compared by checksum")
        if run.check_mode:
            report["would_create"] = True
            for_each_table(run, tables, sync_by_checksum)
            return report
        ensure_publication(run, source, streamed)
        consistent = pg.create_slot(source, options.slot_name)
        report.update(created=True, consistent_lsn=consistent, position=consistent)
        stored = {"slot": options.slot_name, "consistent_lsn": consistent, "position": consistent,
                  "tables": streamed, "loaded": False}
        save_logical(run, target, stored)
    elif not run.check_mode and sorted(stored.get("tables") or []) != sorted(streamed):
        ensure_publication(run, source, streamed)
    if not stored.get("position"):
        stored = dict(stored, position=slot.confirmed_flush_lsn if slot else None, loaded=False)
    if not stored.get("loaded", True) or sorted(stored.get("tables") or []) != sorted(streamed):
        # Load (or re-verify) everything the slot did not see from its start: changes committed
        # while the copy runs are in the slot too, and replaying them is idempotent.
        unseen = [name for name in streamed if not stored.get("loaded", True) or name not in (stored.get("tables") or [])]
        for_each_table(run, unseen, sync_by_checksum)
        stored = dict(stored, loaded=True, tables=streamed)
        if not run.check_mode:
            save_logical(run, target, stored)
    position = stream_slot(run, source, streamed, stored)
    report["position"] = pg.lsn_text(position) if position else stored.get("position")
    for_each_table(run, others, sync_by_checksum)
    return report


def finish_report(report: dict[str, Any], source: pg.Server) -> dict[str, Any]:
    """The slot's state after the run, on the report (see sync_delta: it is asked while the target
    fixes the sequences)."""
    slot = pg.slot_state(source, report["name"])
    report["exists"] = slot is not None
    report["retained_wal_bytes"] = slot.retained_wal_bytes if slot else None
    return report


def ensure_publication(run: Run, source: pg.Server, tables: list[str]) -> None:
    name = run.options.publication_name
    current = pg.publication_tables(source, name)
    if not tables:
        return
    if current is None:
        pg.create_publication(source, name, tables)
    elif sorted(current) != sorted(tables):
        pg.alter_publication(source, name, tables)


def save_logical(run: Run, target: pg.Server, value: dict) -> None:
    pg.write_state(target, run.options.state_schema, run.options.state_name, ALL_TABLES, ITEM_LOGICAL, dumps(value))
    target.commit()
    run.target_writes += 1
    run.state[(ALL_TABLES, ITEM_LOGICAL)] = dumps(value)


def stream_slot(run: Run, source: pg.Server, streamed: list[str], stored: dict) -> int:
    """Apply the slot's transactions up to now, in order; each batch commits with its position."""
    options = run.options
    if not streamed:
        return pg.lsn_number(stored.get("position"))
    end = pg.current_lsn(source)
    position = pg.lsn_number(stored.get("position"))
    decoder = Decoder({name: run.schemas[name].key for name in streamed})
    for name in streamed:
        run.counts.setdefault(name, TableCounts())
    limit = PEEK_CHANGES if not run.check_mode else 2 ** 31 - 1
    last_reached = 0
    with ThreadPoolExecutor(max_workers=1) as opener:
        # The apply's connections open while the server decodes the slot.
        pair_ready = None if run.check_mode else opener.submit(open_apply, run, streamed)
        try:
            while True:
                apply = SlotApply(pair_ready) if pair_ready is not None else None
                try:
                    batch, reached, exhausted = peek_batch(run, source, decoder, end, limit, position, apply)
                    if reached <= last_reached:
                        break
                    last_reached = reached
                    count_batch(run, batch)
                    if apply is None:
                        break
                    if batch.tables:
                        apply.commit(batch, dict(stored, position=pg.lsn_text(max(reached, position))))
                finally:
                    if apply is not None:
                        apply.close()
                pg.advance_slot(source, options.slot_name, pg.lsn_text(reached))
                position = max(position, reached)
                if exhausted:
                    break
        finally:
            if pair_ready is not None and pair_ready.exception() is None:
                # Closed even when the first peek failed; a failed open has nothing to close.
                pair_ready.result().close()
    return position


def peek_batch(run: Run, source: pg.Server, decoder: Decoder, end: str, limit: int, position: int,
               apply: SlotApply | None) -> tuple[Transaction, int, bool]:
    """One peek: its transactions past ``position`` as one batch (``apply`` starts on their keys as
    they are decoded), the position it reached, and whether it reached ``end``."""
    fed = decoder.messages
    batch = Transaction()
    reached = 0
    changes = pg.stream_changes(source, run.options.slot_name, run.options.publication_name, end, limit)
    for transaction in decoder.feed(changes, tick=APPLY_SLICE_KEYS if apply is not None else 0):
        if transaction is None:
            # Inside a long transaction: start on the keys decoded so far. One whose commit lies
            # at or before ``position`` may be a batch applied before a crash; its keys wait for
            # the COMMIT, where it is skipped.
            opened = decoder.open_transaction
            if apply is not None and opened is not None and opened.commit_lsn >= position:
                apply.take_keys(decoder.take_fresh())
            continue
        reached = max(reached, transaction.end_lsn)
        # A batch committed on the target before a crash, with the slot not yet advanced, comes
        # again: its position is already stored, so it is skipped, not replayed.
        if transaction.end_lsn <= position:
            continue
        if apply is not None:
            apply.take(transaction)
        merge(batch, transaction)
    exhausted = decoder.messages - fed < limit
    if exhausted:
        # The peek stopped at the end, not at the limit: every transaction committed before it was
        # in this peek, so the slot can be confirmed up to the end (its WAL then no longer held, nor
        # decoded again by the next run).
        reached = max(reached, pg.lsn_number(end))
    return batch, reached, exhausted


@dataclass
class ApplyConnections:
    """The apply's own connections, and the key columns' types (keys arrive from the slot as text).

    ``second`` is a second target connection for the slices of tables that can share the work (see
    :class:`SlotApply`), or None when no streamed table can."""
    pair: TablePair
    types: dict[str, dict[str, str]]
    second: pg.Server | None = None

    def shares_slices(self, schema: TableSchema) -> bool:
        return self.second is not None and not schema.values_can_collide

    def close(self) -> None:
        if self.second is not None:
            self.pair.run.target_writes += self.second.writes
            self.second.close()
        self.pair.close()


def open_apply(run: Run, streamed: list[str]) -> ApplyConnections:
    pair = TablePair(run)
    try:
        connections = ApplyConnections(pair, pg.key_types(pair.source, streamed))
        # A session whose foreign keys are on could wait for a row the other one holds.
        if pair.target.triggers_off and any(not run.schemas[name].values_can_collide for name in streamed):
            try:
                connections.second = pg.Server(run.options.target, autocommit=False, role="write")
            except ConnectionFailed as exc:
                # A target at its connection limit still gets the delta, on one session.
                run.warnings.append(f"target: no second session for applying slot changes ({exc}); they are "
                                    "applied on one")
        return connections
    except DeltaError:
        pair.close()
        raise


def count_batch(run: Run, batch: Transaction) -> None:
    for name, changes in batch.tables.items():
        counts = run.counts[name]
        counts.rows_inserted += changes.inserted
        counts.rows_updated += changes.updated
        counts.rows_deleted += changes.deleted
        counts.copied_whole = counts.copied_whole or changes.whole_table


class SlotApply:
    """One peek's target transaction, built while the peek is decoded.

    Keys are taken as soon as they are decoded (an open transaction's keys are committed ones, see
    pgoutput), in slices of APPLY_SLICE_KEYS: the source reads the slice's rows while the target
    deletes its keys, then the target copies the rows in. Deleting each touched key and copying
    back the source's row, if it still has one, is the net effect of every event on that key,
    whatever their order. A row read before the peek ends is as good as one read after: it is read
    after its change committed, and whatever changed it since is in the slot for the next batch.
    A key met again would only be replaced again; it is taken once, to save the work. The position
    is stored, and the transaction committed, when the peek has ended.

    The target's deletes and index inserts are the longest part of a delta, so every other slice
    of a table goes to a second target connection when the two cannot wait on each other: the
    slices' keys are disjoint, the sessions' foreign keys are off, and the table has no uniqueness
    besides its chunking key: no other unique key, unique index on an expression or with a
    predicate, or exclusion constraint (a value moving between two rows whose slices are on
    different connections would make one wait for the other's commit, which comes only after every
    slice: a wait for ever). The second connection commits first,
    the position after: a crash in between leaves its slices applied without the position, and the
    rerun replays them, which replacing keys makes harmless.
    """

    def __init__(self, pair_ready: Future):
        self.pair_ready = pair_ready
        self.pending: dict[str, list[Key]] = {}
        self.taken: dict[str, set[Key]] = {}
        self.whole: set[str] = set()
        # Each target connection's statements, in order, on a thread of their own; the source's
        # reads on the pair's pool thread.
        self.writer = ThreadPoolExecutor(max_workers=1)
        self.second_writer = ThreadPoolExecutor(max_workers=1)
        self.shared_slices = 0
        self.started: list[Future] = []
        self.committed = False

    def take(self, transaction: Transaction) -> None:
        """Start on the keys of a committed ``transaction`` not taken yet; a table it truncated
        (or whose keys it could not name) is reloaded whole at the commit instead."""
        for table, changes in transaction.tables.items():
            if changes.whole_table:
                self.whole.add(table)
            self.take_table_keys(table, changes.keys)

    def take_keys(self, fresh: Iterable[tuple[str, Key]]) -> None:
        """Start on ``(table, key)`` pairs decoded in an open transaction."""
        by_table: dict[str, list[Key]] = {}
        for table, key in fresh:
            by_table.setdefault(table, []).append(key)
        for table, keys in by_table.items():
            self.take_table_keys(table, keys)

    def take_table_keys(self, table: str, keys: Iterable[Key]) -> None:
        if table in self.whole:
            return
        taken = self.taken.setdefault(table, set())
        pending = self.pending.setdefault(table, [])
        for key in keys:
            if key not in taken:
                taken.add(key)
                pending.append(key)
        if self.deletes_first(table):
            return
        while len(pending) >= APPLY_SLICE_KEYS:
            self.start(table, pending[:APPLY_SLICE_KEYS])
            del pending[:APPLY_SLICE_KEYS]

    def deletes_first(self, table: str) -> bool:
        """Whether the table has uniqueness besides its chunking key (another unique key, a unique
        index on an expression or with a predicate, an exclusion constraint): its keys then wait for the
        peek's end, and every one of them is deleted before any row is copied in. A value that moved
        to a row met earlier in the peek would otherwise arrive while the target's row that held it
        is still there, and fail the same way on every rerun, the keys coming in the same order."""
        return self.pair_ready.result().pair.run.schemas[table].values_can_collide

    def start_deletes_first(self, table: str, keys: list[Key]) -> None:
        if not keys or table in self.whole:
            return
        connections = self.pair_ready.result()
        schema = connections.pair.run.schemas[table]
        slices = [keys[start:start + APPLY_SLICE_KEYS] for start in range(0, len(keys), APPLY_SLICE_KEYS)]
        for keys_slice in slices:
            self.started.append(self.writer.submit(pg.delete_slot_keys, connections.pair.target, schema,
                                                   connections.types[table], keys_slice))
        for keys_slice in slices:
            self.start(table, keys_slice, deleted=True)

    def start(self, table: str, keys: list[Key], deleted: bool = False) -> None:
        """Read the source's rows of ``keys`` and replace them on the target (only copy them in
        when they are ``deleted`` there already)."""
        if not keys or table in self.whole:
            return
        connections = self.pair_ready.result()
        pair, types = connections.pair, connections.types[table]
        schema = pair.run.schemas[table]
        rows = pair.pool.submit(pg.read_slot_rows, pair.source, schema, types, keys)
        self.started.append(rows)
        target, writer = pair.target, self.writer
        if connections.shares_slices(schema):
            self.shared_slices += 1
            if self.shared_slices % 2 == 0:
                target, writer = connections.second, self.second_writer
        if deleted:
            self.started.append(writer.submit(copy_slot_rows_freeing_unique_values, pair, schema, keys, rows))
        else:
            self.started.append(writer.submit(replace_keys, target, schema, types, keys, rows))

    def commit(self, batch: Transaction, stored: dict) -> None:
        """Finish the slices, reload whole tables, store the position, commit."""
        for table, keys in self.pending.items():
            if self.deletes_first(table):
                self.start_deletes_first(table, keys)
            else:
                self.start(table, keys)
        self.pending.clear()
        connections = self.pair_ready.result()
        pair, target = connections.pair, connections.pair.target
        try:
            self.finish_started()
            if connections.second is not None:
                # Before a whole table is reloaded: that table's slices on it must be visible.
                connections.second.commit()
            for table in batch.tables:
                if table in self.whole:
                    pg.delete_range(target, pair.run.schemas[table], None, None)
                    pg.copy_rows(pair.source, target, pair.run.schemas[table])
            # The slot is advanced past this batch next: a commit a target crash could still lose
            # (write sessions commit asynchronously) would lose changes the slot no longer holds.
            # The flush also covers the second session's commit, which comes earlier in the WAL.
            write_entries(pair, [(ALL_TABLES, ITEM_LOGICAL, dumps(stored))], durably=True)
        except DeltaError as exc:
            target.rollback()
            raise DeltaError(f"applying slot changes up to {stored['position']} failed and the target was rolled back: "
                             f"{exc}; fix the cause and rerun, it resumes from the stored position",
                             side=exc.side or "target") from exc
        self.committed = True
        pair.run.state[(ALL_TABLES, ITEM_LOGICAL)] = dumps(stored)
        if pair.run.after_chunk:
            pair.run.after_chunk("logical", stored["position"])

    def finish_started(self) -> None:
        """Wait for every started read and write (no connection is left mid-statement), then
        raise the first failure."""
        wait(self.started)
        for future in self.started:
            future.result()

    def close(self) -> None:
        """After the commit, or after a failure: the target's work so far is rolled back."""
        try:
            if not self.committed and self.started:
                wait(self.started)
                connections = self.pair_ready.result()
                connections.pair.target.rollback()
                if connections.second is not None:
                    connections.second.rollback()
        finally:
            self.writer.shutdown()
            self.second_writer.shutdown()


def replace_keys(target: pg.Server, schema: TableSchema, types: dict[str, str], keys: list[Key],
                 rows: Future) -> None:
    """Delete ``keys`` on the target, then copy in the source's rows of them being read by ``rows``."""
    pg.delete_slot_keys(target, schema, types, keys)
    copy_slot_rows(target, schema, rows)


def copy_slot_rows(target: pg.Server, schema: TableSchema, rows: Future) -> None:
    pg.write_copy_data(target, schema, rows.result())


def copy_slot_rows_freeing_unique_values(pair: TablePair, schema: TableSchema, keys: list[Key], rows: Future) -> None:
    """Copy in the rows of ``keys`` of a table with another unique key, their keys deleted already
    (SlotApply.start_deletes_first). A row is read "now": the source may have moved a value to it
    from a row whose own change came after the peek's end, so the target's row still holds it. On
    a unique violation the target rows holding the incoming values are deleted, as
    copy_freeing_unique_values does, and the copy is made again. Their change is in the slot past
    this batch's position, so the next run brings them back."""
    target = pair.target

    def free() -> None:
        # The values are read on the pair's pool thread, which the source connection belongs to;
        # this writer thread waits, so the target connection is used by one thread at a time.
        pair.pool.submit(pg.free_unique_values, pair.source, target, schema, None, None, keys).result()

    copy_again_once_freed(target, partial(copy_slot_rows, target, schema, rows), free)


def finish_logical(run: Run, source: pg.Server, target: pg.Server, report: dict[str, Any]) -> None:
    """The source is frozen and the target verified equal: the slot has nothing left to give."""
    dropped = pg.drop_slot(source, run.options.slot_name)
    pg.drop_publication(source, run.options.publication_name)
    stored = dict(run.stored(ALL_TABLES, ITEM_LOGICAL), status="finished")
    if dropped or run.stored(ALL_TABLES, ITEM_LOGICAL).get("status") != "finished":
        save_logical(run, target, stored)
    report.update(dropped=dropped, exists=False, retained_wal_bytes=None)


def remove(options: DeltaOptions, source: pg.Server, target: pg.Server, check_mode: bool, began: float) -> dict:
    """state=absent: the slot, the publication and the state table go; copied rows stay."""
    slot = pg.slot_state(source, options.slot_name)
    publication = pg.publication_tables(source, options.publication_name) is not None
    table = pg.state_table_exists(target, options.state_schema, options.state_name)
    target.commit()
    if not check_mode:
        if slot is not None:
            if slot.active:
                raise InvalidOptions(f"replication slot {options.slot_name} is in use by another session on the "
                                     "source; stop that consumer and rerun", side="source", option="slot_name")
            pg.drop_slot(source, options.slot_name)
        if publication:
            pg.drop_publication(source, options.publication_name)
        if table:
            # Indexes a stopped load deferred are noted only here: build them before the note goes.
            for (_table, item), value in pg.read_state(target, options.state_schema, options.state_name).items():
                if item == ITEM_INDEXES:
                    pg.create_indexes(target, loads(value)["indexes"])
            target.write(f"DROP TABLE {pg.quote(options.state_schema)}.{pg.quote(options.state_name)}")
            target.commit()
    return {"changed": bool(slot or publication or table), "strategy": options.strategy,
            "replication_slot": {"name": options.slot_name, "dropped": slot is not None, "exists": False,
                                 "retained_wal_bytes": slot.retained_wal_bytes if slot else None},
            "publication_dropped": publication, "state_table_dropped": table,
            "elapsed_s": round(time.monotonic() - began, 3), "warnings": []}


# --- sequences and verify ---------------------------------------------------------------------

def plan_sequence_next(source_next: int | None, target_max: int | None, increment: int) -> int:
    """The value the target's next ``nextval`` must return: past the source's and past every key."""
    candidates = [1 if increment > 0 else -1]
    if source_next is not None:
        candidates.append(source_next)
    if target_max is not None:
        candidates.append(target_max + increment)
    return max(candidates)


SequenceColumns = dict[tuple[str, str], str]


@dataclass
class OwnedSequences:
    """Both sides' ``{(table, column): sequence}`` of the copied tables, and the source's states."""
    source_columns: SequenceColumns
    target_columns: SequenceColumns
    source_states: dict[str, pg.SequenceState]


def fix_sequences_columns(source: pg.Server, target: pg.Server, tables: list[str], beside: ThreadPoolExecutor
                          ) -> OwnedSequences:
    def on_source(server: pg.Server) -> tuple[SequenceColumns, dict[str, pg.SequenceState]]:
        columns = pg.column_sequences(server, tables)
        return columns, pg.sequence_states(server, list(columns.values()))

    (source_columns, source_states), target_columns = pg.both(
        source, target, on_source, partial(pg.column_sequences, tables=tables), beside)
    return OwnedSequences(source_columns, target_columns, source_states)


def fix_sequences(run: Run, owned: OwnedSequences, target: pg.Server) -> list[dict]:
    """Every target sequence in ``owned`` set past the source's value and the target's maximum;
    asks the target only (the source's values were read with ``owned``)."""
    source_map, source_states = owned.source_columns, owned.source_states
    columns = sorted(owned.target_columns.items())
    # Two statements for all of them (see pg.SEQUENCES_PER_STATEMENT).
    target_states = pg.sequence_states(target, [sequence for _column, sequence in columns])
    target_maxes = pg.max_values(target, [column for column, _sequence in columns])
    planned: list[tuple[str, str, str, int | None, int | None]] = []
    wanted: dict[str, int] = {}
    past_maximum: list[str] = []
    for (table, column), sequence in columns:
        current = target_states[sequence]
        if current.increment < 0:
            run.warnings.append(f"sequence {sequence} counts down (increment {current.increment}); left as it is")
            continue
        source_state = source_states.get(source_map.get((table, column), ""))
        source_next = source_state.next_value if source_state else None
        target_max = target_maxes[(table, column)]
        next_value = plan_sequence_next(source_next, target_max, current.increment)
        if next_value > current.max_value:
            past_maximum.append(f"sequence {sequence} ({table}.{column}) must continue at {next_value}, past its "
                                f"MAXVALUE {current.max_value} on the target")
        # A sequence feeding several columns goes past all of them.
        wanted[sequence] = max(wanted.get(sequence, next_value), next_value)
        planned.append((table, column, sequence, source_next, target_max))
    if past_maximum:
        raise DeltaError("; ".join(past_maximum) + ": ALTER SEQUENCE ... MAXVALUE there and rerun; no sequence "
                         "was changed", side="target", option="fix_sequences")
    moves = {sequence: value for sequence, value in wanted.items() if target_states[sequence].next_value < value}
    if moves and not run.check_mode:
        pg.set_sequences_next(target, moves)
        run.target_writes += len(moves)
    target.commit()
    report = []
    for table, column, sequence, source_next, target_max in planned:
        before = target_states[sequence].next_value
        after = moves.get(sequence, before)
        report.append({"table": table, "column": column, "sequence": sequence, "source_next": source_next,
                       "target_max": target_max, "before": before, "after": after, "changed": after != before})
    return report


def verify(run: Run, tables: list[str]) -> None:
    def differing_chunks(run: Run, schema: TableSchema) -> list[Chunk]:
        counts = run.counts.setdefault(schema.name, TableCounts())
        # A checksum pass that walked the whole table compares again only the chunks it changed.
        recheck_only = run.options.strategy == "checksum" and counts.resumed_from is None
        with TablePair(run) as pair:
            chunks: list[tuple[Chunk, Any, Any]]
            if schema.keyless or (recheck_only and not counts.differing_chunks):
                chunks = ([(chunk, *checksums(pair, schema, chunk)) for chunk in counts.differing_chunks]
                          if recheck_only else list(walk_chunks(pair, schema)))
            elif recheck_only:
                chunks = [(chunk, *bucket_sums(pair, schema, chunk, pg.chunk_buckets(
                    schema, chunk.lower, chunk.upper, VERIFY_BUCKETS))) for chunk in counts.differing_chunks]
            else:
                chunks = [(chunk, source_sums, target_sums)
                          for chunk, _buckets, source_sums, target_sums in walk_buckets(pair, schema)]
        return [chunk for chunk, source_sum, target_sum in chunks if source_sum != target_sum]

    verify_tables(run, tables, differing_chunks)
