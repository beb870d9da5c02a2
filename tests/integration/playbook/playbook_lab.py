"""Run the collection's playbooks against a freshly seeded lab environment of its own.

Each test world gets its own LAB_WORLD (zone, bucket, database, load balancer names) and
LAB_PORT_BASE (app ports), so tests, reruns and the demo never collide.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import dns.message
import dns.query
import pymysql

REPO_ROOT = Path(__file__).resolve().parents[3]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def ensure_collection_link() -> None:
    """ansible.cfg resolves cutover.migration.* through ./ansible_collections/cutover/migration."""
    link = REPO_ROOT / "ansible_collections" / "cutover" / "migration"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("../..")


@dataclass
class PlaybookRun:
    returncode: int
    stdout: str
    recap: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def changed_total(self) -> int:
        return sum(host["changed"] for host in self.recap.values())


@dataclass
class World:
    """One seeded lab environment (the inventory's ``dev`` group under a unique LAB_WORLD)."""

    name: str
    port_base: int
    environment: str = "dev"
    app_password: str = field(default_factory=lambda: f"app-{uuid.uuid4().hex[:12]}")

    @property
    def lab_name(self) -> str:
        return self.name if self.environment == "prod" else f"{self.name}-{self.environment}"

    @property
    def domain(self) -> str:
        return f"{self.lab_name}.test"

    @property
    def database(self) -> str:
        return self.lab_name.replace("-", "_")

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"LAB_WORLD": self.name, "LAB_PORT_BASE": str(self.port_base), "LAB_APP_DB_PASSWORD": self.app_password,
                    "LAB_SEED_ROWS": "300", "LAB_SEED_OBJECTS": "12", "ANSIBLE_NOCOLOR": "1",
                    "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg")})
        return env

    def playbook(self, playbook: str, *extra: str, timeout: float = 900, inventory: str = "inventories/lab") -> PlaybookRun:
        ensure_collection_link()
        command = [ANSIBLE_PLAYBOOK, playbook, "-i", inventory, "-l", self.environment, *extra]
        env = self.env()
        env["LAB_ROOT"] = str(REPO_ROOT)
        completed = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                                   timeout=timeout, check=False)
        output = completed.stdout + completed.stderr
        recap = {match[0]: {"ok": int(match[1]), "changed": int(match[2]), "unreachable": int(match[3]),
                            "failed": int(match[4])} for match in RECAP.findall(output)}
        return PlaybookRun(completed.returncode, output, recap)

    def seed(self) -> None:
        run = self.playbook("inventories/lab-support/seed.yml")
        assert run.returncode == 0, run.stdout[-4000:]

    def teardown(self) -> None:
        # read_only is global to the lab's one old server, which other tests and the demo share.
        with mysql("127.0.56.1") as connection, connection.cursor() as cursor:
            cursor.execute("SET GLOBAL read_only = OFF")
        for instance in (f"{self.lab_name}-web-old-1", f"{self.lab_name}-api-old-1",
                         f"{self.lab_name}-{self.environment}-web-new-1", f"{self.lab_name}-{self.environment}-api-new-1"):
            subprocess.run([sys.executable, str(REPO_ROOT / "tests" / "lab" / "labapp.py"), "stop", "--instance", instance],
                           capture_output=True, check=False)


def new_world() -> World:
    return World(name=f"pb{uuid.uuid4().hex[:6]}", port_base=random.randrange(20000, 29000, 100))


def account_session(account: str) -> boto3.Session:
    credentials = boto3.client("sts").assume_role(RoleArn=f"arn:aws:iam::{account}:role/test", RoleSessionName="playbook-test")["Credentials"]
    return boto3.Session(aws_access_key_id=credentials["AccessKeyId"], aws_secret_access_key=credentials["SecretAccessKey"],
                         aws_session_token=credentials["SessionToken"])


def resolve(resolver: str, name: str) -> set[str]:
    query = dns.message.make_query(name, "A")
    for _attempt in range(3):
        try:
            answer = dns.query.udp(query, resolver, timeout=5)
            return {item.address for rrset in answer.answer if rrset.rdtype == 1 for item in rrset}
        except dns.exception.Timeout:
            continue
    raise AssertionError(f"{resolver} did not answer {name}")


def mysql(host: str, database: str | None = None) -> pymysql.connections.Connection:
    return pymysql.connect(host=host, port=3306, user="lab", password="lab", database=database, autocommit=True)


def table_checksums(host: str, database: str, tables: list[str]) -> dict[str, int]:
    with mysql(host, database) as connection, connection.cursor() as cursor:
        cursor.execute(f"CHECKSUM TABLE {', '.join(f'`{table}`' for table in tables)}")
        return {row[0].split(".")[-1]: row[1] for row in cursor.fetchall()}


def scalar(host: str, sql: str, database: str | None = None):
    with mysql(host, database) as connection, connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]
