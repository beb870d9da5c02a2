"""The lab's DNS behaves like the internet's: authoritative per zone, cached by TTL, delegated by the parent."""

from __future__ import annotations

import time
import uuid

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.resolver
import pytest


def ask(address: str, name: str, rdtype: str = "A", recursion: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    if not recursion:
        query.flags &= ~dns.flags.RD
    return dns.query.udp(query, address, timeout=3)


def addresses(message: dns.message.Message) -> set[str]:
    return {rdata.to_text() for rrset in message.answer for rdata in rrset if rrset.rdtype == 1}


def resolve_via(resolver_address: str, name: str) -> set[str]:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [resolver_address.split(":")[0]]
    resolver.cache = None
    return {rdata.to_text() for rdata in resolver.resolve(name, "A")}


def upsert(route53, zone_id: str, name: str, rdtype: str, ttl: int, values: list[str]) -> None:
    route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{
        "Action": "UPSERT",
        "ResourceRecordSet": {"Name": name, "Type": rdtype, "TTL": ttl, "ResourceRecords": [{"Value": v} for v in values]},
    }]})


def create_zone(route53, name: str) -> tuple[str, list[str]]:
    created = route53.create_hosted_zone(Name=name, CallerReference=f"{name}-{uuid.uuid4().hex}")
    return created["HostedZone"]["Id"], created["DelegationSet"]["NameServers"]


def parent_zone_id(route53, parent_zone: str) -> str:
    zones = route53.list_hosted_zones_by_name(DNSName=parent_zone)["HostedZones"]
    return next(zone["Id"] for zone in zones if zone["Name"] == parent_zone)


@pytest.fixture
def service_zone_name(lab) -> str:
    return f"svc{uuid.uuid4().hex[:8]}.{lab['LAB_PARENT_ZONE']}"


def test_each_zone_gets_its_own_name_servers(lab_account, service_zone_name):
    route53 = lab_account("old").client("route53")
    _zone, first = create_zone(route53, service_zone_name)
    _zone2, second = create_zone(route53, "other-" + service_zone_name)
    assert len(first) == 4 and len(second) == 4
    assert not set(first) & set(second)


def test_new_zone_record_is_answered_by_the_new_zones_server_only(lab, lab_account, service_zone_name):
    old = lab_account("old").client("route53")
    new = lab_account("new").client("route53")
    old_zone, _servers = create_zone(old, service_zone_name)
    new_zone, _servers = create_zone(new, service_zone_name)
    upsert(old, old_zone, f"www.{service_zone_name}", "A", 60, ["192.0.2.10"])
    upsert(new, new_zone, f"www.{service_zone_name}", "A", 60, ["198.51.100.20"])

    from_new = ask(lab["LAB_DNS_NEW"], f"www.{service_zone_name}")
    from_old = ask(lab["LAB_DNS_OLD"], f"www.{service_zone_name}")

    assert from_new.flags & dns.flags.AA
    assert addresses(from_new) == {"198.51.100.20"}
    assert addresses(from_old) == {"192.0.2.10"}


def test_name_server_hostnames_resolve_to_the_owning_accounts_address(lab, lab_account, service_zone_name):
    _zone, name_servers = create_zone(lab_account("new").client("route53"), service_zone_name)
    for name_server in name_servers:
        assert resolve_via(lab["LAB_RESOLVER"], name_server) == {lab["LAB_DNS_NEW"]}


def delegate(parent_route53, parent_zone: str, child: str, name_servers: list[str], ttl: int) -> None:
    upsert(parent_route53, parent_zone_id(parent_route53, parent_zone), child, "NS", ttl, name_servers)


def test_resolver_keeps_the_cached_answer_until_its_ttl_passes(lab, lab_account, service_zone_name):
    route53 = lab_account("old").client("route53")
    zone_id, name_servers = create_zone(route53, service_zone_name)
    delegate(lab_account("parent").client("route53"), lab["LAB_PARENT_ZONE"], service_zone_name, name_servers, 60)
    name = f"www.{service_zone_name}"
    upsert(route53, zone_id, name, "A", 4, ["192.0.2.1"])
    assert resolve_via(lab["LAB_RESOLVER"], name) == {"192.0.2.1"}
    cached_at = time.monotonic()

    upsert(route53, zone_id, name, "A", 4, ["192.0.2.2"])
    assert addresses(ask(lab["LAB_DNS_OLD"], name)) == {"192.0.2.2"}  # authoritative has it at once
    assert resolve_via(lab["LAB_RESOLVER"], name) == {"192.0.2.1"}  # the cache does not, yet

    # unbound counts TTLs in whole seconds and still serves an entry during its last (TTL 0) second.
    while time.monotonic() - cached_at < 5.2:
        time.sleep(0.2)
    assert resolve_via(lab["LAB_RESOLVER"], name) == {"192.0.2.2"}


