"""mysql_delta_apply against pt-table-sync and mysqldump | mysql, on the lab's two MariaDB servers.

    .venv/bin/python benchmarks/mysql_delta.py [--rows N] [--quick]

One table (``--rows``, default 2,000,000, ~300 MB with three secondary indexes) is generated on
the old server with MariaDB's ``seq_1_to_N``; then 1% churn (0.5% updates, 0.25% inserts, 0.25%
deletes). Timed: the initial load by the ``checksum`` strategy into an empty target vs
``mysqldump | mysql``; the delta by ``checksum``, by ``binlog``, by ``pt-table-sync --execute``
and by a full ``mysqldump | mysql`` reload, each into its own copy of the pre-churn target.
The deltas run with ``verify: false``, as neither pt-table-sync nor the reload checks its work;
a whole-table ``verify`` is timed on a line of its own. ``binlog_vs_fastest_reload`` divides the
faster of the two ``mysqldump | mysql`` runs (the same work) by the binlog time: the other tools
share the machine too, and one slowed run should not flatter the ratio.
``--quick`` (or MYSQL_DELTA_BENCH_ROWS) uses 200,000 rows. Needs the lab up (tests/lab/labctl up).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pymysql

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
# Imported for its side effect: it makes ansible_collections.cutover.migration importable.
import conftest  # noqa: E402,F401  # pylint: disable=unused-import

from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta import apply  # noqa: E402
from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.apply import run_delta  # noqa: E402
from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.options import delta_options  # noqa: E402

TABLE = """CREATE TABLE big (
  id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  account_id INT NOT NULL,
  email VARCHAR(64) NOT NULL,
  name VARCHAR(100) NULL,
  balance DECIMAL(14,2) NOT NULL,
  status ENUM('new','active','closed') NOT NULL,
  note VARCHAR(255) NULL,
  created_at DATETIME(6) NOT NULL,
  updated_at DATETIME(6) NOT NULL,
  KEY by_account (account_id), KEY by_email (email), KEY by_updated (updated_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""


def lab_env() -> dict:
    out = subprocess.run([str(REPO / "tests/lab/labctl"), "env"], capture_output=True, text=True, check=False).stdout
    env = {}
    for line in out.splitlines():
        if line.startswith("export ") and "=" in line:
            name, _unused, value = line[7:].partition("=")
            env[name] = shlex.split(value)[0] if value else ""
    return env


def params(url: str) -> dict:
    u = urlparse(url)
    return {"host": u.hostname, "port": u.port, "user": u.username, "password": u.password}


def sql(server: dict, *statements: str, database: str | None = None) -> list:
    with pymysql.connect(**server, database=database, autocommit=True) as conn, conn.cursor() as cursor:
        rows: list = []
        for statement in statements:
            cursor.execute(statement)
            rows = list(cursor.fetchall())
        return rows


def timed(work) -> tuple[float, object]:
    began = time.monotonic()
    answer = work()
    return time.monotonic() - began, answer


def client_args(server: dict) -> list[str]:
    return ["-h", server["host"], "-P", str(server["port"]), "-u", server["user"], f"-p{server['password']}"]


def dump_and_load(old: dict, source_db: str, new: dict, target_db: str) -> None:
    sql(new, f"CREATE DATABASE IF NOT EXISTS `{target_db}`")
    dump = subprocess.Popen(["mysqldump", *client_args(old), "--single-transaction", "--quick", "--skip-lock-tables",
                             source_db, "big"], stdout=subprocess.PIPE)
    subprocess.run(["mysql", *client_args(new), target_db], stdin=dump.stdout, check=True)
    dump.stdout.close()
    if dump.wait() != 0:
        raise SystemExit("mysqldump failed")


# Phases of a run whose wall time is summed while ``phases`` is on (reading source rows runs in a
# thread of its own, overlapped with applying: the phases can add up to more than the run).
PHASES = ("validate", "read_changes", "read_batch_rows", "apply_batch", "fix_auto_increments")


class PhaseClock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __enter__(self):
        self.originals = {name: getattr(apply, name) for name in PHASES}
        for name, original in self.originals.items():
            setattr(apply, name, self.wrap(name, original))
        return self

    def wrap(self, name, original):
        def timed_phase(*args, **kwargs):
            began = time.monotonic()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.monotonic() - began
        return timed_phase

    def __exit__(self, *exc_info) -> None:
        for name, original in self.originals.items():
            setattr(apply, name, original)

    def line(self) -> str:
        return " ".join(f"{name}={self.seconds.get(name, 0.0):.2f}" for name in PHASES)


def delta(old: dict, source_db: str, new: dict, target_db: str, **options) -> dict:
    return run_delta(delta_options({"source": {**old, "database": source_db}, "target": {**new, "database": target_db},
                                    **options}))


def pt_table_sync(old: dict, source_db: str, new: dict, target_db: str) -> int:
    def dsn(server, database):
        return f"h={server['host']},P={server['port']},u={server['user']},p={server['password']},D={database},t=big"
    completed = subprocess.run(["pt-table-sync", "--execute", "--no-check-slave", "--verbose",
                                dsn(old, source_db), dsn(new, target_db)], capture_output=True, text=True, check=False)
    if completed.returncode not in (0, 2):
        raise SystemExit(f"pt-table-sync failed ({completed.returncode}): {completed.stderr[-2000:]}")
    moved = 0
    for line in completed.stdout.splitlines():
        found = re.match(r"^#?\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+\w+", line)
        if found:
            moved += sum(int(found.group(n)) for n in range(1, 5))
    return moved


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=int(os.environ.get("MYSQL_DELTA_BENCH_ROWS", "2000000")))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rows = 200_000 if args.quick else args.rows
    env = lab_env()
    old, new = params(env["LAB_MYSQL_OLD"]), params(env["LAB_MYSQL_NEW"])
    tag = uuid.uuid4().hex[:8]
    source_db = f"bench_src_{tag}"
    targets = {name: f"bench_{name}_{tag}" for name in ("ours", "dump", "pt", "reload")}
    results: list[tuple[str, float, int]] = []
    try:
        sql(old, f"CREATE DATABASE `{source_db}`", f"USE `{source_db}`", TABLE)
        generate, _unused = timed(lambda: sql(old, (
            "INSERT INTO big (id, account_id, email, name, balance, status, note, created_at, updated_at) "
            "SELECT seq, seq % 50000, CONCAT('user', seq, '@example.com'), CONCAT('Name ', MD5(seq)), "
            "(seq % 100000) / 100, ELT(1 + seq % 3, 'new', 'active', 'closed'), REPEAT(SUBSTR(MD5(seq), 1, 8), 8), "
            "'2024-01-01 00:00:00' + INTERVAL seq SECOND, '2024-06-01 00:00:00' + INTERVAL seq SECOND "
            f"FROM seq_1_to_{rows}"), database=source_db))
        size_mb = sql(old, "SELECT ROUND((DATA_LENGTH + INDEX_LENGTH) / 1048576) FROM information_schema.TABLES "
                           f"WHERE TABLE_SCHEMA = '{source_db}' AND TABLE_NAME = 'big'")[0][0]
        print(f"generated {rows} rows ({size_mb} MB incl. indexes) in {generate:.1f} s", flush=True)

        for name in ("ours", "pt"):
            sql(new, f"CREATE DATABASE `{targets[name]}`", f"USE `{targets[name]}`", TABLE)
        load_ours, loaded = timed(lambda: delta(old, source_db, new, targets["ours"], verify=False))
        results.append(("initial load: checksum strategy into empty target", load_ours, loaded["rows_inserted"]))
        print(results[-1], flush=True)
        load_dump, _unused = timed(lambda: dump_and_load(old, source_db, new, targets["dump"]))
        results.append(("initial load: mysqldump | mysql", load_dump, rows))
        print(results[-1], flush=True)
        sql(new, f"INSERT INTO `{targets['pt']}`.big SELECT * FROM `{targets['dump']}`.big")

        sql(old, "UPDATE big SET balance = balance + 1, updated_at = NOW(6) WHERE id % 200 = 0",
            "DELETE FROM big WHERE id % 400 = 1",
            "INSERT INTO big (account_id, email, name, balance, status, note, created_at, updated_at) "
            f"SELECT seq, CONCAT('late', seq, '@example.com'), 'late', 1, 'new', NULL, NOW(6), NOW(6) "
            f"FROM seq_1_to_{rows // 400}", database=source_db)
        churned = rows // 200 + rows // 400 + rows // 400
        print(f"churn: ~{churned} rows (1%)", flush=True)

        with PhaseClock() as phases:
            binlog_s, by_binlog = timed(lambda: delta(old, source_db, new, targets["ours"], strategy="binlog",
                                                      verify=False))
        begun, ended = loaded["binlog_position"], by_binlog["binlog_position"]
        log_mb = (ended["position"] - begun["position"]) / 1e6 if begun["file"] == ended["file"] else float("nan")
        print(f"binlog run phases (s): {phases.line()}; binary log read: {log_mb:.0f} MB", flush=True)
        moved = by_binlog["rows_inserted"] + by_binlog["rows_updated"] + by_binlog["rows_deleted"]
        results.append(("delta: binlog strategy", binlog_s, moved))
        print(results[-1], flush=True)
        checksum_s, by_checksum = timed(lambda: delta(old, source_db, new, targets["dump"], verify=False))
        moved = by_checksum["rows_inserted"] + by_checksum["rows_updated"] + by_checksum["rows_deleted"]
        results.append(("delta: checksum strategy", checksum_s, moved))
        print(results[-1], flush=True)
        pt_s, pt_moved = timed(lambda: pt_table_sync(old, source_db, new, targets["pt"]))
        results.append(("delta: pt-table-sync --execute", pt_s, int(pt_moved)))
        print(results[-1], flush=True)
        reload_s, _unused = timed(lambda: dump_and_load(old, source_db, new, targets["reload"]))
        source_rows = sql(old, "SELECT COUNT(*) FROM big", database=source_db)[0][0]
        results.append(("delta: full mysqldump | mysql reload", reload_s, int(source_rows)))
        print(results[-1], flush=True)
        verify_s, _unused = timed(lambda: delta(old, source_db, new, targets["ours"], strategy="binlog"))
        results.append(("verify (binlog run with verify=true, nothing to apply)", verify_s, 0))

        sums = {name: sql(new, f"CHECKSUM TABLE `{db}`.big")[0][1] for name, db in targets.items()}
        source_sum = sql(old, f"CHECKSUM TABLE `{source_db}`.big")[0][1]
        equal = all(value == source_sum for value in sums.values())
    finally:
        sql(old, f"DROP DATABASE IF EXISTS `{source_db}`")
        for db in targets.values():
            sql(new, f"DROP DATABASE IF EXISTS `{db}`")

    print(f"\n{'what':58} {'seconds':>9} {'rows moved':>11}")
    for what, seconds, moved in results:
        print(f"{what:58} {seconds:9.2f} {moved:11d}")
    print(f"all targets equal to the source (CHECKSUM TABLE): {equal}")
    ratios = {
        "binlog_vs_reload": reload_s / binlog_s, "binlog_vs_pt": pt_s / binlog_s,
        "checksum_vs_pt": pt_s / checksum_s, "load_vs_dump": load_dump / load_ours,
        # The reload is the same work as the initial mysqldump | mysql; on a shared machine either can
        # be slowed by other load, so the faster of the two is the conservative yardstick.
        "binlog_vs_fastest_reload": min(reload_s, load_dump) / binlog_s,
    }
    print("ratios (higher = ours faster): " + ", ".join(f"{k}={v:.1f}x" for k, v in ratios.items()))
    print(f"bench: mysql_delta rows={rows} load_s={load_ours:.1f} dump_load_s={load_dump:.1f} "
          f"checksum_s={checksum_s:.1f} binlog_s={binlog_s:.2f} pt_table_sync_s={pt_s:.1f} reload_s={reload_s:.1f} "
          f"binlog_vs_reload={ratios['binlog_vs_reload']:.1f} binlog_vs_fastest_reload={ratios['binlog_vs_fastest_reload']:.1f} "
          f"binlog_vs_pt={ratios['binlog_vs_pt']:.1f} "
          f"checksum_vs_pt={ratios['checksum_vs_pt']:.1f} load_vs_dump={ratios['load_vs_dump']:.2f} verify_s={verify_s:.1f} "
          f"equal={equal}")


if __name__ == "__main__":
    main()
