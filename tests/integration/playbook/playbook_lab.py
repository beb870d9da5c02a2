"""Run the collection's playbooks against a freshly seeded lab environment of its own.

Each test world gets its own LAB_WORLD (zone, bucket, database, load balancer names) and
LAB_PORT_BASE (app ports), so tests, reruns and the demo never collide.
"""

from __future__ import annotations

import os
import random
import re
import socket
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
MYSQL_OLD = "127.0.56.1"
MYSQL_NEW = "127.0.56.2"
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

    def teardown(self, unfreeze: bool = True) -> None:
        if unfreeze:
            unfreeze_lab_servers()
        for instance in (f"{self.lab_name}-web-old-1", f"{self.lab_name}-api-old-1",
                         f"{self.lab_name}-{self.environment}-web-new-1", f"{self.lab_name}-{self.environment}-api-new-1"):
            subprocess.run([sys.executable, str(REPO_ROOT / "tests" / "lab" / "labapp.py"), "stop", "--instance", instance],
                           capture_output=True, check=False)


def dns_flip_record(world: World) -> Path:
    """The file the DNS stage writes on the control host when its flip went live (default cutover_state_dir)."""
    return Path(os.environ["HOME"]) / ".cache" / "cutover.migration" / f"{world.environment}-{world.domain}-dns-flip.json"


def unfreeze_lab_servers() -> None:
    """SET GLOBAL read_only = OFF on both lab MariaDB servers.

    read_only is global to the lab's one old server (the DB stage freezes it) and one new server
    (the rollback's reverse delta freezes it), which every other test and the demo share: any test
    that runs a DB stage calls this in a ``finally``.
    """
    for host in (MYSQL_OLD, MYSQL_NEW):
        with mysql(host) as connection, connection.cursor() as cursor:
            cursor.execute("SET GLOBAL read_only = OFF")


# The dev environment's old and new hosts (inventories/lab): every dev world listens on these.
DEV_HOST_ADDRESSES = ("127.0.57.101", "127.0.57.111", "127.0.58.101", "127.0.58.111")


def port_free(address: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((address, port)) != 0


def new_world() -> World:
    """A world name and a port base whose app ports nobody listens on (worlds left running keep theirs)."""
    for _attempt in range(50):
        port_base = random.randrange(20000, 29000, 100)
        if all(port_free(address, port_base + offset) for address in DEV_HOST_ADDRESSES for offset in (80, 81)):
            return World(name=f"pb{uuid.uuid4().hex[:6]}", port_base=port_base)
    raise AssertionError("no free port base for a lab world in 20000-29000: stop the labapp instances left running")


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


def authoritative_answer(server: str, name: str) -> set[str]:
    """The A addresses one authoritative server answers (aliases resolved by the lab's DNS server), no cache."""
    return resolve(server, name)


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


def load_balancer_address(world: World, lab: dict, side: str) -> str:
    """The lab address the ``old``/``new`` load balancer of the world answers on (through the resolver)."""
    account = lab["LAB_ACCOUNT_OLD"] if side == "old" else lab["LAB_ACCOUNT_NEW"]
    elbv2 = account_session(account).client("elbv2")
    dns_name = elbv2.describe_load_balancers(Names=[f"{world.lab_name}-{side}"])["LoadBalancers"][0]["DNSName"]
    return next(iter(resolve(lab["LAB_RESOLVER"], dns_name)))


def new_load_balancer_address(world: World, lab: dict) -> str:
    return load_balancer_address(world, lab, "new")


def target_group_members(account: str, group: str) -> set[str]:
    elbv2 = account_session(account).client("elbv2")
    arn = elbv2.describe_target_groups(Names=[group])["TargetGroups"][0]["TargetGroupArn"]
    return {f"{t['Target']['Id']}:{t['Target'].get('Port')}"
            for t in elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]}


def hosted_zone_names(account: str) -> set[str]:
    route53 = account_session(account).client("route53")
    return {zone["Name"] for page in route53.get_paginator("list_hosted_zones").paginate() for zone in page["HostedZones"]}


def table_count(host: str, database: str) -> int:
    return scalar(host, f"SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{database}'")


def global_read_only(host: str) -> int:
    return scalar(host, "SELECT @@GLOBAL.read_only")


