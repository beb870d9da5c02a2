"""The lab's authoritative DNS: answers straight from moto's Route53 backend (always fresh).

Runs inside labd's process, next to the in-process moto server, so there is no polling and no
copy of the zones to go stale. One loopback address per account (lab_config.ACCOUNT_DNS_ADDRESSES):
a query reaching it is answered from that account's public zones, longest match first, with AA.
It also answers, on every address, the name-server hostnames (``ns-N.<zone-id>.r53.lab.``) and the
load balancers' DNS names (``*.elb.amazonaws.com.``), so a caching resolver can follow real
delegations and aliases.
"""

from __future__ import annotations

import random
import socketserver
import struct
import threading
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import lab_config
from moto_patches import elbv2_addresses

LOAD_BALANCER_TTL = 60
SYNTHETIC_TTL = 300
SOA_MINIMUM_FALLBACK = "awsdns-hostmaster.amazon.com. 1 7200 900 1209600 86400"
MAX_CHASE = 8


def _absolute(name: str) -> dns.name.Name:
    text = name.replace("\\052", "*").lower()
    return dns.name.from_text(text if text.endswith(".") else text + ".")


@dataclass(frozen=True)
class StoredRecordSet:
    """A record set as moto holds it, in DNS terms."""

    name: dns.name.Name
    rdtype: int
    ttl: int
    values: tuple
    alias: dict | None
    set_identifier: str | None
    weight: int | None
    failover: str | None
    multi_value: bool


@dataclass(frozen=True)
class ZoneView:
    zone_id: str
    origin: dns.name.Name
    record_sets: tuple
    by_name: dict = field(default_factory=dict, compare=False, repr=False)

    def at(self, name: dns.name.Name) -> list[StoredRecordSet]:
        return self.by_name.get(name, [])


def _read_record_set(stored) -> StoredRecordSet | None:
    try:
        rdtype = dns.rdatatype.from_text(stored.type)
    except (dns.rdatatype.UnknownRdatatype, TypeError):
        return None
    ttl = int(stored.ttl) if stored.ttl not in (None, "") else 0
    return StoredRecordSet(
        name=_absolute(stored.name), rdtype=rdtype, ttl=ttl, values=tuple(stored.records or ()),
        alias=dict(stored.alias_target) if stored.alias_target else None,
        set_identifier=stored.set_identifier, weight=int(stored.weight) if stored.weight not in (None, "") else None,
        failover=stored.failover, multi_value=bool(stored.multi_value_answer),
    )


# Views are rebuilt only when a zone changes: benchmarks leave 10,000-record zones in the lab
# accounts, and re-reading them on every query starves the answers past resolver timeouts.
_VIEW_CACHE: dict[str, tuple[tuple, ZoneView]] = {}
_VIEW_LOCK = threading.Lock()


def _zone_version(zone) -> tuple:
    return (len(zone.rrsets), getattr(zone, "lab_version", 0))


def _bump(zone) -> None:
    zone.lab_version = getattr(zone, "lab_version", 0) + 1


def install_change_counters() -> None:
    """Count every change of a zone's record sets, whichever path makes it.

    moto replaces list items in place on UPSERT and a lab patch swaps the whole list, so neither
    the list's identity nor its length tells a change; a counter on the zone does.
    """
    from moto.route53.models import FakeZone, Route53Backend

    def counting(original, zone_of):
        def counted(self, *args, **kwargs):
            try:
                return original(self, *args, **kwargs)
            finally:
                zone = zone_of(self, *args, **kwargs)
                if zone is not None:
                    _bump(zone)

        counted.lab_counted = True  # type: ignore[attr-defined]
        return counted

    for method_name in ("add_rrset", "upsert_rrset", "delete_rrset", "delete_rrset_by_id"):
        original = getattr(FakeZone, method_name, None)
        if original is not None and not getattr(original, "lab_counted", False):
            setattr(FakeZone, method_name, counting(original, lambda zone, *a, **k: zone))

    def changed_zone(backend, zoneid=None, *args, **kwargs):
        zone_id = zoneid or kwargs.get("zoneid") or kwargs.get("the_zone_id")
        return backend.zones.get(str(zone_id).rsplit("/", maxsplit=1)[-1]) if zone_id else None

    original = Route53Backend.change_resource_record_sets
    if not getattr(original, "lab_counted", False):
        Route53Backend.change_resource_record_sets = counting(original, changed_zone)


