"""Benchmark: postgresql_delta_apply's strategies against a pg_dump | pg_restore reload.

    .venv/bin/python benchmarks/postgresql_delta.py [--rows N] [--quick]

Needs the lab's PostgreSQL pair (tests/lab/pglab up). One run:

1. a table of ``--rows`` rows (default 2,000,000, about 300 MB with its three secondary indexes)
   is generated on the old server;
2. initial load: ``strategy=logical`` into an empty target (COPY by chunk, slot created), and
   ``pg_dump -Fc | pg_restore`` into another empty database (the reload), timed;
3. a first ``strategy=checksum`` pass on the restored copy: it compares every row (nothing
   differs) and records the row versions later passes start from (``trust_row_versions``);
4. 1% churn on the source (half updates, a quarter inserts, a quarter deletes);
5. delta: ``strategy=logical`` on the first target and ``strategy=checksum`` on the restored
   copy, each with ``verify=false``, against a second full reload; every target is then compared
   with the source. Two no-op reruns follow: ``checksum`` as it runs by default (rows changed
   since the last pass only) and with ``trust_row_versions=false`` (every row compared, what a
   full verify costs).

Every timed step starts once no autovacuum worker runs on either server (see ``settle``): the
vacuum and analyze that PostgreSQL starts after a load, a restore or the churn would otherwise
land, by chance, in whichever step runs next, on the same two cores.

The default size runs in about 3-4 minutes on the lab's 2 cores; ``--quick`` uses 200,000 rows.
Ends with one line ``bench: postgresql_delta key=value ...``.
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "lab"))
sys.path.insert(0, str(REPO / "tests"))
# Imported for its side effect: it makes ansible_collections.cutover.migration importable.
import conftest  # noqa: E402,F401  # pylint: disable=unused-import
import pglab  # noqa: E402

from ansible_collections.cutover.migration.plugins.module_utils.pg_delta.options import delta_options  # noqa: E402
from ansible_collections.cutover.migration.plugins.module_utils.pg_delta.run import run_delta  # noqa: E402

OLD = {"host": pglab.SERVERS["old"], "port": pglab.PORT, "user": pglab.USER, "password": pglab.PASSWORD}
NEW = {"host": pglab.SERVERS["new"], "port": pglab.PORT, "user": pglab.USER, "password": pglab.PASSWORD}

SCHEMA = """
CREATE TABLE accounts (
  id bigserial PRIMARY KEY,
  owner_id int NOT NULL,
  email text NOT NULL,
  status text NOT NULL,
  balance numeric(14, 2),
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  note text
);
CREATE INDEX accounts_owner ON accounts (owner_id);
CREATE INDEX accounts_email ON accounts (email);
CREATE INDEX accounts_updated ON accounts (updated_at);
"""


def connect(server: dict, database: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(host=server["host"], port=server["port"], user=server["user"], password=server["password"],
                           dbname=database, autocommit=True)


def create_database(server: dict, name: str, schema: str | None = SCHEMA) -> None:
    with connect(server) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    if schema:
        with connect(server, name) as connection:
            connection.execute(schema)


def drop_database(server: dict, name: str) -> None:
    with connect(server) as connection:
        for (slot,) in connection.execute("SELECT slot_name FROM pg_replication_slots WHERE database = %s",
                                          [name]).fetchall():
            connection.execute("SELECT pg_drop_replication_slot(%s)", [slot])
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def generate(database: str, rows: int) -> None:
    with connect(OLD, database) as connection:
        connection.execute(
            "INSERT INTO accounts (owner_id, email, status, balance, created_at, updated_at, note) "
            "SELECT n %% 50000, 'user' || n || '@example.com', (ARRAY['active','closed','frozen'])[1 + n %% 3], "
            "(n %% 1000000) / 100.0, timestamptz '2020-01-01' + n * interval '1 second', "
            "timestamptz '2024-01-01' + n * interval '1 second', "
            "CASE WHEN n %% 7 = 0 THEN NULL ELSE md5(n::text) || ' note ' || n END "
            "FROM generate_series(1, %s) AS n", [rows])
        connection.execute("ANALYZE accounts")


def churn(database: str, rows: int) -> int:
    """1% of the rows: half updated, a quarter inserted, a quarter deleted."""
    changed = max(4, rows // 100)
    with connect(OLD, database) as connection:
        connection.execute("UPDATE accounts SET status = 'churned', balance = balance + 1, updated_at = now() "
                           "WHERE id %% %s = 1", [rows // (changed // 2)])
        connection.execute("DELETE FROM accounts WHERE id %% %s = 2", [rows // (changed // 4)])
        connection.execute("INSERT INTO accounts (owner_id, email, status, balance, created_at, updated_at, note) "
                           "SELECT n, 'late' || n || '@example.com', 'active', 0, now(), now(), 'late' "
                           "FROM generate_series(1, %s) AS n", [changed // 4])
    return changed


def digest(server: dict, database: str) -> tuple:
    with connect(server, database) as connection:
        return tuple(connection.execute(
            "SELECT count(*), sum(hashtext(a::text)::bigint), max(id) FROM accounts AS a").fetchone())


def reload(source_db: str, target_db: str) -> float:
    """pg_dump -Fc | pg_restore into a fresh database: what a cutover without a delta does."""
    bin_dir = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump"))[-1]).parent
    drop_database(NEW, target_db)
    settle()
    began = time.monotonic()
    create_database(NEW, target_db, schema=None)
    env = dict(os.environ, PGPASSWORD=pglab.PASSWORD)
    dump = subprocess.Popen([str(bin_dir / "pg_dump"), "-Fc", "-Z0", "-h", OLD["host"], "-U", OLD["user"], source_db],
                            stdout=subprocess.PIPE, env=env)
    subprocess.run([str(bin_dir / "pg_restore"), "--no-owner", "-h", NEW["host"], "-U", NEW["user"], "-d", target_db],
                   stdin=dump.stdout, check=True, env=env)
    dump.wait()
    if dump.returncode:
        raise SystemExit("pg_dump failed")
    return time.monotonic() - began


def settle(limit_s: float = 120.0) -> float:
    """Wait until no autovacuum worker runs on either server, so that the maintenance one step
    started (a 2,000,000-row load or restore is vacuumed and analyzed) is not timed as part of the
    next; seconds waited."""
    began = time.monotonic()
    while time.monotonic() - began < limit_s:
        busy = 0
        for server in (OLD, NEW):
            with connect(server) as connection:
                busy += connection.execute("SELECT count(*) FROM pg_stat_activity "
                                           "WHERE backend_type = 'autovacuum worker'").fetchone()[0]
        if not busy:
            break
        time.sleep(0.2)
    waited = time.monotonic() - began
    if waited > 0.5:
        print(f"  (waited {waited:.1f} s for autovacuum to finish)", flush=True)
    return waited


def module_run(source_db: str, target_db: str, **params) -> tuple[float, dict]:
    options = delta_options({"source": dict(OLD, database=source_db, sslmode="disable"),
                             "target": dict(NEW, database=target_db, sslmode="disable"), **params})
    settle()
    began = time.monotonic()
    result = run_delta(options)
    return time.monotonic() - began, result


def moved(result: dict) -> int:
    return result["rows_inserted"] + result["rows_updated"] + result["rows_deleted"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--rows", type=int, default=int(os.environ.get("BENCH_ROWS", 2_000_000)))
    parser.add_argument("--quick", action="store_true", help="200,000 rows")
    args = parser.parse_args()
    rows = 200_000 if args.quick else args.rows
    tag = uuid.uuid4().hex[:6]
    names = ("src", "logical", "checksum", "reload")
    source, logical_db, checksum_db, reload_db = (f"bench_{name}_{tag}" for name in names)
    create_database(OLD, source)
    create_database(NEW, logical_db)
    try:
        began = time.monotonic()
        generate(source, rows)
        print(f"generated {rows} rows in {time.monotonic() - began:.1f} s", flush=True)

        load_s, load = module_run(source, logical_db, strategy="logical")
        print(f"initial load (strategy=logical, COPY by chunk + verify): {load_s:.1f} s", flush=True)
        restore_s = reload(source, checksum_db)
        print(f"initial pg_dump | pg_restore: {restore_s:.1f} s", flush=True)
        assert digest(OLD, source) == digest(NEW, logical_db) == digest(NEW, checksum_db)
        first_s, first = module_run(source, checksum_db, strategy="checksum", verify=False)
        print(f"first checksum pass after the restore (every row compared): {first_s:.2f} s, {moved(first)} rows",
              flush=True)
        assert moved(first) == 0

        changed = churn(source, rows)
        logical_s, logical = module_run(source, logical_db, strategy="logical", verify=False)
        print(f"delta strategy=logical: {logical_s:.2f} s, {moved(logical)} row events", flush=True)
        checksum_s, checksum = module_run(source, checksum_db, strategy="checksum", verify=False)
        print(f"delta strategy=checksum: {checksum_s:.2f} s, {moved(checksum)} rows", flush=True)
        reload_s = reload(source, reload_db)
        print(f"delta by reload (pg_dump | pg_restore): {reload_s:.1f} s", flush=True)
        expected = digest(OLD, source)
        for name in (logical_db, checksum_db, reload_db):
            assert digest(NEW, name) == expected, f"{name} differs from the source"
        noop_s, noop = module_run(source, checksum_db, strategy="checksum")
        verify_s, verify = module_run(source, checksum_db, strategy="checksum", trust_row_versions=False)
        for result in (noop, verify):
            assert result["changed"] is False and result["verified"] is True and moved(result) == 0

        sequence = next(entry for entry in logical["sequences"] if entry["table"] == "public.accounts")
        table = [
            ("initial load, strategy=logical", load_s, moved(load)),
            ("initial load, pg_dump | pg_restore", restore_s, rows),
            ("first checksum pass (every row)", first_s, moved(first)),
            ("delta, strategy=logical", logical_s, moved(logical)),
            ("delta, strategy=checksum", checksum_s, moved(checksum)),
            ("delta, pg_dump | pg_restore reload", reload_s, expected[0]),
            ("no-op rerun, checksum", noop_s, 0),
            ("no-op rerun, checksum, every row", verify_s, 0),
        ]
        print(f"\n{rows} rows, {changed} changed on the source (1%)\n")
        print(f"{'what':<40} {'seconds':>9} {'rows moved':>11} {'reload/this':>12}")
        for name, seconds, count in table:
            print(f"{name:<40} {seconds:>9.2f} {count:>11} {reload_s / seconds:>11.1f}x")
        print(f"\nsequence public.accounts_id_seq after the logical delta: {sequence['before']} -> {sequence['after']} "
              f"(source next {sequence['source_next']}, target max {sequence['target_max']})")
        print(f"bench: postgresql_delta rows={rows} churn={changed} initial_load_s={load_s:.2f} "
              f"pg_restore_initial_s={restore_s:.2f} initial_vs_restore={restore_s / load_s:.2f} "
              f"logical_s={logical_s:.2f} checksum_s={checksum_s:.2f} reload_s={reload_s:.2f} "
              f"logical_speedup={reload_s / logical_s:.1f} checksum_speedup={reload_s / checksum_s:.1f} "
              f"first_pass_s={first_s:.2f} noop_s={noop_s:.2f} full_verify_s={verify_s:.2f} "
              f"full_compare_speedup={reload_s / verify_s:.1f} logical_rows={moved(logical)} checksum_rows={moved(checksum)}")
    finally:
        drop_database(OLD, source)
        for name in (logical_db, checksum_db, reload_db):
            drop_database(NEW, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