def assert_migrated(world: World, lab: dict) -> None:
    """The end state of an uninterrupted migrate.yml, as a user would check it."""
    # Public name on the new load balancer, DB endpoint on the new server, through the resolver.
    assert resolve(lab["LAB_RESOLVER"], f"www.{world.domain}") == {new_load_balancer_address(world, lab)}
    assert resolve(lab["LAB_RESOLVER"], f"db.{world.domain}") == {MYSQL_NEW}
    assert resolve(lab["LAB_VPC_RESOLVER_NEW"], f"api.{world.lab_name}.internal") == {"127.0.58.111"}
    # Rows: users and products equal on both servers; orders: every source row plus the smoke-test writes.
    assert table_checksums(MYSQL_OLD, world.database, ["users", "products"]) == \
        table_checksums(MYSQL_NEW, world.database, ["users", "products"])
    source_orders = scalar(MYSQL_OLD, "SELECT COUNT(*) FROM orders", world.database)
    last_source_order = scalar(MYSQL_OLD, "SELECT MAX(id) FROM orders", world.database)
    assert scalar(MYSQL_NEW, f"SELECT COUNT(*) FROM orders WHERE id <= {last_source_order}", world.database) == source_orders
    assert scalar(MYSQL_NEW, f"SELECT COUNT(*) FROM orders WHERE id > {last_source_order}", world.database) >= 1  # smoke write
    assert scalar(MYSQL_NEW, "SELECT COUNT(*) - COUNT(DISTINCT id) FROM orders", world.database) == 0
    next_id = scalar(MYSQL_NEW, "SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
                                "AND TABLE_NAME = 'orders'", world.database)
    assert next_id > scalar(MYSQL_NEW, "SELECT MAX(id) FROM orders", world.database)
    # Objects: every source key in the new bucket with the same size.
    old_s3 = account_session(lab["LAB_ACCOUNT_OLD"]).client("s3")
    new_s3 = account_session(lab["LAB_ACCOUNT_NEW"]).client("s3")
    source = {o["Key"]: o["Size"] for o in old_s3.list_objects_v2(Bucket=f"{world.lab_name}-models")["Contents"]}
    target = {o["Key"]: o["Size"] for o in new_s3.list_objects_v2(Bucket=f"{world.lab_name}-models-{lab['LAB_ACCOUNT_NEW']}")["Contents"]}
    assert target == source
    # The new web host is in service behind both load balancers.
    for account, group in ((lab["LAB_ACCOUNT_OLD"], f"{world.lab_name}-web-old"), (lab["LAB_ACCOUNT_NEW"], f"{world.lab_name}-web-new")):
        assert f"127.0.58.101:{world.port_base + 80}" in target_group_members(account, group)


def assert_untouched(world: World, lab: dict) -> None:
    """Nothing of the migration happened: the state a freshly seeded world has (after a check-mode run too)."""
    assert f"{world.domain}." not in hosted_zone_names(lab["LAB_ACCOUNT_NEW"])
    new_s3 = account_session(lab["LAB_ACCOUNT_NEW"]).client("s3")
    assert f"{world.lab_name}-models-{lab['LAB_ACCOUNT_NEW']}" not in {b["Name"] for b in new_s3.list_buckets()["Buckets"]}
    assert table_count(MYSQL_NEW, world.database) == 0
    assert global_read_only(MYSQL_OLD) == 0
    assert target_group_members(lab["LAB_ACCOUNT_NEW"], f"{world.lab_name}-web-new") == set()
    assert target_group_members(lab["LAB_ACCOUNT_OLD"], f"{world.lab_name}-web-old") == {f"127.0.57.101:{world.port_base + 80}"}
    assert resolve(lab["LAB_RESOLVER"], f"www.{world.domain}") == {load_balancer_address(world, lab, "old")}
    assert resolve(lab["LAB_RESOLVER"], f"db.{world.domain}") == {MYSQL_OLD}
    assert resolve(lab["LAB_VPC_RESOLVER_NEW"], f"api.{world.lab_name}.internal") == set()
    assert resolve(lab["LAB_VPC_RESOLVER_OLD"], f"api.{world.lab_name}.internal") == {"127.0.57.111"}
    # No new app was started on the new hosts' addresses.
    for address, port in (("127.0.58.101", world.port_base + 80), ("127.0.58.111", world.port_base + 81)):
        assert port_free(address, port), f"something listens on {address}:{port}"