def zone_view(zone) -> ZoneView:
    version = _zone_version(zone)
    cached = _VIEW_CACHE.get(zone.id)
    if cached and cached[0] == version:
        return cached[1]
    record_sets = tuple(r for r in (_read_record_set(s) for s in list(zone.rrsets)) if r is not None)
    by_name: dict = {}
    for record_set in record_sets:
        by_name.setdefault(record_set.name, []).append(record_set)
    view = ZoneView(zone_id=zone.id, origin=_absolute(zone.name), record_sets=record_sets, by_name=by_name)
    with _VIEW_LOCK:
        _VIEW_CACHE[zone.id] = (version, view)
    return view


@dataclass(frozen=True)
class ZoneHead:
    """A zone's name and its moto object: enough to pick the zone before reading its records."""

    origin: dns.name.Name
    zone: object


def account_zones(account: str, private: bool = False) -> list[ZoneHead]:
    from moto.route53.models import route53_backends

    if account not in route53_backends:
        return []
    backend = route53_backends[account]["aws"]
    return [ZoneHead(origin=_absolute(zone.name), zone=zone) for zone in list(backend.zones.values())
            if bool(zone.private_zone) == private]


def zone_owner(identifier: str) -> tuple[str, ZoneView | None] | None:
    """Which account owns a zone (or reusable delegation set) id, as named in an NS hostname label."""
    from moto.route53.models import route53_backends

    for account in list(route53_backends.keys()):
        backend = route53_backends[account]["aws"]
        for zone in list(backend.zones.values()):
            if zone.id.rsplit("/", maxsplit=1)[-1].lower() == identifier:
                return account, None
        for delegation_set in list(backend.delegation_sets.values()):
            if str(delegation_set.id).rsplit("/", maxsplit=1)[-1].lower() == identifier:
                return account, None
    return None


def _rdata_from_value(rdtype: int, value: str):
    return dns.rdata.from_text(dns.rdataclass.IN, rdtype, value, origin=dns.name.root, relativize=False)


def _choose(candidates: list[StoredRecordSet]) -> list[StoredRecordSet]:
    """Route53's choice among record sets of one name and type (routing policies)."""
    if len(candidates) <= 1 or all(c.set_identifier is None for c in candidates):
        return candidates
    if all(c.multi_value for c in candidates):
        return candidates[:8]
    weighted = [c for c in candidates if c.weight is not None]
    if weighted:
        positive = [c for c in weighted if c.weight > 0] or weighted
        total = sum(c.weight for c in positive)
        if total == 0:
            return [random.choice(positive)]
        point = random.uniform(0, total)
        for candidate in positive:
            point -= candidate.weight
            if point <= 0:
                return [candidate]
        return [positive[-1]]
    primary = [c for c in candidates if (c.failover or "").upper() == "PRIMARY"]
    if primary:
        return primary[:1]
    # Latency, geolocation, geoproximity, CIDR: one answer, as a client in one place would get.
    return [sorted(candidates, key=lambda c: c.set_identifier or "")[0]]


class Answer:
    def __init__(self) -> None:
        self.answer: list[dns.rrset.RRset] = []
        self.authority: list[dns.rrset.RRset] = []
        self.rcode = dns.rcode.NOERROR
        self.authoritative = True


