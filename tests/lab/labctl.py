"""labctl: bring the lab up and down. `labctl up|down|status|env` (see tests/lab/README.md).

Standard library only, so `env` and `down` work before the venv exists.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lab_config  # noqa: E402
import pglab  # noqa: E402

STATE = lab_config.STATE_DIR
VENV_PYTHON = lab_config.REPO_ROOT / ".venv" / "bin" / "python"
START_TIMEOUT_S = 60


def log(message: str) -> None:
    print(f"labctl: {message}", file=sys.stderr, flush=True)


# -- processes ---------------------------------------------------------------------------
def read_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def start_process(name: str, command: list[str], pid_file: Path, cwd: Path | None = None, env: dict | None = None) -> None:
    if read_pid(pid_file):
        return
    log_file = open(STATE / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               cwd=cwd, env=env, start_new_session=True)
    pid_file.write_text(str(process.pid))


def stop_process(name: str, pid_file: Path, timeout: float = 20) -> None:
    pid = read_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and read_pid(pid_file):
        time.sleep(0.1)
    if read_pid(pid_file):
        log(f"{name} did not stop on SIGTERM; killing it")
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    pid_file.unlink(missing_ok=True)


def wait_for(description: str, check, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last reason
            last_error = str(exc)
        time.sleep(0.2)
    raise SystemExit(f"labctl: {description} did not come up within {timeout:.0f} s {last_error}; see {STATE}/*.log")


def tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def dns_answers(address: str, name: str, rdtype: int = 6) -> bool:
    """One raw DNS query (stdlib only): True when the server answers NOERROR."""
    import random
    import struct

    query_id = random.randint(0, 65535)
    labels = b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split(".")) + b"\x00"
    packet = struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + labels + struct.pack("!HH", rdtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        sock.sendto(packet, (address, lab_config.DNS_PORT))
        reply, _sender = sock.recvfrom(4096)
    return len(reply) >= 12 and reply[:2] == packet[:2] and (reply[3] & 0x0F) == 0


# -- loopback addresses ------------------------------------------------------------------
def ensure_loopback_addresses() -> None:
    addresses = [*lab_config.ACCOUNT_DNS_ADDRESSES.values(), *lab_config.VPC_RESOLVER_ADDRESSES.values(),
                 lab_config.REGISTRY_DNS_ADDRESS, lab_config.RESOLVER_ADDRESS,
                 *(server["host"] for server in lab_config.MYSQL_SERVERS.values())]
    if not shutil.which("ip"):
        return  # all of 127.0.0.0/8 is local on Linux; the explicit addresses only make them visible
    present = subprocess.run(["ip", "-4", "addr", "show", "dev", "lo"], capture_output=True, text=True, check=False).stdout
    for address in addresses:
        if f"inet {address}/" not in present:
            subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"], capture_output=True, check=False)


# -- MariaDB -----------------------------------------------------------------------------
def mysql_paths(side: str) -> dict[str, Path]:
    base = STATE / f"mysql-{side}"
    return {"base": base, "data": base / "data", "socket": base / "mysqld.sock", "pid": base / "mysqld.pid",
            "binlog": base / "binlog" / "mysql-bin"}


def mariadb_server_binary() -> str:
    for name in ("mariadbd", "mysqld"):
        for directory in ("/usr/sbin", "/usr/bin"):
            if os.access(f"{directory}/{name}", os.X_OK):
                return f"{directory}/{name}"
    raise SystemExit("labctl: mariadbd not found; run `make setup` (installs Debian's mariadb-server)")


def start_mysql(side: str) -> None:
    paths = mysql_paths(side)
    server = lab_config.MYSQL_SERVERS[side]
    if read_pid(paths["pid"]) and tcp_open(server["host"], server["port"]):
        return
    paths["binlog"].parent.mkdir(parents=True, exist_ok=True)
    fresh = not (paths["data"] / "mysql").exists()
    if fresh:
        paths["data"].mkdir(parents=True, exist_ok=True)
        installer = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
        if not installer:
            raise SystemExit("labctl: mariadb-install-db not found; run `make setup`")
        subprocess.run([installer, "--no-defaults", f"--datadir={paths['data']}", "--user=root",
                        "--auth-root-authentication-method=socket", "--skip-test-db"],
                       check=True, capture_output=True)
    command = [
        mariadb_server_binary(), "--no-defaults", f"--datadir={paths['data']}", f"--socket={paths['socket']}",
        f"--pid-file={paths['pid']}", f"--port={server['port']}", f"--bind-address={server['host']}", "--user=root",
        f"--server-id={server['server_id']}", f"--log-bin={paths['binlog']}", "--binlog-format=ROW",
        "--binlog-row-image=FULL", "--log-slave-updates", "--skip-name-resolve",
        f"--log-error={paths['base'] / 'error.log'}", "--innodb-buffer-pool-size=2G",
        "--innodb-log-file-size=256M", "--innodb-flush-log-at-trx-commit=2", "--sync-binlog=0",
        "--max-allowed-packet=256M", "--max-connections=400", "--character-set-server=utf8mb4",
        "--collation-server=utf8mb4_unicode_ci", "--expire-logs-days=2",
    ]
    log_file = open(STATE / f"mysql-{side}.log", "ab")  # noqa: SIM115 - handed to the child
    subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    wait_for(f"MariaDB {side}", lambda: paths["socket"].exists() and tcp_open(server["host"], server["port"]))
    grant = (f"CREATE USER IF NOT EXISTS '{lab_config.MYSQL_USER}'@'%' IDENTIFIED BY '{lab_config.MYSQL_PASSWORD}';"
             f"CREATE USER IF NOT EXISTS '{lab_config.MYSQL_USER}'@'localhost' IDENTIFIED BY '{lab_config.MYSQL_PASSWORD}';"
             f"GRANT ALL PRIVILEGES ON *.* TO '{lab_config.MYSQL_USER}'@'%' WITH GRANT OPTION;"
             f"GRANT ALL PRIVILEGES ON *.* TO '{lab_config.MYSQL_USER}'@'localhost' WITH GRANT OPTION;"
             "FLUSH PRIVILEGES;")
    client = shutil.which("mariadb") or shutil.which("mysql") or "mariadb"
    subprocess.run([client, "--no-defaults", f"--socket={paths['socket']}", "-uroot", "-e", grant], check=True, capture_output=True)


def stop_mysql(side: str) -> None:
    stop_process(f"MariaDB {side}", mysql_paths(side)["pid"], timeout=60)


# -- unbound -----------------------------------------------------------------------------
def unbound_config() -> str:
    directory = STATE / "unbound"
    parent = lab_config.ACCOUNT_DNS_ADDRESSES[lab_config.ACCOUNT_PARENT]
    stubs = [(lab_config.PARENT_ZONE, parent), (lab_config.NAME_SERVER_DOMAIN, lab_config.REGISTRY_DNS_ADDRESS),
             (lab_config.LOAD_BALANCER_DOMAIN, lab_config.REGISTRY_DNS_ADDRESS)]
    lines = [
        "server:",
        f"  interface: {lab_config.RESOLVER_ADDRESS}",
        f"  port: {lab_config.DNS_PORT}",
        "  do-ip6: no",
        "  access-control: 127.0.0.0/8 allow",
        '  username: ""',
        '  chroot: ""',
        f'  directory: "{directory}"',
        f'  pidfile: "{directory / "unbound.pid"}"',
        "  use-syslog: no",
        f'  logfile: "{directory / "unbound.log"}"',
        "  verbosity: 1",
        "  num-threads: 1",
        # The lab's authoritative servers live on loopback addresses, which unbound skips by default.
        "  do-not-query-localhost: no",
        # No DNSSEC in the lab; validation would also need a trust anchor it cannot fetch.
        '  module-config: "iterator"',
        "  qname-minimisation: no",
        "  prefetch: no",
        "  serve-expired: no",
        # Route53's SOA gives negative answers 900 s; tests create names they asked for moments ago.
        "  cache-max-negative-ttl: 5",
        # A lab server restarted by a test must not be shunned for the default 15 minutes.
        "  infra-host-ttl: 10",
        "  infra-keep-probing: yes",
    ]
    for zone, _address in stubs:
        lines.append(f'  local-zone: "{zone}" nodefault')
        lines.append(f'  domain-insecure: "{zone}"')
    lines += ["remote-control:", "  control-enable: no"]
    for zone, address in stubs:
        lines += ["stub-zone:", f'  name: "{zone}"', f"  stub-addr: {address}"]
    return "\n".join(lines) + "\n"


def start_unbound() -> None:
    directory = STATE / "unbound"
    directory.mkdir(parents=True, exist_ok=True)
    pid_file = STATE / "unbound.pid"
    if read_pid(pid_file):
        return
    config = directory / "unbound.conf"
    config.write_text(unbound_config())
    checker = shutil.which("unbound-checkconf")
    if checker:
        checked = subprocess.run([checker, str(config)], capture_output=True, text=True, check=False)
        if checked.returncode != 0:
            raise SystemExit(f"labctl: unbound config rejected: {checked.stdout}{checked.stderr}")
    binary = shutil.which("unbound") or "/usr/sbin/unbound"
    start_process("unbound", [binary, "-d", "-c", str(config)], pid_file)
    wait_for("unbound", lambda: dns_answers(lab_config.RESOLVER_ADDRESS, lab_config.PARENT_ZONE))


# -- labd (moto + authoritative DNS) -------------------------------------------------------
def start_labd() -> bool:
    """Start moto + DNS unless running; True when a new process (with empty AWS state) was started."""
    pid_file = STATE / "labd.pid"
    ready = STATE / "labd.ready"
    if read_pid(pid_file) and tcp_open(lab_config.MOTO_HOST, lab_config.MOTO_PORT):
        return False
    stop_process("labd", pid_file)  # one still shutting down, or hung: it must not hold the ports
    ready.unlink(missing_ok=True)
    python = str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable
    env = dict(os.environ)
    env.update({"PYTHONUNBUFFERED": "1", "LAB_STATE_DIR": str(STATE)})
    start_process("labd", [python, str(lab_config.LAB_DIR / "labd.py")], pid_file, cwd=lab_config.LAB_DIR, env=env)
    wait_for("labd (moto + DNS)", lambda: ready.exists() and read_pid(pid_file) is not None)
    return True


# -- verbs -------------------------------------------------------------------------------
def checks() -> list[tuple[str, bool, str]]:
    results = []
    moto_up = tcp_open(lab_config.MOTO_HOST, lab_config.MOTO_PORT)
    results.append(("moto", moto_up, lab_config.ENDPOINT_URL))
    for label, address in (("dns parent", lab_config.ACCOUNT_DNS_ADDRESSES[lab_config.ACCOUNT_PARENT]),
                           ("resolver", lab_config.RESOLVER_ADDRESS)):
        try:
            up = dns_answers(address, lab_config.PARENT_ZONE)
        except OSError:
            up = False
        results.append((label, up, f"{address}:{lab_config.DNS_PORT}"))
    for side, server in lab_config.MYSQL_SERVERS.items():
        results.append((f"mysql {side}", tcp_open(server["host"], server["port"]), f"{server['host']}:{server['port']}"))
    for side, host in pglab.SERVERS.items():
        results.append((f"postgres {side}", tcp_open(host, pglab.PORT), f"{host}:{pglab.PORT}"))
    return results


def up() -> int:
    STATE.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    ensure_loopback_addresses()
    start_mysql("old")
    start_mysql("new")
    pglab.up()
    if start_labd():
        # A new labd has new zones (new ids, new name servers): answers unbound cached from the
        # old one, like the parent zone's NS set with its two-day TTL, would point nowhere.
        stop_process("unbound", STATE / "unbound.pid")
    start_unbound()
    failing = [name for name, ok, _where in checks() if not ok]
    if failing:
        log(f"not healthy after start: {', '.join(failing)}; see {STATE}/*.log")
        return 1
    log(f"lab up in {time.monotonic() - started:.1f} s")
    return 0


def down(purge: bool = False) -> int:
    if STATE.exists():
        stop_process("unbound", STATE / "unbound.pid")
        stop_process("labd", STATE / "labd.pid")
        stop_mysql("old")
        stop_mysql("new")
        pglab.down()  # before the generic loop: PostgreSQL wants pg_ctl -m fast, not SIGTERM
        for extra in sorted(STATE.glob("*.pid")):  # processes other lab pieces registered
            stop_process(extra.stem, extra)
        (STATE / "labd.ready").unlink(missing_ok=True)
        if purge:
            shutil.rmtree(STATE, ignore_errors=True)
    log("lab down" + (" (state removed)" if purge else ""))
    return 0


def status() -> int:
    results = checks()
    for name, ok, where in results:
        print(f"{name:<12} {'up' if ok else 'DOWN':<5} {where}")
    return 0 if all(ok for _name, ok, _where in results) else 1


def env() -> int:
    for name, value in lab_config.lab_environment().items():
        print(f"export {name}={value}")
    return 0


def main(argv: list[str]) -> int:
    verbs = {"up": up, "down": down, "status": status, "env": env}
    if not argv or argv[0] not in verbs:
        print("usage: labctl up|down [--purge]|status|env", file=sys.stderr)
        return 2
    if argv[0] == "down":
        return down(purge="--purge" in argv[1:])
    return verbs[argv[0]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
