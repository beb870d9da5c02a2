"""A load balancer created through the ELBv2 API really carries traffic to its registered targets."""

from __future__ import annotations

import socket
import threading
from collections import Counter

from lab_apps_helpers import as_target, free_listen_address, http_request, port_open, resolve, wait_until


def served_by(address: str, requests: int = 10) -> Counter:
    return Counter(http_request(address, 80).headers.get("x-served-by") for _n in range(requests))


def test_load_balancer_round_robins_across_its_registered_targets(app_database, start_app, load_balancer):
    database = app_database()
    first, first_listen = start_app(database)
    second, second_listen = start_app(database)
    balancer = load_balancer([first_listen, second_listen])

    response = http_request(balancer.address, 80)
    counts = served_by(balancer.address, 10)

    assert response.status == 200 and response.body["page"] == "home"
    assert response.headers["x-lab-load-balancer"] == balancer.name
    assert response.headers["x-side"] == "old"
    assert counts == Counter({first: 5, second: 5})


def test_load_balancer_passes_method_body_and_status_through(app_database, start_app, load_balancer):
    database = app_database()
    _instance, listen = start_app(database)
    balancer = load_balancer([listen])

    created = http_request(balancer.address, 80, "POST", "/orders", {"user_id": 7, "amount": "3.50"})
    missing = http_request(balancer.address, 80, "GET", "/orders/999999999")

    assert created.status == 201 and isinstance(created.body["id"], int)
    assert http_request(balancer.address, 80, "GET", f"/orders/{created.body['id']}").body["amount"] == "3.50"
    assert missing.status == 404


def test_deregistering_a_target_moves_all_traffic_to_the_other(lab_account, app_database, start_app, load_balancer):
    database = app_database()
    first, first_listen = start_app(database)
    second, second_listen = start_app(database)
    balancer = load_balancer([first_listen, second_listen])

    lab_account("old").client("elbv2").deregister_targets(TargetGroupArn=balancer.target_group_arn,
                                                          Targets=[as_target(first_listen)])

    assert served_by(balancer.address, 8) == Counter({second: 8})


def test_a_target_that_refuses_connections_is_skipped(app_database, start_app, load_balancer):
    database = app_database()
    instance, listen = start_app(database)
    address, _sep, port = listen.rpartition(":")
    nothing_listens = f"{address}:{int(port) + 100}"
    balancer = load_balancer([nothing_listens, listen])

    assert served_by(balancer.address, 6) == Counter({instance: 6})


def test_no_registered_targets_answers_503(lab_account, app_database, start_app, load_balancer):
    database = app_database()
    _instance, listen = start_app(database)
    balancer = load_balancer([listen])

    lab_account("old").client("elbv2").deregister_targets(TargetGroupArn=balancer.target_group_arn,
                                                          Targets=[as_target(listen)])
    response = http_request(balancer.address, 80)

    assert response.status == 503
    assert response.body == "no healthy targets"
    assert response.headers["x-lab-load-balancer"] == balancer.name


def test_deleting_the_load_balancer_stops_its_proxy(lab_account, load_balancer):
    balancer = load_balancer([])
    assert port_open(balancer.address, 80)

    lab_account("old").client("elbv2").delete_load_balancer(LoadBalancerArn=balancer.arn)

    wait_until(lambda: not port_open(balancer.address, 80), timeout=5, what="proxy stopped")


def test_alias_record_to_the_load_balancer_reaches_the_app_through_the_resolver(
        lab, app_database, start_app, load_balancer, delegated_zone):
    database = app_database()
    instance, listen = start_app(database)
    balancer = load_balancer([listen])
    route53, zone_id, zone = delegated_zone()
    route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{
        "Action": "UPSERT", "ResourceRecordSet": {"Name": f"www.{zone}", "Type": "A", "AliasTarget": {
            "HostedZoneId": balancer.hosted_zone_id, "DNSName": balancer.dns_name, "EvaluateTargetHealth": False}}}]})

    address = wait_until(lambda: resolve(lab["LAB_RESOLVER"], f"www.{zone}"), timeout=15, what="www resolves")
    response = http_request(address, 80, host=f"www.{zone}".rstrip("."))

    assert address == balancer.address
    assert response.status == 200
    assert response.headers["x-served-by"] == instance


def test_a_target_that_breaks_mid_request_gets_502_and_the_proxy_keeps_serving(app_database, start_app, load_balancer):
    database = app_database()
    instance, listen = start_app(database)
    broken = socket.socket()
    broken.bind((free_listen_address().rpartition(":")[0], 0))
    broken.listen(16)

    def accept_and_hang_up() -> None:
        while True:
            try:
                connection, _peer = broken.accept()
            except OSError:
                return
            connection.close()

    threading.Thread(target=accept_and_hang_up, daemon=True).start()
    address, port = broken.getsockname()
    try:
        balancer = load_balancer([f"{address}:{port}", listen])
        statuses = Counter((r.status, r.headers.get("x-served-by"))
                           for r in (http_request(balancer.address, 80) for _n in range(6)))
    finally:
        broken.close()

    assert statuses == Counter({(502, None): 3, (200, instance): 3})