class LabAuthority:
    """Answers one question for one account (or, with account None, only the lab's own names)."""

    def __init__(self, account: str | None) -> None:
        self.account = account

    # -- the lab's own names -------------------------------------------------------------
    def _name_server_address(self, qname: dns.name.Name) -> str | None:
        domain = dns.name.from_text(lab_config.NAME_SERVER_DOMAIN)
        if not qname.is_subdomain(domain) or len(qname) - len(domain) != 2:
            return None
        identifier = qname.labels[1].decode().lower()
        owner = zone_owner(identifier)
        if owner is None:
            return None
        return lab_config.ACCOUNT_DNS_ADDRESSES.get(owner[0], lab_config.ACCOUNT_DNS_ADDRESSES[lab_config.BASE_ACCOUNT])

    def answer_lab_names(self, qname: dns.name.Name, rdtype: int) -> Answer | None:
        for domain_text, lookup in ((lab_config.NAME_SERVER_DOMAIN, self._name_server_address),
                                    (lab_config.LOAD_BALANCER_DOMAIN, lambda n: elbv2_addresses.address_for(n.to_text()))):
            domain = dns.name.from_text(domain_text)
            if not qname.is_subdomain(domain):
                continue
            result = Answer()
            address = lookup(qname)
            if address is None:
                result.rcode = dns.rcode.NXDOMAIN if qname != domain else dns.rcode.NOERROR
                result.authority.append(self._synthetic_soa(domain))
            elif rdtype in (dns.rdatatype.A, dns.rdatatype.ANY):
                ttl = LOAD_BALANCER_TTL if domain_text == lab_config.LOAD_BALANCER_DOMAIN else SYNTHETIC_TTL
                result.answer.append(dns.rrset.from_text(qname, ttl, "IN", "A", address))
            else:
                result.authority.append(self._synthetic_soa(domain))
            return result
        return None

    @staticmethod
    def _synthetic_soa(domain: dns.name.Name) -> dns.rrset.RRset:
        return dns.rrset.from_text(domain, 5, "IN", "SOA", f"ns.{domain.to_text()} hostmaster.lab. 1 7200 900 1209600 5")

    # -- hosted zones --------------------------------------------------------------------
    def _zone_for(self, qname: dns.name.Name, zones: list[ZoneHead]) -> ZoneView | None:
        matching = [head for head in zones if qname.is_subdomain(head.origin)]
        if not matching:
            return None
        # Longest match; among same-named zones in one account the first created (stable).
        return zone_view(max(matching, key=lambda head: len(head.origin)).zone)

    def _soa(self, zone: ZoneView) -> dns.rrset.RRset:
        for record_set in zone.at(zone.origin):
            if record_set.rdtype == dns.rdatatype.SOA and record_set.values:
                try:
                    return dns.rrset.from_rdata(zone.origin, record_set.ttl,
                                                _rdata_from_value(dns.rdatatype.SOA, record_set.values[0]))
                except dns.exception.DNSException:
                    break
        return dns.rrset.from_text(zone.origin, 900, "IN", "SOA", f"ns-1.{zone.zone_id.split('/')[-1].lower()}.r53.lab. {SOA_MINIMUM_FALLBACK}")

    def _rrset_from(self, qname: dns.name.Name, record_sets: list[StoredRecordSet]) -> dns.rrset.RRset | None:
        rrset = None
        for record_set in record_sets:
            for value in record_set.values:
                try:
                    rdata = _rdata_from_value(record_set.rdtype, value)
                except dns.exception.DNSException:
                    continue
                if rrset is None:
                    rrset = dns.rrset.RRset(qname, dns.rdataclass.IN, record_set.rdtype)
                    rrset.update_ttl(record_set.ttl)
                rrset.add(rdata)
        return rrset

    def _alias_rrset(self, qname: dns.name.Name, rdtype: int, alias: dict, zones: list[ZoneHead], depth: int):
        target = _absolute(alias.get("DNSName") or alias.get("dns_name") or "")
        address = elbv2_addresses.address_for(target.to_text())
        if address is not None:
            if rdtype != dns.rdatatype.A:
                return None
            return dns.rrset.from_text(qname, LOAD_BALANCER_TTL, "IN", "A", address)
        zone = self._zone_for(target, zones)
        if zone is None or depth > MAX_CHASE:
            return None
        inner = self._lookup(target, rdtype, zone, zones, depth + 1)
        for rrset in inner.answer:
            if rrset.rdtype == rdtype:
                renamed = dns.rrset.RRset(qname, dns.rdataclass.IN, rdtype)
                renamed.update(rrset)
                renamed.update_ttl(rrset.ttl)
                return renamed
        return None

    def _lookup(self, qname: dns.name.Name, rdtype: int, zone: ZoneView, zones: list[ZoneHead], depth: int = 0) -> Answer:
        result = Answer()
        # A delegation between the apex and the name turns the answer into a referral.
        for ancestor_depth in range(len(zone.origin) + 1, len(qname) + 1):
            cut = qname.split(ancestor_depth)[1]
            delegation = [r for r in zone.at(cut) if r.rdtype == dns.rdatatype.NS]
            if delegation and not (cut == qname and rdtype == dns.rdatatype.DS):
                referral = self._rrset_from(cut, delegation)
                if referral is not None:
                    result.authoritative = False
                    result.authority.append(referral)
                    return result

        at_name = zone.at(qname)
        if not at_name:
            # Wildcard at the closest encloser (RFC 4592), only when the name itself is absent.
            for ancestor_depth in range(len(qname) - 1, len(zone.origin) - 1, -1):
                encloser = qname.split(ancestor_depth)[1]
                wildcard = dns.name.Name((b"*",) + encloser.labels)
                if zone.at(wildcard):
                    at_name = zone.at(wildcard)
                    break
                if any(r.name.is_subdomain(encloser) for r in zone.record_sets):
                    break  # the closest encloser exists and has no wildcard
        if not at_name:
            has_descendants = any(r.name.is_subdomain(qname) for r in zone.record_sets)
            result.rcode = dns.rcode.NOERROR if has_descendants else dns.rcode.NXDOMAIN
            result.authority.append(self._soa(zone))
            return result

        exact = [r for r in at_name if r.rdtype == rdtype and not r.alias]
        aliases = [r for r in at_name if r.rdtype == rdtype and r.alias]
        if exact:
            rrset = self._rrset_from(qname, _choose(exact))
            if rrset is not None:
                result.answer.append(rrset)
                return result
        if aliases:
            chosen = _choose(aliases)
            rrset = self._alias_rrset(qname, rdtype, chosen[0].alias or {}, zones, depth)
            if rrset is not None:
                result.answer.append(rrset)
                return result
        cname = [r for r in at_name if r.rdtype == dns.rdatatype.CNAME]
        if cname and rdtype != dns.rdatatype.CNAME:
            chosen = _choose(cname)
            if chosen[0].alias:
                rrset = self._alias_rrset(qname, rdtype, chosen[0].alias, zones, depth)
                if rrset is not None:
                    result.answer.append(rrset)
                return result
            rrset = self._rrset_from(qname, chosen)
            if rrset is not None:
                result.answer.append(rrset)
                target = rrset[0].target
                target_zone = self._zone_for(target, zones)
                if target_zone is not None and depth < MAX_CHASE:
                    chased = self._lookup(target, rdtype, target_zone, zones, depth + 1)
                    result.answer.extend(chased.answer)
                return result
        result.authority.append(self._soa(zone))
        return result

    def answer_question(self, qname: dns.name.Name, rdtype: int) -> Answer:
        own = self.answer_lab_names(qname, rdtype)
        if own is not None:
            return own
        zones = account_zones(self.account) if self.account else []
        zone = self._zone_for(qname, zones)
        if zone is None:
            refused = Answer()
            refused.rcode = dns.rcode.REFUSED
            refused.authoritative = False
            return refused
        return self._lookup(qname, rdtype, zone, zones)


