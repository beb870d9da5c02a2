# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Know when a DNS change has really landed: find servers, ask one server, judge a round.

Plain Python, no Ansible import. The pieces, in the order a wait uses them:

- ``plan_wait(...)`` validates the options into a :class:`WaitPlan` (no network).
- ``find_zone`` / ``find_parent_servers`` / ``find_authoritative_servers`` walk from the
  parent zone's own servers instead of trusting one resolver's cached view of the child.
- ``DnsTransport.ask`` asks one server address one question (UDP, TCP when truncated);
  ``read_answer`` / ``read_delegation`` turn the reply into an :class:`Observation`.
- ``judge`` says whether an observation matches the expectation and, if not, why.
- ``wait_for_propagation(plan, check_mode)`` polls the stages in order, one query per server
  address per round, in parallel, and returns a :class:`WaitResult` or raises
  :class:`PropagationTimeout` naming every server that still disagrees.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

try:
    import dns.exception
    import dns.flags
    import dns.message
    import dns.name
    import dns.query
    import dns.rcode
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype
    import dns.resolver

    HAS_DNSPYTHON = True
    DNSPYTHON_IMPORT_ERROR: Exception | None = None
except ImportError as exc:  # pragma: no cover - reported by the module as missing_required_lib
    HAS_DNSPYTHON = False
    DNSPYTHON_IMPORT_ERROR = exc

STAGES = ("authoritative", "delegation", "resolvers", "cache_expiry")
DEFAULT_STAGES = ("authoritative", "resolvers")
MATCH_MODES = ("exact", "superset", "subset")
ANSWER_STAGES = ("authoritative", "resolvers")  # stages that compare the record with expect*
AGREEMENT_STAGES = ("authoritative", "delegation")  # stages whose passing starts the cache clock

# RFC 6891 / DNS flag day 2020: 1232 bytes avoids IP fragmentation; larger answers come back
# truncated and are asked again over TCP.
EDNS_PAYLOAD = 1232
MAX_CHAIN = 16
# A resolver's remaining TTL is whole seconds; asking again this long after it should have
# run out lands after the expiry instead of on the boundary.
EXPIRY_MARGIN_S = 0.3
MIN_SLEEP_S = 0.2


class ProbeError(Exception):
    """An option is wrong or the servers could not be found; names the option and the fix."""

    def __init__(self, option: str | None, message: str):
        self.option = option
        super().__init__(f"{option}: {message}" if option else message)


class PropagationTimeout(Exception):
    """The change did not land everywhere within ``timeout``; carries the last result."""

    def __init__(self, message: str, result: WaitResult):
        self.result = result
        super().__init__(message)


# ---------------------------------------------------------------------------------------------
# values


@dataclass(frozen=True)
class ServerAddress:
    """One address of one server, as asked in one stage."""

    server: str  # the server's host name, or the address itself when given as an IP
    address: str
    port: int
    stage: str


@dataclass(frozen=True)
class Observation:
    """What one server address answered in one round, and whether that matches."""

    server: str
    address: str
    stage: str
    answer: tuple[str, ...] = ()
    ttl: int | None = None
    rcode: str | None = None  # None when nothing came back
    authoritative: bool = False
    chain: tuple[str, ...] = ()  # CNAME targets followed, in order
    tail: str | None = None  # a CNAME target the server is not authoritative for, still to resolve
    reason: str = ""  # why it does not count (timeout, SERVFAIL, no AA, mismatch), "" when it matches
    matches: bool = False
    checked_at: float = 0.0
    tcp: bool = False
    min_ttl: int | None = None  # the earliest part of this answer a cache refreshes
    unanswered_rounds: int = 0
    asked_rounds: int = 0

    @property
    def answered(self) -> bool:
        return self.rcode is not None

    def row(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "address": self.address,
            "stage": self.stage,
            "answer": list(self.answer),
            "ttl": self.ttl,
            "matches": self.matches,
            "rcode": self.rcode or "NO_ANSWER",
            "checked_at": iso_time(self.checked_at),
            "reason": self.reason,
            "aa": self.authoritative,
            "chain": list(self.chain),
            "tcp": self.tcp,
            "asked_rounds": self.asked_rounds,
            "unanswered_rounds": self.unanswered_rounds,
        }


@dataclass(frozen=True)
class Expectation:
    """What every server should answer for ``name``/``rdtype``."""

    name: str
    rdtype: str
    values: tuple[str, ...] = ()  # canonical text, sorted
    absent: bool = False
    match: str = "exact"
    alias: str | None = None  # expect_alias.dns_name: values are re-read from it every round
    name_servers: tuple[str, ...] = ()  # expect_name_servers, for the delegation stage

    @property
    def describes_record(self) -> bool:
        return bool(self.values or self.absent or self.alias)

    def wanted(self) -> str:
        if self.absent:
            return "no record (NXDOMAIN or NODATA)"
        qualifier = {"exact": "", "superset": "at least ", "subset": "only values from "}[self.match]
        return f"{qualifier}{', '.join(self.values) or '(unresolved)'}"


