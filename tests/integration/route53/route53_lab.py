"""Helpers of the route53 lab tests: sessions, a realistic source zone, call counting, DNS answers."""

from __future__ import annotations

import uuid

import dns.message
import dns.query
import dns.rdatatype

from ansible_collections.cutover.migration.plugins.module_utils.accounts import (
    open_account,
)
from ansible_collections.cutover.migration.plugins.module_utils.route53_plan import (
    RecordSet,
    bare_zone_id,
    normalise_name,
)


def role(account: str) -> str:
    return f"arn:aws:iam::{account}:role/cutover-tests"


def session_for(options):
    return open_account("source", options)


class WriteCounter:
    """Counts Route53 calls a boto3 session makes, by operation, via botocore's event hooks."""

    def __init__(self, account_session, fail_after_changes: int | None = None):
        self.calls: list[str] = []
        self.fail_after_changes = fail_after_changes
        account_session.session.events.register("before-call.route53.*", self._before)

    def _before(self, model, **_):
        if (model.name == "ChangeResourceRecordSets" and self.fail_after_changes is not None
                and self.changes >= self.fail_after_changes):
            raise RuntimeError("injected failure after the first change batch")
        self.calls.append(model.name)

    @property
    def changes(self) -> int:
        return sum(1 for name in self.calls if name == "ChangeResourceRecordSets")

    @property
    def writes(self) -> int:
        return sum(1 for name in self.calls if not name.startswith(("List", "Get")))


def unique_zone(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}.test."


def create_zone(client, name: str) -> str:
    answer = client.create_hosted_zone(Name=name, CallerReference=str(uuid.uuid4()))
    return bare_zone_id(answer["HostedZone"]["Id"])


def change(client, zone_id: str, record_sets: list[dict], action: str = "CREATE") -> None:
    for start in range(0, len(record_sets), 900):
        client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={
            "Changes": [{"Action": action, "ResourceRecordSet": item} for item in record_sets[start:start + 900]]})


def records_of(client, zone_id: str) -> list[RecordSet]:
    paginator = client.get_paginator("list_resource_record_sets")
    pages = [page["ResourceRecordSets"] for page in paginator.paginate(HostedZoneId=zone_id)]
    seen = {}
    for page in pages:
        for item in page:
            record = RecordSet.from_api(item)
            seen.setdefault(record.key, record)
    return list(seen.values())


def comparable(client, zone_id: str, zone_name: str) -> dict:
    """A zone's record sets with what must differ between accounts factored out.

    Apex NS/SOA are the zone's own; same-zone aliases carry the zone's id; health checks are
    compared by their configuration, since their ids belong to an account.
    """
    result = {}
    zone_name = normalise_name(zone_name)
    for record in records_of(client, zone_id):
        if record.type in ("NS", "SOA") and record.name == zone_name:
            continue
        alias = record.alias
        alias_view = None
        if alias:
            alias_view = (alias.dns_name, "same-zone" if alias.hosted_zone_id == zone_id else alias.hosted_zone_id,
                          alias.evaluate_target_health)
        check_view = None
        if record.health_check_id:
            config = client.get_health_check(HealthCheckId=record.health_check_id)["HealthCheck"]["HealthCheckConfig"]
            check_view = tuple(sorted((key, str(value)) for key, value in config.items()))
        result[record.key] = (record.ttl, record.values, alias_view, record.routing, check_view)
    return result


def dns_answer(address: str, name: str, record_type: str) -> tuple[str, list[str]]:
    query = dns.message.make_query(name, record_type)
    response = dns.query.udp(query, address, timeout=3)
    values = sorted(item.to_text().lower() for rrset in response.answer for item in rrset
                    if rrset.rdtype == dns.rdatatype.from_text(record_type))
    if not values and response.authority:
        values = sorted("authority:" + item.to_text().lower() for rrset in response.authority for item in rrset
                        if rrset.rdtype == dns.rdatatype.NS)
    return dns.rcode.to_text(response.rcode()), values