class VpcResolver(LabAuthority):
    """An account's VPC resolver: its private hosted zones, and recursion for everything else."""

    def answer_question(self, qname: dns.name.Name, rdtype: int) -> Answer | None:  # type: ignore[override]
        zones = account_zones(self.account, private=True) if self.account else []
        zone = self._zone_for(qname, zones)
        if zone is None:
            return None
        return self._lookup(qname, rdtype, zone, zones)


def forward_to_resolver(wire: bytes, tcp: bool) -> bytes | None:
    query = dns.message.from_wire(wire)
    try:
        if tcp:
            reply = dns.query.tcp(query, lab_config.RESOLVER_ADDRESS, port=lab_config.DNS_PORT, timeout=4)
        else:
            reply = dns.query.udp(query, lab_config.RESOLVER_ADDRESS, port=lab_config.DNS_PORT, timeout=4,
                                  ignore_trailing=True)
    except (dns.exception.DNSException, OSError):
        failed = dns.message.make_response(query)
        failed.set_rcode(dns.rcode.SERVFAIL)
        return failed.to_wire()
    return reply.to_wire()


def build_response(wire: bytes, authority: LabAuthority, max_size: int) -> bytes | None:
    try:
        query = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return None
    response = dns.message.make_response(query)
    response.flags &= ~dns.flags.RA
    if not query.question:
        response.set_rcode(dns.rcode.FORMERR)
        return response.to_wire()
    question = query.question[0]
    try:
        answer = authority.answer_question(question.name, question.rdtype)
    except Exception:  # noqa: BLE001 - a lab server must answer SERVFAIL, never die
        response.set_rcode(dns.rcode.SERVFAIL)
        return response.to_wire()
    if answer is None:  # a VPC resolver's name outside its private zones
        return forward_to_resolver(wire, tcp=max_size > 512)
    response.set_rcode(answer.rcode)
    if answer.authoritative and answer.rcode != dns.rcode.REFUSED:
        response.flags |= dns.flags.AA
    response.answer.extend(answer.answer)
    response.authority.extend(answer.authority)
    if query.edns >= 0:
        max_size = max(max_size, min(query.payload, 4096))
    try:
        return response.to_wire(max_size=max_size)
    except dns.exception.TooBig:
        truncated = dns.message.make_response(query)
        truncated.flags |= dns.flags.TC
        if answer.authoritative:
            truncated.flags |= dns.flags.AA
        return truncated.to_wire()