@dataclass(frozen=True)
class WaitPlan:
    expectation: Expectation
    stages: tuple[str, ...]
    resolvers: tuple[tuple[str, int], ...]  # empty: the system's
    nameservers: tuple[str, ...]  # empty: found from the parent's delegation
    zone: str | None
    timeout: float
    poll_interval: float
    query_timeout: float
    port: int
    tcp_fallback: bool
    changed_at: float | None = None  # when the awaited change went live, as an earlier run recorded it


@dataclass
class WaitResult:
    propagated: bool
    elapsed_s: float
    rounds: int
    zone: str | None
    stage_times: dict[str, str] = field(default_factory=dict)
    stage_elapsed_s: dict[str, float] = field(default_factory=dict)
    servers: list[Observation] = field(default_factory=list)
    cache_clear_at: float | None = None
    max_old_ttl: int | None = None
    max_old_ttl_source: str | None = None
    cache_expiry_counted_from: str | None = None
    expected: tuple[str, ...] = ()
    pending_stage: str | None = None

    def as_dict(self) -> dict[str, Any]:
        disagreeing = [o for o in self.servers if not o.matches]
        return {
            "propagated": self.propagated,
            "elapsed_s": round(self.elapsed_s, 3),
            "rounds": self.rounds,
            "servers_total": len(self.servers),
            "servers_disagreeing": len(disagreeing),
            "stage_times": dict(self.stage_times),
            "stage_elapsed_s": dict(self.stage_elapsed_s),
            "pending_stage": self.pending_stage,
            "cache_clear_at": iso_time(self.cache_clear_at) if self.cache_clear_at is not None else None,
            "max_old_ttl": self.max_old_ttl,
            "max_old_ttl_source": self.max_old_ttl_source,
            "cache_expiry_counted_from": self.cache_expiry_counted_from,
            "zone": self.zone,
            "expected": list(self.expected),
            "servers": [o.row() for o in self.servers],
        }


def iso_time(epoch: float) -> str:
    # datetime.UTC is 3.11+; module_utils also run on the older Pythons of managed hosts
    moment = datetime.fromtimestamp(epoch, tz=timezone.utc)  # noqa: UP017
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------
# options -> plan


def absolute_name(text: str) -> str:
    return dns.name.from_text(text.strip()).to_text().lower()


def canonical_value(rdtype: int, text: str) -> str:
    """The text a value compares by: names lower-cased and absolute, addresses compressed."""
    return canonical_rdata(dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.RdataType.make(rdtype), text,
                                               origin=dns.name.root))


def canonical_rdata(rdata: Any) -> str:
    if rdata.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        return str(ipaddress.ip_address(rdata.address))
    # RFC 4034 6.2: the canonical form lower-cases the names inside NS, CNAME, MX, SRV, ... and
    # keeps TXT and CAA values as they are.
    wire = rdata.to_digestable(dns.name.root)
    return dns.rdata.from_wire(rdata.rdclass, rdata.rdtype, wire, 0, len(wire)).to_text()


def expected_text(rdtype: int, value: str) -> str:
    # A bare TXT value "v=spf1 include:x ~all" is one string to a user; the zone-file syntax
    # would split it at every space.
    if rdtype in (dns.rdatatype.TXT, dns.rdatatype.SPF) and not value.lstrip().startswith('"'):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def parse_address(text: str, default_port: int, option: str) -> tuple[str, int]:
    """``IP``, ``IP:port``, ``[IPv6]:port`` or bare IPv6 -> (address, port)."""
    value = text.strip()
    host, port = value, default_port
    if value.startswith("["):
        host, _bracket, rest = value[1:].partition("]")
        if rest.startswith(":"):
            port = _port(rest[1:], text, option)
    elif value.count(":") == 1:
        host, _colon, port_text = value.partition(":")
        port = _port(port_text, text, option)
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        raise ProbeError(option, f"{text!r} is not an IP address (with an optional :port); give resolvers as "
                                 "addresses such as 192.0.2.53 or 192.0.2.53:5353") from None