def test_parent_delegation_change_moves_the_resolver_to_the_new_zone(lab, lab_account, service_zone_name):
    old = lab_account("old").client("route53")
    new = lab_account("new").client("route53")
    parent = lab_account("parent").client("route53")
    old_zone, old_servers = create_zone(old, service_zone_name)
    new_zone, new_servers = create_zone(new, service_zone_name)
    name = f"www.{service_zone_name}"
    upsert(old, old_zone, name, "A", 1, ["192.0.2.1"])
    upsert(new, new_zone, name, "A", 1, ["198.51.100.1"])
    delegate(parent, lab["LAB_PARENT_ZONE"], service_zone_name, old_servers, 4)
    assert resolve_via(lab["LAB_RESOLVER"], name) == {"192.0.2.1"}

    delegate(parent, lab["LAB_PARENT_ZONE"], service_zone_name, new_servers, 4)
    switched_at = time.monotonic()
    seen = set()
    while time.monotonic() - switched_at < 15:
        seen = resolve_via(lab["LAB_RESOLVER"], name)
        if seen == {"198.51.100.1"}:
            break
        time.sleep(0.5)
    assert seen == {"198.51.100.1"}
    # Not before the NS TTL (4 s) has passed, and the record's own TTL (1 s) on top at most.
    assert time.monotonic() - switched_at >= 3.0


def test_alias_to_a_load_balancer_resolves_to_its_lab_address(lab, lab_account, service_zone_name):
    account = lab_account("old")
    ec2 = account.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.10.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.10.{n}.0/24", AvailabilityZone=f"us-east-1{zone}")["Subnet"]["SubnetId"]
               for n, zone in ((1, "a"), (2, "b"))]
    balancer = account.client("elbv2").create_load_balancer(Name=f"lb{uuid.uuid4().hex[:6]}", Subnets=subnets)["LoadBalancers"][0]
    route53 = account.client("route53")
    zone_id, _servers = create_zone(route53, service_zone_name)
    route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{
        "Action": "UPSERT",
        "ResourceRecordSet": {"Name": f"www.{service_zone_name}", "Type": "A", "AliasTarget": {
            "DNSName": balancer["DNSName"], "HostedZoneId": balancer["CanonicalHostedZoneId"], "EvaluateTargetHealth": False}},
    }]})

    via_alias = addresses(ask(lab["LAB_DNS_OLD"], f"www.{service_zone_name}"))
    direct = resolve_via(lab["LAB_RESOLVER"], balancer["DNSName"])

    assert len(via_alias) == 1 and via_alias == direct
    assert next(iter(direct)).startswith("127.0.54.")
    assert balancer["CanonicalHostedZoneId"] == "Z35SXDOTRQ7X7K"


def test_missing_name_is_nxdomain_with_the_zone_soa(lab, lab_account, service_zone_name):
    create_zone(lab_account("old").client("route53"), service_zone_name)
    answer = ask(lab["LAB_DNS_OLD"], f"nothing.{service_zone_name}")
    assert answer.rcode() == dns.rcode.NXDOMAIN
    assert answer.flags & dns.flags.AA
    assert answer.authority and answer.authority[0].rdtype == 6


def test_vpc_resolver_answers_private_zones_and_recurses_for_the_rest(lab, lab_account, service_zone_name):
    account = lab_account("new")
    vpc = account.client("ec2").create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    route53 = account.client("route53")
    private_name = f"internal{uuid.uuid4().hex[:6]}.example."
    private = route53.create_hosted_zone(Name=private_name, CallerReference=private_name,
                                         HostedZoneConfig={"PrivateZone": True, "Comment": "internal API"},
                                         VPC={"VPCRegion": "us-east-1", "VPCId": vpc})["HostedZone"]["Id"]
    upsert(route53, private, f"api.{private_name}", "A", 5, ["10.20.0.15"])
    public_zone, public_servers = create_zone(route53, service_zone_name)
    upsert(route53, public_zone, f"www.{service_zone_name}", "A", 5, ["198.51.100.7"])
    delegate(lab_account("parent").client("route53"), lab["LAB_PARENT_ZONE"], service_zone_name, public_servers, 5)

    assert addresses(ask(lab["LAB_VPC_RESOLVER_NEW"], f"api.{private_name}", recursion=True)) == {"10.20.0.15"}
    assert addresses(ask(lab["LAB_VPC_RESOLVER_NEW"], f"www.{service_zone_name}", recursion=True)) == {"198.51.100.7"}
    # Private zones are not on the public servers, nor in the other account's VPCs.
    assert ask(lab["LAB_DNS_NEW"], f"api.{private_name}").rcode() == dns.rcode.REFUSED
    assert not addresses(ask(lab["LAB_VPC_RESOLVER_OLD"], f"api.{private_name}", recursion=True))
