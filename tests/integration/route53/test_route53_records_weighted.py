"""route53_records exclusive against the lab: a simple alias becomes weighted sets and back, atomically."""

from __future__ import annotations

import uuid

import pytest
from route53_lab import WriteCounter, create_zone, dns_answer, records_of, session_for, unique_zone

from ansible_collections.cutover.migration.plugins.module_utils.route53_api import manage_records
from ansible_collections.cutover.migration.plugins.module_utils.route53_plan import Route53PlanError


@pytest.fixture
def balancers(accounts):
    """Two ALBs in the old account whose DNS names resolve to two different lab addresses."""
    session = session_for(accounts["old"])
    ec2 = session.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.21.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.21.{n}.0/24", AvailabilityZone=f"us-east-1{zone}")["Subnet"]["SubnetId"]
               for n, zone in ((1, "a"), (2, "b"))]
    elbv2 = session.client("elbv2")
    found = {}
    for side in ("old", "new"):
        balancer = elbv2.create_load_balancer(Name=f"w{side}-{uuid.uuid4().hex[:8]}", Subnets=subnets)["LoadBalancers"][0]
        found[side] = {"dns_name": balancer["DNSName"], "hosted_zone_id": balancer["CanonicalHostedZoneId"]}
    return found


def weighted(balancers, new_weight):
    return [{"name": "www", "type": "A", "set_identifier": "new", "weight": new_weight, "alias": balancers["new"]},
            {"name": "www", "type": "A", "set_identifier": "old", "weight": 100 - new_weight, "alias": balancers["old"]}]


def run(accounts, zone, items, check_mode=False, **options):
    session = session_for(accounts["new"])
    counter = WriteCounter(session)
    return manage_records(session, {"account": accounts["new"], "zone": zone, "records": items, **options},
                          check_mode=check_mode), counter


def answers(lab, name, times=40):
    return {tuple(dns_answer(lab["LAB_DNS_NEW"], name, "A")[1]) for _unused in range(times)}


def test_simple_alias_to_weighted_and_back_each_in_one_atomic_batch(lab, accounts, balancers):
    zone = unique_zone("weights")
    client = session_for(accounts["new"]).client("route53")
    zone_id = create_zone(client, zone)
    name = f"www.{zone}"
    run(accounts, zone, [{"name": "www", "type": "A", "alias": balancers["old"]}])
    old_address = answers(lab, name, 1).pop()
    assert old_address[0].startswith("127.0.54.")

    # Without exclusive the plan refuses the mixed routing before writing anything.
    session = session_for(accounts["new"])
    counter = WriteCounter(session)
    with pytest.raises(Route53PlanError, match="exclusive"):
        manage_records(session, {"account": accounts["new"], "zone": zone, "records": weighted(balancers, 10)})
    assert counter.writes == 0

    planned, counter = run(accounts, zone, weighted(balancers, 10), check_mode=True, exclusive=True)
    assert counter.writes == 0 and [change["action"] for change in planned["changes"]] == ["DELETE", "CREATE", "CREATE"]
    old_alias = {**balancers["old"], "dns_name": balancers["old"]["dns_name"].lower() + ".", "evaluate_target_health": False}
    assert planned["record_sets"] == [{"name": name, "type": "A", "alias": old_alias}]

    converted, counter = run(accounts, zone, weighted(balancers, 50), exclusive=True)
    assert counter.changes == 1 and converted["change_batches"] == 1
    stored = {record.set_identifier: record for record in records_of(client, zone_id) if record.name == name}
    assert set(stored) == {"new", "old"}
    assert stored["new"].routing_dict() == {"Weight": 50} and stored["old"].routing_dict() == {"Weight": 50}
    seen = answers(lab, name)
    assert old_address in seen and len(seen) == 2  # both load balancers answer, nothing else

    again, counter = run(accounts, zone, weighted(balancers, 50), exclusive=True)
    assert again["changed"] is False and counter.writes == 0
    assert {item["set_identifier"]: item["weight"] for item in again["record_sets"]} == {"new": 50, "old": 50}

    final, counter = run(accounts, zone, [{"name": "www", "type": "A", "alias": balancers["new"]}], exclusive=True)
    assert counter.changes == 1 and [change["action"] for change in final["changes"]] == ["DELETE", "DELETE", "CREATE"]
    stored = [record for record in records_of(client, zone_id) if record.name == name]
    assert len(stored) == 1 and stored[0].set_identifier is None
    assert answers(lab, name, 10) == seen - {old_address}
