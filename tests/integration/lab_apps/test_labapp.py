"""labapp serves the shop from the DB its host name points at, and follows that name when it moves."""

from __future__ import annotations

import json
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from lab_apps_helpers import http_request, mysql_connect, run_labapp, upsert_a, wait_for_response


def split(listen: str) -> tuple[str, int]:
    address, _sep, port = listen.rpartition(":")
    return address, int(port)


def test_an_order_written_is_in_the_database_and_read_back(lab, app_database, start_app):
    database = app_database(users=30, products=7)
    instance, listen = start_app(database)
    address, port = split(listen)

    created = http_request(address, port, "POST", "/orders", {"user_id": 12, "amount": "12.34"})
    read_back = http_request(address, port, "GET", f"/orders/{created.body['id']}")
    with mysql_connect(lab["LAB_MYSQL_OLD"], database) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT user_id, amount, served_by FROM orders WHERE id = %s", (created.body["id"],))
        row = cursor.fetchone()

    assert created.status == 201 and created.body["served_by"] == instance
    assert created.headers["x-served-by"] == instance and created.headers["x-side"] == "old"
    assert row == (12, Decimal("12.34"), instance)
    assert read_back.status == 200
    assert (read_back.body["user_id"], read_back.body["amount"], read_back.body["served_by"]) == (12, "12.34", instance)
    assert http_request(address, port, "GET", "/orders/999999999").status == 404


def test_home_page_counts_products_and_calls_the_internal_api_by_name(lab, app_database, start_app, delegated_zone):
    database = app_database(users=30, products=7)
    api_instance, api_listen = start_app(database, role="api")
    api_address, api_port = split(api_listen)
    route53, zone_id, zone = delegated_zone()
    upsert_a(route53, zone_id, f"api.{zone}", api_address, 60)
    web_instance, web_listen = start_app(database, api_url=f"http://api.{zone.rstrip('.')}:{api_port}")

    home = wait_for_response(lambda: http_request(*split(web_listen)), lambda r: "instance" in r.body["api"],
                             timeout=15, what="web reaches the API by name")
    user = http_request(api_address, api_port, "GET", "/users/3")

    assert home.body["products"] == 7
    assert home.body["api"]["instance"] == api_instance and home.body["api"]["users"] == 30
    assert home.body["api"]["address"] == api_address
    assert home.body["db_address"] == "127.0.56.1"
    assert home.headers["x-served-by"] == web_instance
    assert user.status == 200 and user.body["email"] == "user3@shop.test"


def test_a_db_host_name_flip_moves_writes_to_the_other_server_after_the_ttl(lab, app_database, start_app, delegated_zone):
    database = app_database("old")
    app_database("new", name=database)
    with mysql_connect(lab["LAB_MYSQL_NEW"], database) as connection, connection.cursor() as cursor:
        cursor.execute("ALTER TABLE orders AUTO_INCREMENT = 5000000")  # ids tell the servers apart
    route53, zone_id, zone = delegated_zone()
    db_name = f"db.{zone.rstrip('.')}"
    upsert_a(route53, zone_id, db_name, "127.0.56.1", 2)
    _instance, listen = start_app(database, db_host=db_name)
    address, port = split(listen)
    before = wait_for_response(lambda: http_request(address, port, "POST", "/orders", {"user_id": 1, "amount": "1.00"}),
                               lambda r: r.status == 201, timeout=15, what="first write through the DB name")

    flipped_at = time.monotonic()
    upsert_a(route53, zone_id, db_name, "127.0.56.2", 2)
    after = wait_for_response(lambda: http_request(address, port, "POST", "/orders", {"user_id": 2, "amount": "2.00"}),
                              lambda r: r.status == 201 and r.body["id"] >= 5000000, timeout=15, interval=0.25,
                              what="a write landing on the new server")
    moved_after_s = time.monotonic() - flipped_at

    def order_ids(side: str) -> set[int]:
        with mysql_connect(lab[f"LAB_MYSQL_{side}"], database) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT id FROM orders WHERE served_by LIKE 't-%'")
            return {row[0] for row in cursor.fetchall()}

    assert before.body["id"] in order_ids("OLD") and before.body["id"] < 5000000
    assert after.body["id"] in order_ids("NEW") and after.body["id"] not in order_ids("OLD")
    # TTL 2 s in the app's cache on top of at most 2 s in the resolver's, plus a loaded machine's slack.
    assert moved_after_s < 10
    assert http_request(address, port).body["db_address"] == "127.0.56.2"


