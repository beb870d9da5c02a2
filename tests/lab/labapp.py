"""labapp: the lab's tiny shop web tier and internal API, the workload the migration must keep serving.

    labapp start --role web|api --instance ID --listen IP:PORT --side old|new --db-host NAME
                 [--db-port 3306] [--db-user lab] [--db-password lab] --db-name DB
                 [--api-url http://NAME:PORT] [--resolver IP]
    labapp stop --instance ID
    labapp status --instance ID
    labapp schema --db-url mysql://user:pw@host:port/ --db-name DB [--users N] [--orders N] [--products N]
                  [--app-user NAME --app-password PW]
    labapp serve ...           (the foreground server `start` runs in the background)

Names (the DB host, the API host) are resolved through the lab resolver the way a well-behaved
client does: the answer is cached for its TTL, then asked again, and a pooled DB connection to an
address the name no longer points to is closed. So a DB endpoint flip (field report 002: "DB
endpoint via FQDN") moves the app's writes once the TTL has passed, and nothing else is needed.

Standard library plus PyMySQL and dnspython. Pid and log files live in the lab state directory
(``labapp-<instance>.pid`` / ``.log``) so ``labctl down`` stops every instance.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lab_config  # noqa: E402

# MariaDB refuses a write under read_only with 1290 (ER_OPTION_PREVENTS_STATEMENT) or, for some
# statements and versions, 1836 (ER_READ_ONLY_MODE).
READ_ONLY_ERRORS = {1290, 1836}
START_TIMEOUT_S = 20.0
# A stub resolver gives up after about this long too (glibc: 5 s per try); the lab's first lookup
# through a fresh delegation can take seconds on a loaded machine.
DNS_TIMEOUT_S = 8.0
# RFC 8767's client response timer is 1.8 s: past it, a client holding an expired answer uses it.
STALE_REFRESH_TIMEOUT_S = 1.8
MAX_STALE_S = 60.0
FAILURE_HOLD_S = 1.0
API_TIMEOUT_S = 3.0
POOL_SIZE = 16
USERS_COUNT_MAX_AGE_S = 2.0


# -- names -------------------------------------------------------------------------------
class NameUnresolvable(Exception):
    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class CachingResolver:
    """A name -> IPv4 address cache that honours each answer's TTL, shared by all request threads.

    One lookup at a time per cache (the others wait for its answer, as the threads of one client
    process would). When a refresh times out or the resolver fails (SERVFAIL), the expired answer
    is used for a while (serve-stale, RFC 8767), never after NXDOMAIN or an empty answer: a busy
    lab resolver must not count as an outage, a record that is really gone must.
    """

    def __init__(self, resolver_address: str | None) -> None:
        self.resolver_address = resolver_address or None
        self._answers: dict[str, tuple[str, float]] = {}
        self._failures: dict[str, tuple[NameUnresolvable, float]] = {}
        self._lock = threading.Lock()
        self.lookups = 0
        self.stale_answers = 0

    def address(self, name: str) -> str:
        name = name.rstrip(".")
        try:
            ipaddress.ip_address(name)
            return name
        except ValueError:
            pass
        with self._lock:
            now = time.time()
            cached = self._answers.get(name)
            if cached and now < cached[1]:
                return cached[0]
            stale = cached[0] if cached and now - cached[1] < MAX_STALE_S else None
            failure = self._failures.get(name)
            if failure is None or now >= failure[1]:
                try:
                    address, expires_at = self._ask(name, STALE_REFRESH_TIMEOUT_S if stale else DNS_TIMEOUT_S)
                except NameUnresolvable as error:
                    # Threads queued behind a failed lookup share its outcome instead of each waiting again.
                    failure = (error, time.time() + FAILURE_HOLD_S)
                    self._failures[name] = failure
                else:
                    self._failures.pop(name, None)
                    self._answers[name] = (address, expires_at)
                    return address
            if stale and failure[0].transient:
                self.stale_answers += 1
                return stale
            raise failure[0]

    def _ask(self, name: str, lifetime: float) -> tuple[str, float]:
        self.lookups += 1
        if not self.resolver_address:
            try:
                return socket.gethostbyname(name), time.time()
            except OSError as error:
                raise NameUnresolvable(f"{name}: {error}") from error
        import dns.exception
        import dns.resolver

        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [self.resolver_address]
        resolver.cache = None
        resolver.lifetime = lifetime
        try:
            answer = resolver.resolve(name + ".", "A", search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer) as error:
            raise NameUnresolvable(f"{name} via {self.resolver_address}: {error.__class__.__name__}") from error
        except dns.exception.DNSException as error:
            raise NameUnresolvable(f"{name} via {self.resolver_address}: {error.__class__.__name__}",
                                   transient=True) from error
        addresses = sorted(rdata.address for rdata in answer)
        ttl = answer.rrset.ttl if answer.rrset is not None else 0
        return addresses[0], time.time() + ttl


# -- database ----------------------------------------------------------------------------
class DatabaseError(Exception):
    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code

    @property
    def read_only(self) -> bool:
        return self.code in READ_ONLY_ERRORS


class ConnectionPool:
    """Pooled PyMySQL connections to whatever address the DB host name resolves to right now."""

    def __init__(self, resolver: CachingResolver, host: str, port: int, user: str, password: str, database: str) -> None:
        self.resolver = resolver
        self.host, self.port, self.user, self.password, self.database = host, port, user, password, database
        self._idle: list[tuple[str, Any]] = []
        self._lock = threading.Lock()

    def _take(self, address: str):
        import pymysql

        with self._lock:
            matching = [connection for idle_address, connection in self._idle if idle_address == address]
            # The name moved: connections to the old address are closed, never written to again.
            stale = [connection for idle_address, connection in self._idle if idle_address != address]
            taken = matching.pop() if matching else None
            self._idle = [(address, connection) for connection in matching]
        for connection in stale:
            with contextlib.suppress(Exception):
                connection.close()
        if taken is not None:
            try:
                taken.ping(reconnect=False)
                return taken
            except Exception:  # noqa: BLE001 - a dead pooled connection is replaced
                with contextlib.suppress(Exception):
                    taken.close()
        return pymysql.connect(host=address, port=self.port, user=self.user, password=self.password,
                               database=self.database, autocommit=True, connect_timeout=3, read_timeout=15,
                               write_timeout=15, charset="utf8mb4")

    @contextlib.contextmanager
    def cursor(self):
        import pymysql

        try:
            address = self.resolver.address(self.host)
        except NameUnresolvable as error:
            raise DatabaseError(f"cannot resolve DB host {error}") from error
        try:
            connection = self._take(address)
        except pymysql.MySQLError as error:
            raise DatabaseError(f"cannot connect to {self.host} ({address}:{self.port}): {error}",
                                error.args[0] if error.args else None) from error
        healthy = False
        try:
            with connection.cursor() as cursor:
                yield cursor, address
            healthy = True
        except pymysql.MySQLError as error:
            code = error.args[0] if error.args and isinstance(error.args[0], int) else None
            healthy = code not in (None, 0, 2006, 2013, 2014)
            message = error.args[1] if len(error.args) > 1 else str(error)
            raise DatabaseError(f"{code}: {message}", code) from error
        finally:
            with self._lock:
                if healthy and len(self._idle) < POOL_SIZE:
                    self._idle.append((address, connection))
                    connection = None
            if connection is not None:
                with contextlib.suppress(Exception):
                    connection.close()


def _json_value(value):
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def row_dict(cursor, row) -> dict:
    return {column[0]: _json_value(value) for column, value in zip(cursor.description, row, strict=True)}


# -- the app -----------------------------------------------------------------------------
class App:
    def __init__(self, options: argparse.Namespace) -> None:
        self.instance = options.instance
        self.role = options.role
        self.side = options.side
        self.resolver = CachingResolver(options.resolver)
        self.database = ConnectionPool(self.resolver, options.db_host, options.db_port, options.db_user,
                                       options.db_password, options.db_name)
        self.api_url = urlparse(options.api_url) if options.api_url else None
        self._users_counted: tuple[str, float, int] | None = None

    def users_count(self, cursor, address: str) -> int:
        # COUNT(*) scans an index: about 0.1 s at 300k rows, too much for every page view of the demo,
        # so the count is reused for a moment (per DB address, so a DB flip is seen at once).
        counted = self._users_counted
        if counted is None or counted[0] != address or time.monotonic() - counted[1] > USERS_COUNT_MAX_AGE_S:
            cursor.execute("SELECT COUNT(*) FROM users")
            counted = (address, time.monotonic(), cursor.fetchone()[0])
            self._users_counted = counted
        return counted[2]

    def call_api(self, path: str) -> dict:
        if self.api_url is None:
            return {"error": "no --api-url configured"}
        host = self.api_url.hostname or ""
        try:
            address = self.resolver.address(host)
        except NameUnresolvable as error:
            return {"error": f"cannot resolve API host {error}"}
        connection = http.client.HTTPConnection(address, self.api_url.port or 80, timeout=API_TIMEOUT_S)
        try:
            connection.request("GET", path, headers={"Host": self.api_url.netloc})
            response = connection.getresponse()
            body = response.read()
            result = json.loads(body) if body else {}
            if response.status != 200:
                return {"error": f"api answered {response.status}", "body": result}
            result["address"] = address
            return result
        except (OSError, http.client.HTTPException, ValueError) as error:
            return {"error": f"api {address}: {error.__class__.__name__}: {error}"}
        finally:
            connection.close()

    def route(self, method: str, path: str, body: bytes) -> tuple[int, dict]:
        if method == "GET" and path == "/health":
            return 200, {"ok": True, "instance": self.instance, "role": self.role, "side": self.side}
        try:
            if self.role == "web":
                return self.route_web(method, path, body)
            return self.route_api(method, path)
        except DatabaseError as error:
            return 503, {"error": "read-only" if error.read_only else str(error)}

    def route_web(self, method: str, path: str, body: bytes) -> tuple[int, dict]:
        if method == "GET" and path == "/":
            with self.database.cursor() as (cursor, address):
                cursor.execute("SELECT COUNT(*) FROM products")
                products = cursor.fetchone()[0]
            return 200, {"page": "home", "products": products, "api": self.call_api("/info"), "db_address": address}
        if method == "POST" and path == "/orders":
            try:
                order = json.loads(body or b"{}")
                user_id = int(order["user_id"])
                amount = Decimal(str(order["amount"])).quantize(Decimal("0.01"))
            except (ValueError, KeyError, TypeError, InvalidOperation) as error:
                return 400, {"error": f"expected JSON {{\"user_id\": int, \"amount\": \"12.34\"}}: {error}"}
            with self.database.cursor() as (cursor, _address):
                cursor.execute("INSERT INTO orders (user_id, amount, created_at, served_by) VALUES (%s, %s, NOW(6), %s)",
                               (user_id, amount, self.instance))
                order_id = cursor.lastrowid
            return 201, {"id": order_id, "served_by": self.instance}
        matched = re.fullmatch(r"/orders/(\d+)", path)
        if method == "GET" and matched:
            return self.one_row("SELECT id, user_id, amount, created_at, served_by FROM orders WHERE id = %s",
                                int(matched.group(1)))
        return 404, {"error": f"no route {method} {path}"}

    def route_api(self, method: str, path: str) -> tuple[int, dict]:
        if method == "GET" and path == "/info":
            with self.database.cursor() as (cursor, address):
                cursor.execute("SELECT MAX(id) FROM users")
                max_user_id = cursor.fetchone()[0]
                users = self.users_count(cursor, address)
            return 200, {"instance": self.instance, "side": self.side, "users": users, "max_user_id": max_user_id,
                         "db_address": address}
        matched = re.fullmatch(r"/users/(\d+)", path)
        if method == "GET" and matched:
            return self.one_row("SELECT id, email, name, created_at FROM users WHERE id = %s", int(matched.group(1)))
        return 404, {"error": f"no route {method} {path}"}

    def one_row(self, query: str, key: int) -> tuple[int, dict]:
        with self.database.cursor() as (cursor, _address):
            cursor.execute(query, (key,))
            row = cursor.fetchone()
            if row is None:
                return 404, {"error": f"{key} not found"}
            return 200, row_dict(cursor, row)


class _AppServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    app: App


class _AppHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _AppServer

    def log_message(self, format, *args) -> None:  # noqa: A002 - signature of the base class
        return

    def _handle(self) -> None:
        app = self.server.app
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        try:
            status, payload = app.route(self.command, unquote(self.path.split("?")[0]), body)
        except Exception as error:  # noqa: BLE001 - one bad request must not take the instance down
            status, payload = 500, {"error": f"{error.__class__.__name__}: {error}"}
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Served-By", app.instance)
        self.send_header("X-Side", app.side)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _handle


def serve(options: argparse.Namespace) -> int:
    host, port = split_listen(options.listen)
    server = _AppServer((host, port), _AppHandler)
    server.app = App(options)
    signal.signal(signal.SIGTERM, lambda *_args: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"labapp {options.instance}: {options.role} ({options.side}) on {host}:{port}, db {options.db_host}/"
          f"{options.db_name} via {options.resolver or 'system resolver'}", flush=True)
    server.serve_forever(poll_interval=0.25)
    server.server_close()
    return 0


# -- process management ------------------------------------------------------------------
SERVE_OPTIONS = ("role", "instance", "listen", "side", "db_host", "db_port", "db_user", "db_password", "db_name",
                 "api_url", "resolver")


def split_listen(listen: str) -> tuple[str, int]:
    host, _sep, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"labapp: --listen must be IP:PORT, got {listen!r}")
    return host, int(port)


def state_files(instance: str) -> dict[str, Path]:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", instance):
        raise SystemExit(f"labapp: --instance {instance!r} must be letters, digits, '.', '_' or '-'")
    state = lab_config.STATE_DIR
    return {"pid": state / f"labapp-{instance}.pid", "log": state / f"labapp-{instance}.log",
            "args": state / f"labapp-{instance}.args.json"}


def running_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    try:
        # A stopped instance stays a zombie until init reaps it (seconds, on some machines), and a
        # recycled pid may belong to anything: only a live labapp counts as running.
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return pid  # no /proc: trust the signal check
    if stat.rpartition(")")[2].split()[0] == "Z" or b"labapp" not in cmdline:
        return None
    return pid


def healthy(listen: str, instance: str | None = None) -> bool:
    host, port = split_listen(listen)
    connection = http.client.HTTPConnection(host, port, timeout=1)
    try:
        connection.request("GET", "/health")
        response = connection.getresponse()
        body = json.loads(response.read() or b"{}")
        return response.status == 200 and (instance is None or body.get("instance") == instance)
    except (OSError, http.client.HTTPException, ValueError):
        return False
    finally:
        connection.close()


def stop_instance(instance: str) -> bool:
    files = state_files(instance)
    pid = running_pid(files["pid"])
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and running_pid(files["pid"]) is not None:
            _reap(pid)
            time.sleep(0.05)
        if running_pid(files["pid"]) is not None:
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
    files["pid"].unlink(missing_ok=True)
    files["args"].unlink(missing_ok=True)
    return pid is not None


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def start(options: argparse.Namespace) -> int:
    files = state_files(options.instance)
    split_listen(options.listen)
    wanted = {name: getattr(options, name) for name in SERVE_OPTIONS}
    pid = running_pid(files["pid"])
    if pid is not None:
        try:
            recorded = json.loads(files["args"].read_text())
        except (OSError, ValueError):
            recorded = None
        if recorded == wanted and healthy(options.listen, options.instance):
            print(f"labapp {options.instance} already running (pid {pid}) on {options.listen}")
            print("unchanged")
            return 0
        stop_instance(options.instance)
    files["pid"].parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(Path(__file__).resolve()), "serve"]
    for name in SERVE_OPTIONS:
        value = wanted[name]
        if value is not None:
            command += [f"--{name.replace('_', '-')}", str(value)]
    log = open(files["log"], "ab")  # noqa: SIM115 - handed to the child
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    log.close()
    files["pid"].write_text(str(process.pid))
    files["args"].write_text(json.dumps(wanted, sort_keys=True))
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            files["pid"].unlink(missing_ok=True)
            files["args"].unlink(missing_ok=True)
            tail = files["log"].read_text(errors="replace")[-2000:]
            print(f"labapp {options.instance} exited with {process.returncode}:\n{tail}", file=sys.stderr)
            return 1
        if healthy(options.listen, options.instance):
            print(f"labapp {options.instance} started (pid {process.pid}) on {options.listen}")
            print("changed")
            return 0
        time.sleep(0.1)
    print(f"labapp {options.instance} did not answer /health on {options.listen} within {START_TIMEOUT_S:.0f} s; "
          f"see {files['log']}", file=sys.stderr)
    return 1


def stop(options: argparse.Namespace) -> int:
    was_running = stop_instance(options.instance)
    print("changed" if was_running else "unchanged")
    return 0


def status(options: argparse.Namespace) -> int:
    files = state_files(options.instance)
    pid = running_pid(files["pid"])
    try:
        recorded = json.loads(files["args"].read_text())
    except (OSError, ValueError):
        recorded = {}
    ok = pid is not None and bool(recorded.get("listen")) and healthy(recorded["listen"], options.instance)
    shown = {name: value for name, value in recorded.items() if name != "db_password"}
    print(json.dumps({"instance": options.instance, "pid": pid, "healthy": ok, **shown}))
    return 0 if ok else 1


# -- schema ------------------------------------------------------------------------------
TABLES = {
    "users": """CREATE TABLE IF NOT EXISTS users (
        id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        email VARCHAR(191) NOT NULL UNIQUE,
        name VARCHAR(100) NOT NULL,
        created_at DATETIME(6) NOT NULL) ENGINE=InnoDB""",
    "orders": """CREATE TABLE IF NOT EXISTS orders (
        id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        user_id INT NOT NULL,
        amount DECIMAL(10,2) NOT NULL,
        created_at DATETIME(6) NOT NULL,
        served_by VARCHAR(64) NOT NULL,
        INDEX (user_id)) ENGINE=InnoDB""",
    "products": """CREATE TABLE IF NOT EXISTS products (
        id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        name VARCHAR(100) NOT NULL,
        price DECIMAL(10,2) NOT NULL) ENGINE=InnoDB""",
}
# MariaDB's SEQUENCE engine (seq_1_to_N) generates the rows server-side: no client round trips.
SEEDS = {
    "users": "INSERT INTO users (email, name, created_at) SELECT CONCAT('user', seq, '@shop.test'), "
             "CONCAT('User ', seq), TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq SECOND FROM seq_{first}_to_{last}",
    "orders": "INSERT INTO orders (user_id, amount, created_at, served_by) SELECT 1 + (seq * 7919) % {users}, "
              "1 + ((seq * 104729) % 99900) / 100, TIMESTAMP'2024-06-01 00:00:00' + INTERVAL seq SECOND, 'seed' "
              "FROM seq_{first}_to_{last}",
    "products": "INSERT INTO products (name, price) SELECT CONCAT('Product ', seq), 1 + ((seq * 613) % 9900) / 100 "
                "FROM seq_{first}_to_{last}",
}
SEED_CHUNK = 100_000


def _identifier(text: str, option: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_]+", text):
        raise SystemExit(f"labapp: {option} {text!r} must be letters, digits or '_'")
    return text


def schema(options: argparse.Namespace) -> int:
    import pymysql

    database = _identifier(options.db_name, "--db-name")
    parsed = urlparse(options.db_url)
    host = CachingResolver(options.resolver).address(parsed.hostname or "127.0.0.1")
    connection = pymysql.connect(host=host, port=parsed.port or 3306, user=unquote(parsed.username or "lab"),
                                 password=unquote(parsed.password or ""), autocommit=True, charset="utf8mb4")
    changed = False
    seeded: dict[str, int] = {}
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (database,))
        if cursor.fetchone()[0] == 0:
            cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{database}`")
            changed = True
        cursor.execute(f"USE `{database}`")
        for table, ddl in TABLES.items():
            cursor.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                           (database, table))
            if cursor.fetchone()[0] == 0:
                cursor.execute(ddl)
                changed = True
        wanted = {"users": options.users, "products": options.products, "orders": options.orders}
        for table, count in wanted.items():
            cursor.execute(f"SELECT 1 FROM `{table}` LIMIT 1")
            if cursor.fetchone() is not None or count <= 0:
                continue
            for first in range(1, count + 1, SEED_CHUNK):
                last = min(first + SEED_CHUNK - 1, count)
                cursor.execute(SEEDS[table].format(first=first, last=last, users=max(options.users, 1)))
            seeded[table] = count
            changed = True
        if options.app_user:
            user = _identifier(options.app_user, "--app-user")
            cursor.execute("SELECT COUNT(*) FROM mysql.user WHERE User = %s AND Host = '%%'", (user,))
            if cursor.fetchone()[0] == 0:
                cursor.execute(f"CREATE USER `{user}`@'%%' IDENTIFIED BY %s", (options.app_password or "",))
                changed = True
            cursor.execute(f"SHOW GRANTS FOR `{user}`@'%'")
            grants = " ".join(row[0] for row in cursor.fetchall())
            if f"`{database}`.*" not in grants:
                # No SUPER / READ_ONLY ADMIN: a read_only freeze of the server must reject this user's writes.
                cursor.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{database}`.* TO `{user}`@'%'")
                changed = True
    print(json.dumps({"database": database, "server": f"{host}:{parsed.port or 3306}", "seeded": seeded}))
    print("changed" if changed else "unchanged")
    return 0


# -- command line ------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="labapp", description="The lab's shop web tier and internal API.")
    verbs = top.add_subparsers(dest="verb", required=True)
    for verb in ("start", "serve"):
        command = verbs.add_parser(verb)
        command.add_argument("--role", choices=("web", "api"), required=True)
        command.add_argument("--instance", required=True)
        command.add_argument("--listen", required=True, help="IP:PORT")
        command.add_argument("--side", choices=("old", "new"), required=True)
        command.add_argument("--db-host", required=True, help="DB host name (resolved through --resolver) or IP")
        command.add_argument("--db-port", type=int, default=3306)
        command.add_argument("--db-user", default="lab")
        command.add_argument("--db-password", default="lab")
        command.add_argument("--db-name", required=True)
        command.add_argument("--api-url", default=None, help="http://NAME:PORT of the internal API (web role)")
        command.add_argument("--resolver", default=os.environ.get("LAB_RESOLVER") or None)
    for verb in ("stop", "status"):
        verbs.add_parser(verb).add_argument("--instance", required=True)
    command = verbs.add_parser("schema")
    command.add_argument("--db-url", required=True, help="mysql://user:pw@host:port/")
    command.add_argument("--db-name", required=True)
    command.add_argument("--users", type=int, default=1000)
    command.add_argument("--orders", type=int, default=1000)
    command.add_argument("--products", type=int, default=50)
    command.add_argument("--app-user", default=None, help="create this user with rights on --db-name only")
    command.add_argument("--app-password", default=None)
    command.add_argument("--resolver", default=os.environ.get("LAB_RESOLVER") or None)
    return top


def main(argv: list[str]) -> int:
    options = parser().parse_args(argv)
    verbs = {"start": start, "serve": serve, "stop": stop, "status": status, "schema": schema}
    return verbs[options.verb](options)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