class _UDPHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        reply = build_response(data, self.server.authority, 512)  # type: ignore[attr-defined]
        if reply is not None:
            sock.sendto(reply, self.client_address)


class _TCPHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        connection = self.request
        connection.settimeout(5)
        try:
            while True:
                header = connection.recv(2)
                if len(header) < 2:
                    return
                (length,) = struct.unpack("!H", header)
                data = b""
                while len(data) < length:
                    chunk = connection.recv(length - len(data))
                    if not chunk:
                        return
                    data += chunk
                reply = build_response(data, self.server.authority, 65535)  # type: ignore[attr-defined]
                if reply is None:
                    return
                connection.sendall(struct.pack("!H", len(reply)) + reply)
        except (TimeoutError, ConnectionError):
            return


class _UDPServer(socketserver.ThreadingUDPServer):
    allow_reuse_address = True
    daemon_threads = True


class _TCPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def serve_dns(port: int = lab_config.DNS_PORT) -> list[socketserver.BaseServer]:
    """Start UDP and TCP servers on every account address and the registry address."""
    install_change_counters()
    servers: list[socketserver.BaseServer] = []
    bindings: list[tuple[str, LabAuthority]] = [
        (address, LabAuthority(account)) for account, address in lab_config.ACCOUNT_DNS_ADDRESSES.items()]
    bindings.append((lab_config.REGISTRY_DNS_ADDRESS, LabAuthority(None)))
    bindings += [(address, VpcResolver(account)) for account, address in lab_config.VPC_RESOLVER_ADDRESSES.items()]
    for address, authority in bindings:
        for server_class, handler in ((_UDPServer, _UDPHandler), (_TCPServer, _TCPHandler)):
            server = server_class((address, port), handler)
            server.authority = authority  # type: ignore[attr-defined]
            threading.Thread(target=server.serve_forever, name=f"dns-{address}", daemon=True).start()
            servers.append(server)
    return servers