def _port(text: str, original: str, option: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ProbeError(option, f"{original!r} has an invalid port; use a number from 1 to 65535")
    return int(text)


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def plan_wait(name: str, rdtype: str = "A", expect: Sequence[str] | None = None, expect_alias: Mapping[str, Any] | None = None,
              expect_absent: bool = False, match: str = "exact", stages: Sequence[str] | None = None,
              expect_name_servers: Sequence[str] | None = None, nameservers: Sequence[str] | None = None,
              resolvers: Sequence[str] | None = None, zone: str | None = None, timeout: float = 1800,
              poll_interval: float = 5, query_timeout: float = 2, port: int = 53, tcp_fallback: bool = True,
              changed_at: str | float | None = None, now: float | None = None) -> WaitPlan:
    """Validate the options into a plan; raises :class:`ProbeError` naming the option to fix."""
    if not HAS_DNSPYTHON:
        raise ProbeError(None, f"dnspython is required: {DNSPYTHON_IMPORT_ERROR}")
    try:
        record_name = absolute_name(name)
    except dns.exception.DNSException as error:
        raise ProbeError("name", f"{name!r} is not a domain name: {error}") from None
    try:
        type_code = dns.rdatatype.from_text(str(rdtype).upper())
    except dns.exception.DNSException:
        raise ProbeError("type", f"{rdtype!r} is not a DNS record type; use A, AAAA, CNAME, TXT, MX, NS, ...") from None
    type_text = dns.rdatatype.to_text(type_code)

    chosen = tuple(stages or DEFAULT_STAGES)
    for stage in chosen:
        if stage not in STAGES:
            raise ProbeError("stages", f"{stage!r} is not a stage; choose from {', '.join(STAGES)}")
    if len(set(chosen)) != len(chosen):
        raise ProbeError("stages", f"{list(chosen)} lists a stage twice; list each stage once, in the order to check")
    if "cache_expiry" in chosen:
        before = chosen[:chosen.index("cache_expiry")]
        if not any(stage in AGREEMENT_STAGES for stage in before):
            raise ProbeError("stages", "cache_expiry counts from when the authoritative servers agreed; put "
                                       "authoritative (or delegation) before cache_expiry")
    if match not in MATCH_MODES:
        raise ProbeError("match", f"{match!r} is not one of {', '.join(MATCH_MODES)}")

    given = [label for label, present in (("expect", bool(expect)), ("expect_alias", bool(expect_alias)),
                                          ("expect_absent", bool(expect_absent))) if present]
    if len(given) > 1:
        raise ProbeError(given[1], f"give only one of expect, expect_alias, expect_absent (got {' and '.join(given)})")

    name_servers: tuple[str, ...] = ()
    if expect_name_servers:
        try:
            name_servers = tuple(sorted({absolute_name(value) for value in expect_name_servers}))
        except dns.exception.DNSException as error:
            raise ProbeError("expect_name_servers", f"{list(expect_name_servers)} holds a value that is not a host "
                                                    f"name: {error}") from None
    if "delegation" in chosen and not name_servers:
        raise ProbeError("expect_name_servers", "the delegation stage compares the parent's NS set with "
                                                "expect_name_servers; give the new zone's name servers (as "
                                                "route53_zone_clone returned them)")

    values: tuple[str, ...] = ()
    if expect:
        parsed = set()
        for value in expect:
            try:
                parsed.add(canonical_value(type_code, expected_text(type_code, str(value))))
            except (dns.exception.DNSException, ValueError) as error:
                raise ProbeError("expect", f"{value!r} is not a valid {type_text} value ({error}); write it as in a "
                                           "zone file, for example 192.0.2.10 for A or '10 mail.example.com.' for MX") from None
        values = tuple(sorted(parsed))
    elif not given and name_servers and type_code == dns.rdatatype.NS:
        values = name_servers

    alias: str | None = None
    if expect_alias:
        if type_code not in (dns.rdatatype.A, dns.rdatatype.AAAA):
            raise ProbeError("expect_alias", f"an alias target is compared by its addresses; use type A or AAAA, "
                                             f"not {type_text}")
        dns_name = expect_alias.get("dns_name")
        if not dns_name:
            raise ProbeError("expect_alias.dns_name", "give the DNS name of the alias target, for example the load "
                                                      "balancer's DNSName")
        alias = absolute_name(str(dns_name))

    expectation = Expectation(name=record_name, rdtype=type_text, values=values, absent=bool(expect_absent),
                              match=match, alias=alias, name_servers=name_servers)
    if any(stage in ANSWER_STAGES for stage in chosen) and not expectation.describes_record:
        raise ProbeError("expect", f"the {' and '.join(s for s in chosen if s in ANSWER_STAGES)} stage compares "
                                   f"{record_name} {type_text} with an expectation; give expect, expect_alias or "
                                   "expect_absent")

    resolver_addresses = tuple(parse_address(text, 53, "resolvers") for text in (resolvers or ()))
    if zone:
        try:
            zone = absolute_name(zone)
        except dns.exception.DNSException as error:
            raise ProbeError("zone", f"{zone!r} is not a domain name: {error}") from None
        if not dns.name.from_text(record_name).is_subdomain(dns.name.from_text(zone)):
            raise ProbeError("zone", f"{record_name} is not inside {zone}; give the zone that holds the record")
    for label, number in (("timeout", timeout), ("poll_interval", poll_interval), ("query_timeout", query_timeout)):
        if number is None or float(number) <= 0:
            raise ProbeError(label, f"{number!r} must be a positive number of seconds")
    if not 0 < int(port) < 65536:
        raise ProbeError("port", f"{port!r} is not a port number; use 53 unless the servers listen elsewhere (a lab)")
    changed_epoch = parse_changed_at(changed_at, time.time() if now is None else now)
    if changed_epoch is not None and "cache_expiry" not in chosen:
        raise ProbeError("changed_at", "changed_at only shortens the cache_expiry stage; add cache_expiry to stages "
                                       "or leave changed_at out")
    return WaitPlan(expectation=expectation, stages=chosen, resolvers=resolver_addresses,
                    nameservers=tuple(str(n).strip() for n in (nameservers or ()) if str(n).strip()),
                    zone=zone, timeout=float(timeout), poll_interval=float(poll_interval),
                    query_timeout=float(query_timeout), port=int(port), tcp_fallback=bool(tcp_fallback),
                    changed_at=changed_epoch)


# A recorded time this far ahead of the local clock is a wrong value, not clock skew.
CHANGED_AT_FUTURE_SLACK_S = 30.0


def parse_changed_at(value: str | float | None, now: float) -> float | None:
    """Epoch seconds from ``changed_at`` (epoch seconds or ISO 8601; no zone means UTC), or None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = str(value).strip()
    try:
        epoch = float(text)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ProbeError("changed_at", f"{text!r} is neither epoch seconds nor an ISO 8601 time; give e.g. "
                                           "1764000000 or 2026-11-22T09:00:00Z") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)  # noqa: UP017 (older Pythons on managed hosts)
        epoch = parsed.timestamp()
    if epoch > now + CHANGED_AT_FUTURE_SLACK_S:
        raise ProbeError("changed_at", f"{iso_time(epoch)} is in the future (now {iso_time(now)}); give the time "
                                       "the change went live, as the earlier run recorded it")
    return epoch


# ---------------------------------------------------------------------------------------------
# ask one server


@dataclass(frozen=True)
class Reply:
    """The raw outcome of one question to one address."""

    message: Any = None  # dns.message.Message, None when nothing came back
    error: str = ""
    tcp: bool = False


class DnsTransport:
    """Asks one address one question; the only place that touches the network."""

    def __init__(self, query_timeout: float = 2.0, tcp_fallback: bool = True):
        self.query_timeout = query_timeout
        self.tcp_fallback = tcp_fallback

    def ask(self, address: str, port: int, qname: str, rdtype: str, recursion: bool) -> Reply:
        query = dns.message.make_query(qname, rdtype, use_edns=0, payload=EDNS_PAYLOAD)
        if not recursion:
            query.flags &= ~dns.flags.RD
        try:
            message = dns.query.udp(query, address, timeout=self.query_timeout, port=port, ignore_unexpected=True)
            if not message.flags & dns.flags.TC:
                return Reply(message=message)
            if not self.tcp_fallback:
                return Reply(message=message, error="answer truncated (TC) and tcp_fallback is false; set "
                                                    "tcp_fallback: true to read it over TCP")
            return Reply(message=dns.query.tcp(query, address, timeout=self.query_timeout, port=port), tcp=True)
        except dns.exception.Timeout:
            return Reply(error=f"timed out after {self.query_timeout:g} s")
        except (OSError, EOFError) as error:
            return Reply(error=f"network error: {error}")
        except dns.exception.DNSException as error:
            return Reply(error=f"malformed answer: {error}")


def rcode_text(message: Any) -> str:
    return dns.rcode.to_text(message.rcode())


def negative_ttl(message: Any) -> int | None:
    """RFC 2308: a negative answer is cached for min(SOA TTL, SOA minimum)."""
    for rrset in message.authority:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
            return int(min(rrset.ttl, rrset[0].minimum))
    return None


def read_answer(reply: Reply, target: ServerAddress, qname: str, rdtype: str, checked_at: float) -> Observation:
    """Follow the CNAME chain inside the reply and read the values of ``rdtype`` at its end."""
    base = Observation(server=target.server, address=target.address, stage=target.stage, checked_at=checked_at,
                       tcp=reply.tcp)
    message = reply.message
    if message is None:
        return replace(base, reason=reply.error)
    rcode = rcode_text(message)
    aa = bool(message.flags & dns.flags.AA)
    base = replace(base, rcode=rcode, authoritative=aa)
    if reply.error:
        return replace(base, reason=reply.error)
    if rcode not in ("NOERROR", "NXDOMAIN"):
        return replace(base, reason=f"{rcode}: the server could not answer")

    type_code = dns.rdatatype.from_text(rdtype)
    name = dns.name.from_text(qname)
    chain: list[str] = []
    ttls: list[int] = []
    values: list[str] = []
    for _link in range(MAX_CHAIN):
        found = _rrset(message.answer, name, type_code)
        if found is not None:
            values = sorted({canonical_rdata(rdata) for rdata in found})
            ttls.append(int(found.ttl))
            break
        cname = _rrset(message.answer, name, dns.rdatatype.CNAME) if type_code != dns.rdatatype.CNAME else None
        if cname is None or not len(cname):
            break
        ttls.append(int(cname.ttl))
        name = cname[0].target
        chain.append(name.to_text().lower())

    tail = None
    if not values:
        if not chain or rcode == "NXDOMAIN" or negative_ttl(message) is not None:
            if negative_ttl(message) is not None:
                ttls.append(negative_ttl(message) or 0)
        else:
            # the chain left the zone this server is authoritative for; the rest is asked elsewhere
            tail = chain[-1]
    ttl = max(ttls) if ttls else None
    return replace(base, answer=tuple(values), ttl=ttl, min_ttl=min(ttls) if ttls else None,
                   chain=tuple(chain), tail=tail)


def read_delegation(reply: Reply, target: ServerAddress, zone: str, checked_at: float) -> Observation:
    """The NS set a parent server hands out for ``zone`` (a referral, or an answer if it serves both)."""
    base = Observation(server=target.server, address=target.address, stage=target.stage, checked_at=checked_at,
                       tcp=reply.tcp)
    message = reply.message
    if message is None:
        return replace(base, reason=reply.error)
    rcode = rcode_text(message)
    base = replace(base, rcode=rcode, authoritative=bool(message.flags & dns.flags.AA))
    if reply.error:
        return replace(base, reason=reply.error)
    name = dns.name.from_text(zone)
    found = _rrset(message.answer, name, dns.rdatatype.NS) or _rrset(message.authority, name, dns.rdatatype.NS)
    if found is None:
        return replace(base, reason=f"{rcode}: no NS set for {zone} (the zone is not delegated by this server)")
    return replace(base, answer=tuple(sorted({rdata.target.to_text().lower() for rdata in found})),
                   ttl=int(found.ttl), min_ttl=int(found.ttl))


def _rrset(section: Iterable[Any], name: Any, rdtype: int) -> Any:
    for rrset in section:
        if rrset.name == name and rrset.rdtype == rdtype and rrset.rdclass == dns.rdataclass.IN:
            return rrset
    return None


# ---------------------------------------------------------------------------------------------
# judge


def judge(observation: Observation, expectation: Expectation, expected_values: Sequence[str]) -> Observation:
    """Set ``matches`` and ``reason`` of one observation."""
    if not observation.answered or observation.reason:
        reason = observation.reason or "no answer"
        return replace(observation, matches=False, reason=reason)
    if observation.stage == "authoritative" and not observation.authoritative:
        return replace(observation, matches=False,
                       reason="answer without the AA flag: this server is not authoritative for the zone "
                              "(a lame delegation, or a resolver listed under nameservers)")
    if observation.tail is not None:
        return replace(observation, matches=False,
                       reason=f"the CNAME chain continues at {observation.tail}, which could not be resolved")
    got = set(observation.answer)
    if observation.stage == "delegation":
        wanted = set(expectation.name_servers)
        if got == wanted:
            return replace(observation, matches=True, reason="")
        return replace(observation, matches=False, reason=_difference(got, wanted, "NS"))
    if expectation.absent:
        if not got:
            return replace(observation, matches=True, reason="")
        return replace(observation, matches=False, reason=f"still answers {', '.join(observation.answer)}")
    wanted = set(expected_values)
    if not wanted:
        return replace(observation, matches=False, reason=f"the expected addresses of {expectation.alias} are unknown")
    if expectation.match == "exact":
        ok = got == wanted
    elif expectation.match == "superset":
        ok = got >= wanted
    else:
        ok = bool(got) and got <= wanted
    if ok:
        return replace(observation, matches=True, reason="")
    if not got:
        status = "NXDOMAIN" if observation.rcode == "NXDOMAIN" else "NODATA"
        return replace(observation, matches=False, reason=f"{status}: no {expectation.rdtype} record yet")
    return replace(observation, matches=False, reason=_difference(got, wanted, expectation.rdtype))


def _difference(got: set[str], wanted: set[str], what: str) -> str:
    parts = []
    if got - wanted:
        parts.append(f"unexpected {what} {', '.join(sorted(got - wanted))}")
    if wanted - got:
        parts.append(f"missing {', '.join(sorted(wanted - got))}")
    return "; ".join(parts) or "differs"


def disagreement_line(observation: Observation) -> str:
    said = ", ".join(observation.answer) if observation.answer else (observation.rcode or "nothing")
    ttl = f" (ttl {observation.ttl})" if observation.ttl is not None and observation.answer else ""
    if not observation.answered:
        said = "nothing"
        if observation.asked_rounds and observation.unanswered_rounds == observation.asked_rounds:
            said = f"nothing in any of {observation.asked_rounds} rounds (the server did not answer for the whole wait)"
    return f"{observation.server} ({observation.address}) [{observation.stage}] answered {said}{ttl} — {observation.reason}"


def timeout_message(expectation: Expectation, stage: str, waited: float, observations: Sequence[Observation],
                    expected_values: Sequence[str]) -> str:
    disagreeing = [o for o in observations if not o.matches]
    if stage == "delegation":
        wanted = ", ".join(expectation.name_servers)
    else:
        wanted = expectation.wanted() if not expectation.alias else \
            f"{expectation.alias} addresses {', '.join(expected_values) or '(unresolved)'}"
    lines = [(f"{expectation.name} {expectation.rdtype} did not pass the {stage} stage within {waited:.0f} s "
              f"(expected {wanted}); {len(disagreeing)} of {len(observations)} server addresses still disagree:")]
    lines.extend(f"  - {disagreement_line(o)}" for o in disagreeing)
    lines.append("Fix the record or the expectation, or raise timeout if the change is still on its way.")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# find servers


class Finder:
    """Finds the zone, its parent's servers and its own authoritative servers."""

    def __init__(self, transport: DnsTransport, bootstrap: tuple[str, int], port: int):
        self.transport = transport
        self.bootstrap = bootstrap
        self.port = port

    def recursive(self, qname: str, rdtype: str) -> Any:
        reply = self.transport.ask(self.bootstrap[0], self.bootstrap[1], qname, rdtype, recursion=True)
        if reply.message is None:
            raise ProbeError("resolvers", f"the resolver {self.bootstrap[0]}:{self.bootstrap[1]} did not answer "
                                          f"{qname} {rdtype}: {reply.error}; give a working resolver under resolvers")
        return reply.message

    def addresses_of(self, host: str) -> list[str]:
        found: list[str] = []
        for rdtype in ("A", "AAAA"):
            message = self.recursive(host, rdtype)
            chain_end = read_answer(Reply(message=message), ServerAddress(host, "", 0, "find"), host, rdtype, 0.0)
            found.extend(chain_end.answer)
        return found

    def find_zone(self, name: str) -> str:
        """The apex of the zone holding ``name``, by asking SOA upwards (RFC 2308 authority SOA)."""
        candidate = dns.name.from_text(name)
        while True:
            message = self.recursive(candidate.to_text(), "SOA")
            rcode = rcode_text(message)
            if rcode not in ("NOERROR", "NXDOMAIN"):
                raise ProbeError("zone", f"the resolver {self.bootstrap[0]} answered {rcode} for {candidate} SOA; "
                                         "give the zone explicitly under zone, or a working resolver under resolvers")
            if _rrset(message.answer, candidate, dns.rdatatype.SOA) is not None:
                return candidate.to_text().lower()
            has_cname = _rrset(message.answer, candidate, dns.rdatatype.CNAME) is not None
            for rrset in message.authority:
                if rrset.rdtype == dns.rdatatype.SOA and not has_cname and candidate.is_subdomain(rrset.name):
                    return rrset.name.to_text().lower()
            if candidate == dns.name.root:
                raise ProbeError("zone", f"no zone found above {name}; give it under zone")
            candidate = candidate.parent()

    def find_parent_servers(self, zone: str) -> list[ServerAddress]:
        apex = dns.name.from_text(zone)
        if apex == dns.name.root:
            raise ProbeError("zone", "the root zone has no parent to ask; give nameservers explicitly")
        parent = self.find_zone(apex.parent().to_text())
        return self.servers_of(parent, "delegation")

    def servers_of(self, zone: str, stage: str) -> list[ServerAddress]:
        """The addresses of a zone's NS set as the resolver knows it."""
        message = self.recursive(zone, "NS")
        ns = _rrset(message.answer, dns.name.from_text(zone), dns.rdatatype.NS)
        if ns is None:
            raise ProbeError("nameservers", f"the resolver {self.bootstrap[0]} knows no NS set for {zone}; give the "
                                            "servers under nameservers")
        servers: list[ServerAddress] = []
        for host in sorted({rdata.target.to_text().lower() for rdata in ns}):
            servers.extend(ServerAddress(host, address, self.port, stage) for address in self.addresses_of(host))
        return servers

    def find_authoritative_servers(self, zone: str, parent_servers: Sequence[ServerAddress]) -> list[ServerAddress]:
        """Ask every parent server for the delegation; every NS named by any of them, every address."""
        hosts: set[str] = set()
        glue: dict[str, set[str]] = {}
        failures = []
        apex = dns.name.from_text(zone)
        for parent in parent_servers:
            reply = self.transport.ask(parent.address, parent.port, zone, "NS", recursion=False)
            observation = read_delegation(reply, parent, zone, 0.0)
            if not observation.answer:
                failures.append(f"{parent.server} ({parent.address}): {observation.reason}")
                continue
            hosts.update(observation.answer)
            for rrset in reply.message.additional:
                if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA) and rrset.name.is_subdomain(apex):
                    glue.setdefault(rrset.name.to_text().lower(), set()).update(r.address for r in rrset)
        if not hosts:
            raise ProbeError("nameservers", f"no parent server of {zone} delegates it ({'; '.join(failures)}); "
                                            "give the zone's servers under nameservers")
        servers: list[ServerAddress] = []
        for host in sorted(hosts):
            addresses = sorted(glue.get(host) or self.addresses_of(host))
            if not addresses:
                servers.append(ServerAddress(host, "", self.port, "authoritative"))
            servers.extend(ServerAddress(host, address, self.port, "authoritative") for address in addresses)
        return servers

    def given_servers(self, nameservers: Sequence[str]) -> list[ServerAddress]:
        servers: list[ServerAddress] = []
        for given in nameservers:
            if is_ip(given):
                servers.append(ServerAddress(given, str(ipaddress.ip_address(given)), self.port, "authoritative"))
                continue
            host = absolute_name(given)
            addresses = self.addresses_of(host)
            if not addresses:
                raise ProbeError("nameservers", f"{given} has no A or AAAA record; give its address instead")
            servers.extend(ServerAddress(host, address, self.port, "authoritative") for address in addresses)
        return servers