def realistic_zone_records(zone: str, balancer: dict, check_ids: list[str]) -> list[dict]:
    """At least 60 record sets: every type and routing policy the clone must carry."""
    zone = normalise_name(zone)
    long_dkim = "v=DKIM1; k=rsa; p=" + "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" * 8
    alb = {"DNSName": balancer["DNSName"], "HostedZoneId": balancer["CanonicalHostedZoneId"], "EvaluateTargetHealth": True}

    def plain(name, record_type, *values, ttl=300, **extra):
        return {"Name": f"{name}.{zone}" if name else zone, "Type": record_type, "TTL": ttl,
                "ResourceRecords": [{"Value": value} for value in values], **extra}

    records = [
        {"Name": zone, "Type": "A", "AliasTarget": alb},
        plain("", "MX", "10 mx1.mail.example.net.", "20 mx2.mail.example.net.", ttl=3600),
        plain("", "TXT", '"v=spf1 include:amazonses.com -all"', '"google-site-verification=abc123"', ttl=3600),
        plain("", "CAA", '0 issue "amazon.com"', '0 iodef "mailto:security@example.com"'),
        # Route53 keeps a long TXT as several 255-character strings of one value.
        plain("sel1._domainkey", "TXT", '"' + long_dkim[:255] + '" "' + long_dkim[255:] + '"'),
        plain("_sip._tcp", "SRV", "10 60 5060 sip1.example.net.", "20 40 5060 sip2.example.net."),
        plain("*.apps", "CNAME", "apps-ingress.example.net."),
        plain("_3f1c2a.www", "CNAME", "_9b8e7d.acm-validations.aws."),
        plain("dev", "NS", "ns1.dev." + zone, "ns2.dev." + zone, ttl=3600),
        plain("ns1.dev", "A", "192.0.2.53"),
        plain("ns2.dev", "A", "192.0.2.54"),
        plain("ipv6", "AAAA", "2001:db8::1", "2001:db8:0:0::2"),
        plain("ptr", "PTR", "host.example.net."),
        plain("legacy", "SPF", '"v=spf1 -all"'),
        plain("sip", "NAPTR", '100 10 "S" "SIP+D2U" "" _sip._udp.example.net.'),
        {"Name": f"www.{zone}", "Type": "A", "AliasTarget": {"DNSName": zone, "HostedZoneId": "SAME", "EvaluateTargetHealth": False}},
        {"Name": f"cdn.{zone}", "Type": "A",
         "AliasTarget": {"DNSName": f"www.{zone}", "HostedZoneId": "SAME", "EvaluateTargetHealth": False}},
        {"Name": f"static.{zone}", "Type": "A",
         "AliasTarget": {"DNSName": "d111111abcdef8.cloudfront.net.", "HostedZoneId": "Z2FDTNDATAQYW2", "EvaluateTargetHealth": False}},
        plain("weighted", "A", "192.0.2.10", SetIdentifier="blue", Weight=90),
        plain("weighted", "A", "192.0.2.11", SetIdentifier="green", Weight=10),
        plain("latency", "A", "192.0.2.20", SetIdentifier="use1", Region="us-east-1"),
        plain("latency", "A", "192.0.2.21", SetIdentifier="apne1", Region="ap-northeast-1"),
        plain("failover", "A", "192.0.2.30", SetIdentifier="primary", Failover="PRIMARY", HealthCheckId=check_ids[0]),
        plain("failover", "A", "192.0.2.31", SetIdentifier="secondary", Failover="SECONDARY"),
        plain("geo", "A", "192.0.2.40", SetIdentifier="default", GeoLocation={"CountryCode": "*"}),
        plain("geo", "A", "192.0.2.41", SetIdentifier="jp", GeoLocation={"CountryCode": "JP"}),
        plain("geo", "A", "192.0.2.42", SetIdentifier="eu", GeoLocation={"ContinentCode": "EU"}),
        plain("geoprox", "A", "192.0.2.50", SetIdentifier="east", GeoProximityLocation={"AWSRegion": "us-east-1", "Bias": 10}),
        plain("geoprox", "A", "192.0.2.51", SetIdentifier="tokyo", GeoProximityLocation={
            "Coordinates": {"Latitude": "35.68", "Longitude": "139.69"}}),
        plain("multi", "A", "192.0.2.60", SetIdentifier="m1", MultiValueAnswer=True, HealthCheckId=check_ids[1]),
        plain("multi", "A", "192.0.2.61", SetIdentifier="m2", MultiValueAnswer=True),
        plain("multi", "A", "192.0.2.62", SetIdentifier="m3", MultiValueAnswer=True),
        plain("cidr", "A", "192.0.2.70", SetIdentifier="office",
              CidrRoutingConfig={"CollectionId": "c8c02a84-aaaa-bbbb-cccc-000000000001", "LocationName": "office"}),
        plain("cidr", "A", "192.0.2.71", SetIdentifier="rest",
              CidrRoutingConfig={"CollectionId": "c8c02a84-aaaa-bbbb-cccc-000000000001", "LocationName": "*"}),
        {"Name": f"app.{zone}", "Type": "A", "SetIdentifier": "alb", "Weight": 100, "AliasTarget": alb},
    ]
    records += [plain(f"host-{n:02d}", "A", f"198.51.100.{n}", f"198.51.100.{n + 100}") for n in range(30)]
    return records


def build_source_zone(session, zone: str, balancer: dict) -> str:
    client = session.client("route53")
    zone_id = create_zone(client, zone)
    check_ids = [client.create_health_check(CallerReference=str(uuid.uuid4()), HealthCheckConfig={
        "Type": "HTTPS", "IPAddress": address, "Port": 443, "ResourcePath": "/health", "FullyQualifiedDomainName": f"svc.{zone}",
        "RequestInterval": 30, "FailureThreshold": 3})["HealthCheck"]["Id"] for address in ("192.0.2.30", "192.0.2.60")]
    records = realistic_zone_records(zone, balancer, check_ids)
    for item in records:
        if item.get("AliasTarget", {}).get("HostedZoneId") == "SAME":
            item["AliasTarget"]["HostedZoneId"] = zone_id
    plain = [item for item in records if "AliasTarget" not in item or item["AliasTarget"]["HostedZoneId"] != zone_id]
    aliases = [item for item in records if item not in plain]
    change(client, zone_id, plain)
    aliases.sort(key=lambda item: item["Name"] == f"cdn.{normalise_name(zone)}")
    change(client, zone_id, aliases)
    return zone_id
