"""playbooks/rollback.yml after a finished migration: names back on the old side, the new side's writes with them."""

from __future__ import annotations

import json
import urllib.request
from decimal import Decimal

import pytest
from playbook_lab import (
    MYSQL_NEW,
    MYSQL_OLD,
    authoritative_answer,
    dns_flip_record,
    global_read_only,
    load_balancer_address,
    mysql,
    resolve,
    scalar,
    table_checksums,
    target_group_members,
)

pytestmark = pytest.mark.timeout(900)

TABLES = ["users", "orders", "products"]


def post_order(address: str, port: int, user_id: int, amount: str) -> dict:
    request = urllib.request.Request(f"http://{address}:{port}/orders", method="POST", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"user_id": user_id, "amount": amount}).encode())
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201
        return json.loads(response.read())


def test_rollback_points_every_name_back_brings_the_new_side_writes_to_the_old_db_and_can_be_migrated_again(world, lab):
    # The DNS stage waits for the authoritative servers only: waiting out the old alias answer's 60 s
    # in the resolver (test_migrate_playbook covers it) would only be waited again by the rollback.
    migrated = world.playbook("playbooks/migrate.yml", "-e", '{"dns_stage_stages": ["authoritative"]}')
    assert migrated.returncode == 0, migrated.stdout[-6000:]
    assert resolve(lab["LAB_RESOLVER"], f"db.{world.domain}") == {MYSQL_NEW}
    first_flip = json.loads(dns_flip_record(world).read_text())["flipped_at"]
    assert authoritative_answer(lab["LAB_DNS_NEW"], f"www.{world.domain}") == {load_balancer_address(world, lab, "new")}
    # Writes after the cutover land on the new DB only: one through the new web app, two by hand.
    order = post_order("127.0.58.101", world.port_base + 80, 7, "42.42")
    with mysql(MYSQL_NEW, world.database) as connection, connection.cursor() as cursor:
        cursor.execute("UPDATE users SET name = 'renamed after the cutover' WHERE id = 3")
        cursor.execute("DELETE FROM orders WHERE id = 5")
    assert scalar(MYSQL_OLD, f"SELECT COUNT(*) FROM orders WHERE id = {order['id']}", world.database) == 0

    rolled_back = world.playbook("playbooks/rollback.yml")

    assert rolled_back.returncode == 0, rolled_back.stdout[-6000:]
    # Names: public name on the old load balancer, DB endpoint and internal API on the old side.
    assert resolve(lab["LAB_RESOLVER"], f"www.{world.domain}") == {load_balancer_address(world, lab, "old")}
    assert resolve(lab["LAB_RESOLVER"], f"db.{world.domain}") == {MYSQL_OLD}
    for resolver in (lab["LAB_VPC_RESOLVER_OLD"], lab["LAB_VPC_RESOLVER_NEW"]):
        assert resolve(resolver, f"api.{world.lab_name}.internal") == {"127.0.57.111"}
    assert target_group_members(lab["LAB_ACCOUNT_OLD"], f"{world.lab_name}-web-old") == {f"127.0.57.101:{world.port_base + 80}"}
    # Rows: the reverse delta made the old DB equal to the new one, the new side's writes included.
    assert table_checksums(MYSQL_OLD, world.database, TABLES) == table_checksums(MYSQL_NEW, world.database, TABLES)
    assert scalar(MYSQL_OLD, f"SELECT amount FROM orders WHERE id = {order['id']}", world.database) == Decimal("42.42")
    assert scalar(MYSQL_OLD, "SELECT name FROM users WHERE id = 3", world.database) == "renamed after the cutover"
    assert scalar(MYSQL_OLD, "SELECT COUNT(*) FROM orders WHERE id = 5", world.database) == 0
    assert scalar(MYSQL_OLD, "SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
                             "AND TABLE_NAME = 'orders'", world.database) > order["id"]
    # The old DB takes writes again, from the application's own account (no SUPER): through the old web host.
    assert global_read_only(MYSQL_OLD) == 0
    again = post_order("127.0.57.101", world.port_base + 80, 8, "1.50")
    assert again["id"] > order["id"]
    assert scalar(MYSQL_OLD, f"SELECT COUNT(*) FROM orders WHERE id = {again['id']}", world.database) == 1

    # A later migrate run must not count its DNS wait from the flip the rollback undid.
    assert not dns_flip_record(world).exists()

    rerun = world.playbook("playbooks/rollback.yml")
    assert rerun.returncode == 0, rerun.stdout[-6000:]
    assert rerun.changed_total == 0, {host: counts["changed"] for host, counts in rerun.recap.items()}

    # The rollback left the new DB frozen; migrating again unfreezes it after the flip, and the
    # smoke test's write through the application account (no SUPER) lands there.
    migrated_again = world.playbook("playbooks/migrate.yml", "-e", '{"dns_stage_stages": ["authoritative"]}')
    assert migrated_again.returncode == 0, migrated_again.stdout[-6000:]
    assert json.loads(dns_flip_record(world).read_text())["flipped_at"] > first_flip
    assert resolve(lab["LAB_RESOLVER"], f"db.{world.domain}") == {MYSQL_NEW}
    assert scalar(MYSQL_NEW, f"SELECT COUNT(*) FROM orders WHERE id > {again['id']}", world.database) >= 1