def system_resolvers() -> list[tuple[str, int]]:
    try:
        configured = dns.resolver.Resolver()
    except dns.exception.DNSException as error:
        raise ProbeError("resolvers", f"the system has no resolver configured ({error}); give resolvers") from None
    return [(str(address), int(configured.port)) for address in configured.nameservers]


# ---------------------------------------------------------------------------------------------
# the wait


class Waiter:
    """Polls the plan's stages in order; one query per server address per round, in parallel."""

    def __init__(self, plan: WaitPlan, transport: DnsTransport | None = None, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep):
        self.plan = plan
        self.transport = transport or DnsTransport(plan.query_timeout, plan.tcp_fallback)
        self.clock = clock
        self.sleep = sleep
        self.resolvers = list(plan.resolvers) or system_resolvers()
        if not self.resolvers:
            raise ProbeError("resolvers", "no resolver is configured on this system; give resolvers")
        self.finder = Finder(self.transport, self.resolvers[0], plan.port)
        self.zone: str | None = plan.zone
        self.servers: dict[str, list[ServerAddress]] = {}
        self.history: dict[tuple[str, str, str], tuple[int, int]] = {}  # (stage, server, address) -> asked, unanswered
        self.old_ttls: list[int] = []
        self.agreed_ttls: list[int] = []
        self.expected_values: tuple[str, ...] = plan.expectation.values

    # -- servers per stage

    def zone_apex(self) -> str:
        if self.zone is None:
            expectation = self.plan.expectation
            if expectation.rdtype == "NS" and "delegation" in self.plan.stages:
                self.zone = expectation.name
            else:
                self.zone = self.finder.find_zone(expectation.name)
        return self.zone

    def servers_for(self, stage: str) -> list[ServerAddress]:
        if stage not in self.servers:
            if stage == "resolvers":
                self.servers[stage] = [ServerAddress(f"{a}:{p}" if p != 53 else a, a, p, stage) for a, p in self.resolvers]
            elif stage == "delegation":
                self.servers[stage] = self.finder.find_parent_servers(self.zone_apex())
            elif self.plan.nameservers:
                self.servers[stage] = self.finder.given_servers(self.plan.nameservers)
            else:
                zone = self.zone_apex()
                parents = self.finder.find_parent_servers(zone)
                self.servers[stage] = self.finder.find_authoritative_servers(zone, parents)
        return self.servers[stage]

    # -- one round

    def ask_one(self, target: ServerAddress) -> Observation:
        expectation = self.plan.expectation
        checked_at = self.clock()
        if not target.address:
            return Observation(server=target.server, address="", stage=target.stage, checked_at=checked_at,
                               reason=f"{target.server} has no address")
        if target.stage == "delegation":
            reply = self.transport.ask(target.address, target.port, self.zone_apex(), "NS", recursion=False)
            return read_delegation(reply, target, self.zone_apex(), checked_at)
        reply = self.transport.ask(target.address, target.port, expectation.name, expectation.rdtype,
                                   recursion=target.stage == "resolvers")
        return read_answer(reply, target, expectation.name, expectation.rdtype, checked_at)

    def resolve_tail(self, name: str) -> Observation:
        reply = self.transport.ask(self.resolvers[0][0], self.resolvers[0][1], name, self.plan.expectation.rdtype,
                                   recursion=True)
        return read_answer(reply, ServerAddress(name, self.resolvers[0][0], self.resolvers[0][1], "resolvers"),
                           name, self.plan.expectation.rdtype, self.clock())

    def refresh_alias(self, pool: ThreadPoolExecutor) -> Any:
        alias = self.plan.expectation.alias
        if alias is None:
            return None
        return pool.submit(self.resolve_tail, alias)

    def round(self, stage: str, pool: ThreadPoolExecutor) -> list[Observation]:
        targets = self.servers_for(stage)
        alias_future = self.refresh_alias(pool) if stage in ANSWER_STAGES else None
        observations = list(pool.map(self.ask_one, targets))
        tails = sorted({o.tail for o in observations if o.tail and not o.reason})
        pending = {tail: pool.submit(self.resolve_tail, tail) for tail in tails}
        resolved = {tail: future.result() for tail, future in pending.items()}
        if alias_future is not None:
            alias_answer = alias_future.result()
            if alias_answer.answer:
                self.expected_values = alias_answer.answer
        judged = []
        for observation in observations:
            if observation.tail in resolved:
                end = resolved[observation.tail]
                if end.answered and not end.reason and end.tail is None:
                    observation = replace(observation, answer=end.answer, tail=None,
                                          chain=observation.chain + end.chain)
            clean = observation.answered and not observation.reason and observation.tail is None and (
                observation.authoritative or stage != "authoritative")
            observation = judge(observation, self.plan.expectation, self.expected_values)
            if stage in AGREEMENT_STAGES and clean and not observation.matches and observation.ttl is not None:
                self.old_ttls.append(observation.ttl)
            key = (stage, observation.server, observation.address)
            asked, unanswered = self.history.get(key, (0, 0))
            asked, unanswered = asked + 1, unanswered + (0 if observation.answered else 1)
            self.history[key] = (asked, unanswered)
            observation = replace(observation, asked_rounds=asked, unanswered_rounds=unanswered)
            judged.append(observation)
        return judged

    def next_round_at(self, round_started: float, observations: Sequence[Observation]) -> float:
        """Poll again after poll_interval, or sooner when a cached old answer is due to expire."""
        wake = round_started + self.plan.poll_interval
        for o in observations:
            if o.stage == "resolvers" and not o.matches and o.answered and o.min_ttl is not None:
                due = o.checked_at + o.min_ttl + EXPIRY_MARGIN_S
                if due > self.clock() + MIN_SLEEP_S:
                    wake = min(wake, due)
        return wake

    # -- the whole wait

    def run(self, check_mode: bool = False) -> WaitResult:
        plan = self.plan
        start = self.clock()
        deadline = start + plan.timeout
        result = WaitResult(propagated=False, elapsed_s=0.0, rounds=0, zone=self.zone, expected=self.expected_values)
        latest: dict[str, list[Observation]] = {}
        agreed_at: float | None = None

        def finish(propagated: bool, pending: str | None) -> WaitResult:
            result.propagated = propagated
            result.pending_stage = pending
            result.elapsed_s = self.clock() - start
            result.zone = self.zone
            result.expected = self.expected_values
            result.servers = [o for stage in plan.stages for o in latest.get(stage, [])]
            return result

        def passed(stage: str, at: float) -> None:
            result.stage_times[stage] = iso_time(at)
            result.stage_elapsed_s[stage] = round(at - start, 3)

        # threads start only as needed; 64 covers 8 name servers x (A + AAAA) x 4 stages at once
        with ThreadPoolExecutor(max_workers=64, thread_name_prefix="dns-probe") as pool:
            if self.plan.expectation.alias:
                first = self.resolve_tail(self.plan.expectation.alias)
                if first.rcode == "NXDOMAIN":
                    raise ProbeError("expect_alias.dns_name", f"{self.plan.expectation.alias} does not exist "
                                                              "(NXDOMAIN); give the alias target's DNS name, e.g. the "
                                                              "load balancer's DNSName")
                self.expected_values = first.answer
            index = 0
            while index < len(plan.stages):
                stage = plan.stages[index]
                if stage == "cache_expiry":
                    self.set_cache_deadline(result, agreed_at)
                    clear_at = result.cache_clear_at or start
                    if clear_at > self.clock() and check_mode:
                        for later in plan.stages[index + 1:]:
                            latest[later] = self.round(later, pool)
                        return finish(False, stage)
                    if clear_at > deadline:
                        finish(False, stage)
                        raise PropagationTimeout(
                            f"{plan.expectation.name} {plan.expectation.rdtype}: caches may hold the old answer until "
                            f"{iso_time(clear_at)} (max_old_ttl {result.max_old_ttl} s), {clear_at - deadline:.0f} s "
                            f"after the timeout; raise timeout to at least {clear_at - start + plan.poll_interval:.0f}",
                            result)
                    while self.clock() < clear_at:
                        self.sleep(max(0.0, clear_at - self.clock()))
                    passed(stage, self.clock())
                    index += 1
                    continue
                round_started = self.clock()
                observations = self.round(stage, pool)
                result.rounds += 1
                latest[stage] = observations
                if observations and all(o.matches for o in observations):
                    finished_at = max(o.checked_at for o in observations)
                    passed(stage, finished_at)
                    if stage in AGREEMENT_STAGES:
                        agreed_at = finished_at
                        self.agreed_ttls = [o.ttl for o in observations if o.ttl is not None]
                    index += 1
                    continue
                if check_mode:
                    # one round of every remaining stage, so the table shows where each stands
                    for later in plan.stages[index + 1:]:
                        if later != "cache_expiry":
                            latest[later] = self.round(later, pool)
                    return finish(False, stage)
                now = self.clock()
                if now >= deadline:
                    finish(False, stage)
                    raise PropagationTimeout(timeout_message(plan.expectation, stage, now - start, observations,
                                                             self.expected_values), result)
                wake = min(self.next_round_at(round_started, observations), deadline)
                self.sleep(max(MIN_SLEEP_S if wake < deadline else 0.0, wake - now))
        return finish(True, None)

    def set_cache_deadline(self, result: WaitResult, agreed_at: float | None) -> None:
        if agreed_at is None:
            return
        # A rerun after the change went live (changed_at, recorded by the run that made it) counts from then:
        # caches took the new answer since. Not when this run still saw the old answer at the authoritative
        # servers: the change went live later than recorded, so the recorded time proves nothing.
        counted_from = agreed_at
        result.cache_expiry_counted_from = "agreement"
        if self.plan.changed_at is not None and not self.old_ttls and self.plan.changed_at < agreed_at:
            counted_from = self.plan.changed_at
            result.cache_expiry_counted_from = "changed_at"
        if self.old_ttls:
            result.max_old_ttl = max(self.old_ttls)
            result.max_old_ttl_source = "observed"
        else:
            # the old answer was gone before the first round; the TTL the servers give now is the
            # best evidence of what they gave before (TTLs are lowered ahead, then kept for the flip)
            result.max_old_ttl = max(self.agreed_ttls) if self.agreed_ttls else 0
            result.max_old_ttl_source = "assumed from the new answer (the old answer was not seen)"
        result.cache_clear_at = counted_from + result.max_old_ttl


def wait_for_propagation(plan: WaitPlan, check_mode: bool = False, transport: DnsTransport | None = None,
                         clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> WaitResult:
    """Wait until every stage of the plan passes; raises :class:`PropagationTimeout` after ``timeout``."""
    return Waiter(plan, transport, clock, sleep).run(check_mode)
