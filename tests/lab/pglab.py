"""pglab: the lab's two PostgreSQL servers. `pglab up|down|status|env`.

Debian's postgresql (``apt-get install -y postgresql postgresql-contrib``); each server gets its
own loopback address on the standard port, like the MariaDB pair, so a database endpoint flip
can be a pure DNS change. Both run with ``wal_level=logical`` so the ``logical`` strategy of
postgresql_delta_apply can create slots on either side.

Standard library only, so `env` and `down` work before the venv exists.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

LAB_DIR = Path(__file__).resolve().parent
STATE = Path(os.environ.get("LAB_STATE_DIR", LAB_DIR / "state"))
USER = "lab"
PASSWORD = "lab"
PORT = 5432
SERVERS = {"old": "127.0.56.11", "new": "127.0.56.12"}
# initdb and postgres refuse to run as root; Debian's package creates this account.
OS_USER = "postgres"
START_TIMEOUT_S = 60

SETTINGS = {
    "port": str(PORT),
    "wal_level": "logical",
    "max_replication_slots": "20",
    "max_wal_senders": "20",
    "max_connections": "200",
    "shared_buffers": "256MB",
    "maintenance_work_mem": "256MB",
    "work_mem": "32MB",
    "max_wal_size": "4GB",
    # A lab server holds throw-away data: durability is traded for speed, on both sides alike,
    # so benchmarks compare tools, not disk flushes.
    "fsync": "off",
    "full_page_writes": "off",
    "logging_collector": "off",
    "log_min_messages": "warning",
}


def log(message: str) -> None:
    print(f"pglab: {message}", file=sys.stderr, flush=True)


def bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise SystemExit("pglab: PostgreSQL not found under /usr/lib/postgresql/*/bin; "
                         "run `apt-get install -y postgresql postgresql-contrib`")
    return Path(found[-1]).parent


def paths(side: str) -> dict[str, Path]:
    return {"data": STATE / f"pg-{side}", "pid": STATE / f"pg-{side}.pid", "log": STATE / f"pg-{side}.log"}


def as_postgres(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        command = ["runuser", "-u", OS_USER, "--", *command]
    return subprocess.run(command, check=kwargs.pop("check", False), **kwargs)


def tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def read_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return pid


def ensure_loopback(address: str) -> None:
    if not shutil.which("ip"):
        return  # all of 127.0.0.0/8 is local on Linux; the explicit address only makes it visible
    present = subprocess.run(["ip", "-4", "addr", "show", "dev", "lo"], capture_output=True, text=True, check=False).stdout
    if f"inet {address}/" not in present:
        subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"], capture_output=True, check=False)


def initialise(side: str) -> None:
    data = paths(side)["data"]
    if (data / "PG_VERSION").exists():
        return
    data.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(data, OS_USER, OS_USER)
    data.chmod(0o700)
    password_file = STATE / f"pg-{side}.pwfile"
    password_file.write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(password_file, OS_USER, OS_USER)
    done = as_postgres([str(bin_dir() / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={password_file}",
                        "-E", "UTF8", "--locale=C.UTF-8", "--auth-local=trust", "--auth-host=scram-sha-256"],
                       capture_output=True, text=True, check=False)
    password_file.unlink(missing_ok=True)
    if done.returncode != 0:
        raise SystemExit(f"pglab: initdb for {side} failed: {done.stderr.strip()}")
    settings = dict(SETTINGS, listen_addresses=f"'{SERVERS[side]}'", unix_socket_directories=f"'{data}'")
    with open(data / "postgresql.conf", "a", encoding="utf-8") as conf:
        conf.write("\n# pglab\n")
        for name, value in settings.items():
            conf.write(f"{name} = {value}\n")
    with open(data / "pg_hba.conf", "a", encoding="utf-8") as hba:
        hba.write("host all all 127.0.0.0/8 scram-sha-256\nhost replication all 127.0.0.0/8 scram-sha-256\n")


def start(side: str) -> None:
    files = paths(side)
    host = SERVERS[side]
    if read_pid(files["pid"]) and tcp_open(host, PORT):
        return
    ensure_loopback(host)
    initialise(side)
    stale = files["data"] / "postmaster.pid"
    if stale.exists() and not tcp_open(host, PORT):
        # A server killed without a clean stop leaves its lock file; pg_ctl refuses to start over it
        # only while that pid is alive, so a dead one is safe to clear.
        pid_text = stale.read_text().split("\n")[0]
        if not pid_text.isdigit() or not _alive(int(pid_text)):
            stale.unlink()
    files["log"].touch()
    if os.geteuid() == 0:
        shutil.chown(files["log"], OS_USER, OS_USER)
    done = as_postgres([str(bin_dir() / "pg_ctl"), "-D", str(files["data"]), "-l", str(files["log"]), "-w",
                        "-t", str(START_TIMEOUT_S), "start"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"pglab: PostgreSQL {side} did not start: {done.stdout.strip()} {done.stderr.strip()}; "
                         f"see {files['log']}")
    postmaster = (files["data"] / "postmaster.pid").read_text().split("\n")[0].strip()
    files["pid"].write_text(postmaster + "\n")
    deadline = time.monotonic() + START_TIMEOUT_S
    while not tcp_open(host, PORT):
        if time.monotonic() > deadline:
            raise SystemExit(f"pglab: PostgreSQL {side} does not answer on {host}:{PORT}; see {files['log']}")
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop(side: str) -> None:
    files = paths(side)
    if (files["data"] / "PG_VERSION").exists() and (files["data"] / "postmaster.pid").exists():
        as_postgres([str(bin_dir() / "pg_ctl"), "-D", str(files["data"]), "-m", "fast", "-w", "stop"],
                    capture_output=True, check=False)
    pid = read_pid(files["pid"])
    if pid is not None:
        # labctl's generic stop sends SIGTERM (a "smart" shutdown that waits for clients);
        # SIGINT is PostgreSQL's fast shutdown, used here if pg_ctl could not do it.
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    files["pid"].unlink(missing_ok=True)


def environment() -> dict[str, str]:
    return {f"LAB_PG_{side.upper()}": f"postgresql://{USER}:{PASSWORD}@{host}:{PORT}/postgres"
            for side, host in SERVERS.items()}


def up() -> int:
    STATE.mkdir(parents=True, exist_ok=True)
    for side in SERVERS:
        start(side)
    log("PostgreSQL old/new up")
    return 0


def down() -> int:
    for side in SERVERS:
        stop(side)
    log("PostgreSQL old/new down")
    return 0


def status() -> int:
    ok = True
    for side, host in SERVERS.items():
        answering = tcp_open(host, PORT) and read_pid(paths(side)["pid"]) is not None
        ok = ok and answering
        print(f"{'postgres ' + side:<12} {'up' if answering else 'DOWN':<5} {host}:{PORT}")
    return 0 if ok else 1


def env() -> int:
    for name, value in environment().items():
        print(f"export {name}={value}")
    return 0


def main(argv: list[str]) -> int:
    verbs = {"up": up, "down": down, "status": status, "env": env}
    if len(argv) != 1 or argv[0] not in verbs:
        print("usage: pglab up|down|status|env", file=sys.stderr)
        return 2
    return verbs[argv[0]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