def test_a_read_only_database_rejects_writes_with_503_and_keeps_serving_reads(private_mariadb, start_app):
    database = "shop_frozen"
    run_labapp("schema", "--db-url", private_mariadb["url"], "--db-name", database, "--users", "5", "--orders", "3",
               "--products", "2", "--app-user", "shop_app", "--app-password", "app-pw")
    _instance, listen = start_app(database, db_host=private_mariadb["host"], db_user="shop_app", db_password="app-pw")
    address, port = split(listen)
    assert http_request(address, port, "POST", "/orders", {"user_id": 1, "amount": "1.00"}).status == 201

    with mysql_connect(private_mariadb["url"]) as connection, connection.cursor() as cursor:
        cursor.execute("SET GLOBAL read_only = ON")
    rejected = http_request(address, port, "POST", "/orders", {"user_id": 1, "amount": "1.00"})
    read = http_request(address, port)

    assert (rejected.status, rejected.body) == (503, {"error": "read-only"})
    assert rejected.headers["x-side"] == "old"
    assert read.status == 200 and read.body["products"] == 2


def test_start_is_idempotent_and_restarts_only_on_changed_arguments(lab, app_database, start_app):
    database = app_database()
    instance, listen = start_app(database)
    args = ["start", "--role", "web", "--instance", instance, "--listen", listen, "--side", "old",
            "--db-host", "127.0.56.1", "--db-name", database, "--resolver", lab["LAB_RESOLVER"]]
    pid_before = json.loads(run_labapp("status", "--instance", instance).stdout)["pid"]

    again = run_labapp(*args)
    switched = run_labapp(*[("new" if value == "old" else value) for value in args])
    status = run_labapp("status", "--instance", instance)
    stopped = run_labapp("stop", "--instance", instance)
    stopped_again = run_labapp("stop", "--instance", instance)
    after_stop = run_labapp("status", "--instance", instance, check=False)

    assert again.stdout.splitlines()[-1] == "unchanged"
    assert switched.stdout.splitlines()[-1] == "changed"
    assert json.loads(status.stdout)["side"] == "new" and json.loads(status.stdout)["pid"] != pid_before
    assert (stopped.stdout.splitlines()[-1], stopped_again.stdout.splitlines()[-1]) == ("changed", "unchanged")
    assert after_stop.returncode != 0


def test_schema_is_idempotent_and_does_not_reseed(lab, app_database):
    database = app_database(users=100, orders=50, products=5)

    again = run_labapp("schema", "--db-url", lab["LAB_MYSQL_OLD"], "--db-name", database, "--users", "100", "--orders", "50")
    with mysql_connect(lab["LAB_MYSQL_OLD"], database) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM orders), (SELECT COUNT(*) FROM products)")
        counts = cursor.fetchone()

    assert again.stdout.splitlines()[-1] == "unchanged"
    assert counts == (100, 50, 5)


@pytest.mark.parametrize("bad", [["--listen", "127.0.57.9"], ["--instance", "../etc"]])
def test_start_rejects_bad_arguments_naming_the_option_and_leaves_nothing_behind(lab, bad):
    instance = f"t-bad-{uuid.uuid4().hex[:8]}"
    args = {"--role": "web", "--instance": instance, "--listen": "127.0.57.9:8080", "--side": "old",
            "--db-host": "127.0.56.1", "--db-name": "x"}
    args[bad[0]] = bad[1]
    completed = run_labapp("start", *[item for pair in args.items() for item in pair], check=False)

    assert completed.returncode != 0
    assert bad[0] in completed.stderr + completed.stdout
    assert not list(Path(lab["LAB_STATE_DIR"]).glob(f"labapp-{instance}.*"))
