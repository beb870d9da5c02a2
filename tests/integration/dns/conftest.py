"""Lab fixtures for dns_cutover_wait: zones made with boto3 in the lab's accounts, delegated from `test.`."""

from __future__ import annotations

import secrets
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import dns.message
import dns.query
import pytest

from ansible_collections.cutover.migration.plugins.module_utils.accounts import open_account


@dataclass
class LabZone:
    name: str  # absolute, e.g. w1a2b3c4.test.
    hosted_zone_id: str
    name_servers: list[str]  # absolute host names
    route53: Any
    account: str

    def upsert(self, label: str, rdtype: str, values: list[str], ttl: int = 4) -> None:
        self.change("UPSERT", label, rdtype, values, ttl)

    def delete(self, label: str, rdtype: str, values: list[str], ttl: int = 4) -> None:
        self.change("DELETE", label, rdtype, values, ttl)

    def change(self, action: str, label: str, rdtype: str, values: list[str], ttl: int) -> None:
        record = {"Name": self.fqdn(label), "Type": rdtype, "TTL": ttl,
                  "ResourceRecords": [{"Value": value} for value in values]}
        self.route53.change_resource_record_sets(HostedZoneId=self.hosted_zone_id, ChangeBatch={
            "Changes": [{"Action": action, "ResourceRecordSet": record}]})

    def alias(self, label: str, dns_name: str, hosted_zone_id: str) -> None:
        record = {"Name": self.fqdn(label), "Type": "A", "AliasTarget": {
            "HostedZoneId": hosted_zone_id, "DNSName": dns_name, "EvaluateTargetHealth": False}}
        self.route53.change_resource_record_sets(HostedZoneId=self.hosted_zone_id, ChangeBatch={
            "Changes": [{"Action": "UPSERT", "ResourceRecordSet": record}]})

    def fqdn(self, label: str) -> str:
        return self.name if label in ("", "@") else f"{label}.{self.name}"


class Lab:
    def __init__(self, env: dict[str, str]):
        self.env = env
        self.resolver = env["LAB_RESOLVER"]
        self.accounts = {side: env[f"LAB_ACCOUNT_{side.upper()}"] for side in ("old", "new", "parent")}
        self._sessions: dict[str, Any] = {}
        parent = self.route53("parent")
        zones = parent.list_hosted_zones_by_name(DNSName=env["LAB_PARENT_ZONE"])["HostedZones"]
        self.parent_zone_id = next(z["Id"] for z in zones if z["Name"] == env["LAB_PARENT_ZONE"])

    def session(self, side: str) -> Any:
        if side not in self._sessions:
            self._sessions[side] = open_account(side, {"role_arn": f"arn:aws:iam::{self.accounts[side]}:role/any"})
        return self._sessions[side]

    def route53(self, side: str) -> Any:
        return self.session(side).client("route53")

    def create_zone(self, side: str, name: str | None = None) -> LabZone:
        name = name or f"w{secrets.token_hex(4)}.test."
        route53 = self.route53(side)
        created = route53.create_hosted_zone(Name=name, CallerReference=f"{name}-{secrets.token_hex(4)}")
        servers = [ns.rstrip(".") + "." for ns in created["DelegationSet"]["NameServers"]]
        return LabZone(name=name, hosted_zone_id=created["HostedZone"]["Id"], name_servers=servers,
                       route53=route53, account=side)

    def delegate(self, zone: LabZone, name_servers: list[str] | None = None, ttl: int = 3) -> None:
        self.route53("parent").change_resource_record_sets(HostedZoneId=self.parent_zone_id, ChangeBatch={
            "Changes": [{"Action": "UPSERT", "ResourceRecordSet": {
                "Name": zone.name, "Type": "NS", "TTL": ttl,
                "ResourceRecords": [{"Value": ns} for ns in (name_servers or zone.name_servers)]}}]})

    def delegated_zone(self, side: str = "old", ns_ttl: int = 3) -> LabZone:
        zone = self.create_zone(side)
        self.delegate(zone, ttl=ns_ttl)
        return zone

    def ask_resolver(self, name: str, rdtype: str = "A") -> tuple[list[str], int | None]:
        """(values, remaining TTL) as the lab's caching resolver hands them out."""
        response = dns.message.make_query(name, rdtype)
        answer = dns.query.udp(response, self.resolver, timeout=2)
        for rrset in answer.answer:
            if rrset.rdtype == dns.rdatatype.from_text(rdtype):
                return sorted(r.to_text().lower() for r in rrset), rrset.ttl
        return [], None

    def load_balancer(self, side: str = "old") -> dict:
        ec2 = self.session(side).client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
        zones = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]][:2]
        subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=az)["Subnet"]["SubnetId"]
                   for i, az in enumerate(zones)]
        elbv2 = self.session(side).client("elbv2")
        created = elbv2.create_load_balancer(Name=f"lb-{secrets.token_hex(4)}", Subnets=subnets, Type="application",
                                             Scheme="internet-facing")
        return created["LoadBalancers"][0]

    @staticmethod
    def in_background(function, *args, **kwargs) -> Future:
        return in_background(function, *args, **kwargs)

    def first_change_seen(self, name: str, new_values: list[str], limit: float = 30) -> Future:
        return first_change_seen(self, name, new_values, limit)


@pytest.fixture(scope="session")
def dns_lab(lab) -> Lab:
    return Lab(lab)


def in_background(function, *args, **kwargs) -> Future:
    """Run ``function`` in a thread and return a Future (the wait is started before the change)."""
    future: Future = Future()

    def target() -> None:
        try:
            future.set_result(function(*args, **kwargs))
        except BaseException as error:  # noqa: BLE001 - handed to the test through the future
            future.set_exception(error)

    threading.Thread(target=target, daemon=True).start()
    return future


def first_change_seen(lab: Lab, name: str, new_values: list[str], limit: float = 30) -> Future:
    """When the resolver first hands out ``new_values`` (polled every 50 ms): the true cache expiry."""

    def watch() -> float:
        end = time.time() + limit
        while time.time() < end:
            asked_at = time.time()
            values, _unused = lab.ask_resolver(name)
            if values == sorted(new_values):
                return asked_at
            time.sleep(0.05)
        raise AssertionError(f"the resolver never handed out {new_values} for {name}")

    return in_background(watch)
