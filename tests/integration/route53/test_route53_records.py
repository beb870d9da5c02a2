"""route53_records against the lab: the cutover flip, TTL lowering and the parent's NS delegation."""

from __future__ import annotations

import pytest
from route53_lab import (
    WriteCounter,
    change,
    create_zone,
    dns_answer,
    records_of,
    session_for,
    unique_zone,
)

from ansible_collections.cutover.migration.plugins.module_utils.route53_api import (
    manage_records,
)
from ansible_collections.cutover.migration.plugins.module_utils.route53_plan import (
    Route53PlanError,
)

SERVICES = [f"svc-{n:02d}" for n in range(20)]


@pytest.fixture
def service_zone(accounts):
    """A zone in the new account whose 20 service names point at the old addresses (TTL 300)."""
    zone = unique_zone("flip")
    client = session_for(accounts["new"]).client("route53")
    zone_id = create_zone(client, zone)
    change(client, zone_id, [{"Name": f"{name}.{zone}", "Type": "A", "TTL": 300,
                              "ResourceRecords": [{"Value": f"192.0.2.{n + 1}"}]} for n, name in enumerate(SERVICES)])
    return zone, zone_id


def records(accounts, zone, items, check_mode=False, **options):
    session = session_for(accounts["new"])
    counter = WriteCounter(session)
    result = manage_records(session, {"account": accounts["new"], "zone": zone, "records": items, **options},
                            check_mode=check_mode)
    return result, counter


def test_flip_of_twenty_hostnames_goes_in_one_change_batch_and_dns_follows(lab, accounts, service_zone):
    zone, _unused = service_zone
    flip = [{"name": name, "type": "A", "ttl": 60, "values": [f"203.0.113.{n + 1}"]} for n, name in enumerate(SERVICES)]
    before = [dns_answer(lab["LAB_DNS_NEW"], f"{name}.{zone}", "A")[1] for name in SERVICES]
    assert before == [[f"192.0.2.{n + 1}"] for n in range(20)]
    result, counter = records(accounts, zone, flip)
    assert counter.changes == 1 and result["change_batches"] == 1
    assert len(result["changes"]) == 20 and {item["action"] for item in result["changes"]} == {"UPSERT"}
    after = [dns_answer(lab["LAB_DNS_NEW"], f"{name}.{zone}", "A")[1] for name in SERVICES]
    assert after == [[f"203.0.113.{n + 1}"] for n in range(20)]
    again, counter = records(accounts, zone, flip)
    assert again["changed"] is False and counter.writes == 0 and again["api_calls"]["change"] == 0


def test_flip_to_a_load_balancer_alias_resolves_to_its_address(lab, accounts, service_zone, old_load_balancer):
    zone, _unused = service_zone
    alias = {"dns_name": old_load_balancer["DNSName"], "hosted_zone_id": old_load_balancer["CanonicalHostedZoneId"],
             "evaluate_target_health": True}
    result, _unused = records(accounts, zone, [{"name": "svc-00", "type": "A", "alias": alias}])
    assert result["changed"] is True
    stored = [record for record in records_of(session_for(accounts["new"]).client("route53"), result["hosted_zone_id"])
              if record.name == f"svc-00.{zone}"]
    assert stored[0].alias.hosted_zone_id == old_load_balancer["CanonicalHostedZoneId"] and stored[0].ttl is None
    rcode, values = dns_answer(lab["LAB_DNS_NEW"], f"svc-00.{zone}", "A")
    assert rcode == "NOERROR" and values and values[0].startswith("127.0.54.")


def test_ttl_only_lowers_ttls_and_keeps_values(accounts, service_zone):
    zone, zone_id = service_zone
    _unused, counter = records(accounts, zone, [{"name": name, "type": "A", "ttl": 30} for name in SERVICES[:5]],
                               ttl_only=True)
    assert counter.changes == 1
    by_name = {record.name: record for record in records_of(session_for(accounts["new"]).client("route53"), zone_id)}
    assert by_name[f"svc-00.{zone}"].ttl == 30 and by_name[f"svc-00.{zone}"].values == ("192.0.2.1",)
    assert by_name[f"svc-09.{zone}"].ttl == 300


def test_absent_deletes_and_check_mode_writes_nothing(lab, accounts, service_zone):
    zone, _unused = service_zone
    planned, counter = records(accounts, zone, [{"name": "svc-19", "type": "A"}], check_mode=True, state="absent")
    assert planned["changed"] is True and counter.writes == 0
    assert dns_answer(lab["LAB_DNS_NEW"], f"svc-19.{zone}", "A")[1] == ["192.0.2.20"]
    records(accounts, zone, [{"name": "svc-19", "type": "A"}], state="absent")
    assert dns_answer(lab["LAB_DNS_NEW"], f"svc-19.{zone}", "A")[0] == "NXDOMAIN"


def test_ttl_only_on_a_missing_record_is_an_error_and_nothing_is_written(accounts, service_zone):
    zone, _unused = service_zone
    session = session_for(accounts["new"])
    counter = WriteCounter(session)
    with pytest.raises(Route53PlanError, match="ttl_only") as error:
        manage_records(session, {"account": accounts["new"], "zone": zone, "ttl_only": True,
                                 "records": [{"name": "svc-00", "type": "A", "ttl": 30},
                                             {"name": "nothere", "type": "A", "ttl": 30}]})
    assert error.value.option == "ttl_only" and counter.writes == 0


def test_module_delegates_a_zone_from_the_parent_and_the_parent_refers_to_the_new_servers(
        lab, accounts, ansible_module):
    zone = unique_zone("delegated")
    new = session_for(accounts["new"]).client("route53")
    zone_id = create_zone(new, zone)
    change(new, zone_id, [{"Name": f"www.{zone}", "Type": "A", "TTL": 60, "ResourceRecords": [{"Value": "192.0.2.80"}]}])
    name_servers = new.get_hosted_zone(Id=zone_id)["DelegationSet"]["NameServers"]
    args = {"account": accounts["parent"], "zone": lab["LAB_PARENT_ZONE"],
            "records": [{"name": zone, "type": "NS", "ttl": 4, "values": name_servers}]}
    planned = ansible_module("route53_records", args, check=True, diff=True)
    assert planned["changed"] is True and planned["api_calls"]["change"] == 0, planned.get("msg")
    assert name_servers[0] in planned["diff"]["after"]
    assert dns_answer(lab["LAB_DNS_PARENT"], zone, "NS")[0] == "NXDOMAIN"
    applied = ansible_module("route53_records", args)
    assert applied["changed"] is True and applied["api_calls"]["change"] == 1
    _unused, referral = dns_answer(lab["LAB_DNS_PARENT"], zone, "NS")
    assert sorted(value.removeprefix("authority:").rstrip(".") for value in referral) == sorted(name_servers)
    again = ansible_module("route53_records", args)
    assert again["changed"] is False and again["api_calls"]["change"] == 0
    from dns import resolver
    answer = resolver.Resolver(configure=False)
    answer.nameservers = [lab["LAB_RESOLVER"]]
    assert [item.to_text() for item in answer.resolve(f"www.{zone}", "A")] == ["192.0.2.80"]
