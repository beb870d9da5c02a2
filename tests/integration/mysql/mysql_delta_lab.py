"""Helpers for the mysql_delta_apply lab tests: databases with every type, churn, comparisons."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from decimal import Decimal
from urllib.parse import urlparse

import pymysql

SCHEMA = """
CREATE TABLE parents (
  id INT AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(50) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE items (
  id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
  parent_id INT NULL,
  title VARCHAR(100) NULL,
  body TEXT NULL,
  legacy VARCHAR(40) CHARACTER SET latin1 NULL,
  payload BLOB NULL,
  raw VARBINARY(16) NULL,
  price DECIMAL(20,6) NULL,
  happened DATETIME(6) NULL,
  stamped TIMESTAMP(3) NULL DEFAULT NULL,
  doc JSON NULL,
  mood ENUM('happy','sad','') NULL,
  tags SET('a','b','c') NULL,
  flags BIT(10) NULL,
  ratio DOUBLE NULL,
  title_length INT AS (CHAR_LENGTH(title)) VIRTUAL,
  price_cents DECIMAL(30,6) AS (price * 100) PERSISTENT,
  KEY by_parent (parent_id),
  CONSTRAINT items_parent FOREIGN KEY (parent_id) REFERENCES parents (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE memberships (
  group_code CHAR(4) NOT NULL,
  member_id INT NOT NULL,
  role VARCHAR(40) NULL,
  since DATE NULL,
  PRIMARY KEY (group_code, member_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE audit_log (
  happened DATETIME(6) NOT NULL,
  message VARCHAR(200) NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE codes (
  code VARCHAR(20) NOT NULL,
  label VARCHAR(40) NULL,
  updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  UNIQUE KEY code (code)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
"""

TABLES = ("audit_log", "codes", "items", "memberships", "parents")
TEXTS = ["", None, "plain", "emoji \U0001F600\U0001F680 ok", "quote ' and \\ backslash", "comma, (paren) 'x'",
         "NULL", "日本語テキスト", "tab\tnewline\n"]
BLOBS = [b"", None, b"\x00\x01\x02", b"\xff\xfe'\\\x00\x27", bytes(range(256)), b"(1,'a')"]


def server_params(url: str) -> dict:
    parsed = urlparse(url)
    return {"host": parsed.hostname, "port": parsed.port, "user": parsed.username, "password": parsed.password}


def connect(params: dict, database: str | None = None, **extra) -> pymysql.Connection:
    return pymysql.connect(host=params["host"], port=params["port"], user=params["user"], password=params["password"],
                           database=database, charset="utf8mb4", autocommit=True, **extra)


def unique_name(prefix: str = "delta") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def create_database(params: dict, name: str, schema: str = SCHEMA) -> None:
    with connect(params) as conn, conn.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        cursor.execute(f"USE `{name}`")
        for statement in [s for s in schema.split(";") if s.strip()]:
            cursor.execute(statement)


def drop_database(params: dict, name: str) -> None:
    with connect(params) as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")


def execute(params: dict, database: str, *statements: str, args=None) -> None:
    with connect(params, database) as conn, conn.cursor() as cursor:
        cursor.execute("SET time_zone = '+00:00'")
        for statement in statements:
            cursor.execute(statement, args)


def query(params: dict, database: str, statement: str, args=None) -> list[tuple]:
    with connect(params, database) as conn, conn.cursor() as cursor:
        cursor.execute("SET time_zone = '+00:00'")
        cursor.execute(statement, args)
        return list(cursor.fetchall())


def item_row(rng: random.Random, parent_ids: list[int], item_id: int | None = None) -> tuple:
    return (
        item_id,
        rng.choice(parent_ids + [None]),
        rng.choice(TEXTS),
        rng.choice(TEXTS) if rng.random() < 0.5 else ("long " * 300),
        rng.choice(TEXTS[:3] + ["caf\u00e9", "na\u00efve"]),
        rng.choice(BLOBS),
        rng.choice([b"", None, b"\x00", b"\x80\x81", b"'"]),
        rng.choice([None, Decimal("0.000001"), Decimal("-12345678901234.123456"), Decimal(rng.randint(0, 10**6)) / 100]),
        rng.choice([None, "2024-02-29 23:59:59.999999", "1999-01-01 00:00:00.000001", "2030-06-15 12:00:00.5"]),
        rng.choice([None, "2024-03-31 02:30:00.123", "1980-01-01 00:00:01.000"]),
        rng.choice([None, '{"a": 1, "b": [1, 2, "\U0001F600"]}', '{}', '[]', '"text"']),
        rng.choice([None, "happy", "sad", ""]),
        rng.choice([None, "", "a", "a,c", "a,b,c"]),
        rng.choice([None, 0, 1, 513, 1023]),
        rng.choice([None, 0.1, -1e-300, 3.141592653589793, 1e300]),
    )


ITEM_COLUMNS = ("id, parent_id, title, body, legacy, payload, raw, price, happened, stamped, doc, mood, tags, flags, "
                "ratio")


def fill(params: dict, database: str, seed: int = 1, items: int = 300) -> None:
    """Rows of every type in every table."""
    rng = random.Random(seed)
    with connect(params, database) as conn, conn.cursor() as cursor:
        cursor.execute("SET time_zone = '+00:00'")
        cursor.executemany("INSERT INTO parents (id, name) VALUES (%s, %s)", [(i, f"parent {i}") for i in range(1, 21)])
        rows = [item_row(rng, list(range(1, 21)), i) for i in range(1, items + 1)]
        cursor.executemany(f"INSERT INTO items ({ITEM_COLUMNS}) VALUES ({', '.join(['%s'] * 15)})", rows)
        cursor.executemany("INSERT INTO memberships VALUES (%s, %s, %s, %s)",
                           [(g, m, rng.choice(TEXTS), rng.choice([None, "2020-01-01", "0000-00-00"]))
                            for g in ("ab", "abcd", "zz\u00e9") for m in range(1, 40)])
        cursor.executemany("INSERT INTO audit_log VALUES (%s, %s)",
                           [("2024-01-01 00:00:00.000001", "same row twice")] * 2
                           + [(f"2024-01-02 00:00:{i:02d}.5", rng.choice(TEXTS)) for i in range(30)])
        cursor.executemany("INSERT INTO codes (code, label, updated_at) VALUES (%s, %s, %s)",
                           [(f"C{i:04d}", rng.choice(TEXTS), "2024-01-01 00:00:00") for i in range(50)])


def churn(params: dict, database: str, seed: int = 2) -> None:
    """Inserts, updates, deletes, a row deleted and re-inserted with the same key, the last id deleted."""
    rng = random.Random(seed)
    with connect(params, database) as conn, conn.cursor() as cursor:
        cursor.execute("SET time_zone = '+00:00'")
        cursor.execute("SELECT MAX(id) FROM items")
        top = cursor.fetchone()[0]
        new = [item_row(rng, list(range(1, 21)), top + i) for i in range(1, 21)]
        cursor.executemany(f"INSERT INTO items ({ITEM_COLUMNS}) VALUES ({', '.join(['%s'] * 15)})", new)
        cursor.execute("UPDATE items SET title = 'updated \U0001F389', payload = x'00ff' WHERE id % 7 = 0")
        cursor.execute("UPDATE items SET title = NULL WHERE id % 11 = 0")
        cursor.execute("UPDATE items SET title = '' WHERE id % 13 = 0")
        cursor.execute("UPDATE items SET price = price + 0.000001, flags = 7 WHERE id % 17 = 0")
        cursor.execute("DELETE FROM items WHERE id % 19 = 0")
        cursor.execute("DELETE FROM items WHERE id = 5")
        cursor.execute(f"INSERT INTO items ({ITEM_COLUMNS}) VALUES ({', '.join(['%s'] * 15)})", item_row(rng, [1], 5))
        cursor.execute("SELECT MAX(id) FROM items")
        cursor.execute("DELETE FROM items WHERE id = %s", [cursor.fetchone()[0]])
        cursor.execute("DELETE FROM memberships WHERE member_id = %s", [seed + 1])
        cursor.execute("UPDATE memberships SET role = 'owner' WHERE member_id = 4")
        cursor.execute("INSERT INTO memberships VALUES (%s, 1, 'x', NULL)", [f"n{seed}"])
        cursor.execute("INSERT INTO audit_log VALUES ('2025-01-01 00:00:00', 'after the load')")
        cursor.execute("UPDATE codes SET label = 'changed' WHERE code IN ('C0001', 'C0002')")
        cursor.execute("INSERT INTO codes (code, label) VALUES (%s, 'new code')", [f"N{seed}"])
        cursor.execute("INSERT INTO parents (name) VALUES ('late parent')")


def checksum_tables(params: dict, database: str, tables=TABLES) -> dict:
    names = ", ".join(f"`{database}`.`{t}`" for t in tables)
    return {row[0].split(".")[1]: row[1] for row in query(params, database, f"CHECKSUM TABLE {names} EXTENDED")}


def all_rows(params: dict, database: str, table: str) -> list[tuple]:
    columns = [row[0] for row in query(params, database, "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE "
                                       "TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                                       [database, table])]
    listed = ", ".join(f"HEX(`{c}`)" if c in ("flags",) else f"`{c}`" for c in columns)
    rows = query(params, database, f"SELECT {listed} FROM `{table}`")
    return sorted(rows, key=repr)


def assert_same(old: dict, new: dict, source_db: str, target_db: str, tables=TABLES) -> None:
    assert checksum_tables(old, source_db, tables) == checksum_tables(new, target_db, tables)
    for table in tables:
        assert all_rows(old, source_db, table) == all_rows(new, target_db, table), table


def binlog_events_for(params: dict, database: str, since: tuple[str, int]) -> int:
    """Row/query events about ``database`` written to the server's binary log after ``since``."""
    with connect(params) as conn, conn.cursor() as cursor:
        cursor.execute("SHOW BINARY LOGS")
        files = [row[0] for row in cursor.fetchall() if row[0] >= since[0]]
        count = 0
        for name in files:
            cursor.execute(f"SHOW BINLOG EVENTS IN '{name}'" + (f" FROM {since[1]}" if name == since[0] else ""))
            count += sum(1 for row in cursor.fetchall() if f"`{database}`" in str(row[5]) or database in str(row[5]))
        return count


def binlog_end(params: dict) -> tuple[str, int]:
    with connect(params) as conn, conn.cursor() as cursor:
        cursor.execute("SHOW MASTER STATUS")
        row = cursor.fetchone()
        return row[0], int(row[1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ScratchServer:
    """A throwaway mariadbd in a temp dir, for settings that would disturb the shared lab servers."""

    def __init__(self, *options: str):
        self.dir = tempfile.mkdtemp(prefix="delta-mariadb-")
        self.port = free_port()
        subprocess.run(["mariadb-install-db", f"--datadir={self.dir}/data", "--user=root", "--auth-root-authentication-method=normal",
                        "--skip-test-db"], check=True, capture_output=True)
        self.process = subprocess.Popen(
            ["mariadbd", f"--datadir={self.dir}/data", f"--socket={self.dir}/sock", f"--port={self.port}",
             "--bind-address=127.0.0.1", "--user=root", f"--pid-file={self.dir}/pid", "--innodb-buffer-pool-size=32M",
             f"--log-error={self.dir}/error.log", "--skip-name-resolve", *options],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                with pymysql.connect(unix_socket=f"{self.dir}/sock", user="root", autocommit=True) as conn, \
                        conn.cursor() as cursor:
                    cursor.execute("CREATE USER 'lab'@'%' IDENTIFIED BY 'lab'")
                    cursor.execute("GRANT ALL ON *.* TO 'lab'@'%' WITH GRANT OPTION")
                break
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.3)
        self.params = {"host": "127.0.0.1", "port": self.port, "user": "lab", "password": "lab"}

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def side(params: dict, database: str, **extra) -> dict:
    return {**params, "database": database, **extra}


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")
