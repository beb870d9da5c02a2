# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Route53 planning: read -> normalise -> diff -> batch. Plain Python, no Ansible, no boto3.

The values compared are immutable :class:`RecordSet` objects in one canonical form (lower-case
names with a trailing dot, ``*`` instead of ``\\052``, TXT split and quoted as Route53 stores it,
values sorted), so a record read back from Route53 equals the record that was written.
``plan_record_changes`` turns desired and actual record sets into a list of :class:`Change`
values; ``order_changes`` keeps same-zone aliases after their targets; ``batches_within_limits``
cuts the list into as few ChangeResourceRecordSets requests as Route53's limits allow. Nothing
here writes: ``route53_api.apply_*`` is the only writer.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

# Route53 limits for one ChangeResourceRecordSets request (DNSLimitations.html#limits-api-requests):
# 1,000 ResourceRecord elements and 32,000 characters in Value elements, UPSERT counting twice.
MAX_RECORDS_PER_REQUEST = 1000
MAX_CHARACTERS_PER_REQUEST = 32000
PAGE_SIZE = 300
TXT_STRING_LIMIT = 255

ROUTING_FIELDS = ("Weight", "Region", "Failover", "GeoLocation", "GeoProximityLocation",
                  "MultiValueAnswer", "CidrRoutingConfig")
DOMAIN_VALUE_TYPES = ("CNAME", "NS", "PTR", "DNAME")
ON_CONFLICT_CHOICES = ("keep", "overwrite", "fail")
HEALTH_CHECK_CHOICES = ("recreate", "drop", "fail")
# A record set points at a health check that does not exist in the target yet: the id is
# written as this prefix + the source id and resolved by apply after the check is created.
PENDING_HEALTH_CHECK_PREFIX = "pending-source-health-check:"


class Route53PlanError(Exception):
    """A problem found before anything is written; the message says what to change."""

    def __init__(self, message: str, side: str | None = None, option: str | None = None,
                 records: Sequence[str] = ()):
        self.side = side
        self.option = option
        self.records = list(records)
        super().__init__(message)

    def details(self) -> dict[str, Any]:
        return {"side": self.side, "option": self.option, "records": self.records}


# ---------------------------------------------------------------- normalisation

_OCTAL_ESCAPE = re.compile(r"\\(\d{3})")


def normalise_name(name: str) -> str:
    """Lower-case, trailing dot, Route53's ``\\052`` (and other octal escapes) decoded."""
    text = _OCTAL_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), str(name).strip())
    text = text.lower()
    if not text.endswith("."):
        text += "."
    return text


def name_in_zone(name: str, zone_name: str) -> bool:
    name, zone_name = normalise_name(name), normalise_name(zone_name)
    return name == zone_name or name.endswith("." + zone_name)


def txt_strings(value: str) -> list[str]:
    """The character-strings of one TXT value, unquoted (``"a" "b"`` -> ``["a", "b"]``)."""
    value = str(value).strip()
    if not value.startswith('"'):
        return [value]
    strings: list[str] = []
    current: list[str] = []
    inside = False
    index = 0
    while index < len(value):
        char = value[index]
        if inside:
            if char == "\\" and index + 1 < len(value):
                following = value[index + 1]
                if following.isdigit() and value[index + 1:index + 4].isdigit():
                    current.append(chr(int(value[index + 1:index + 4])))
                    index += 4
                    continue
                current.append(following)
                index += 2
                continue
            if char == '"':
                strings.append("".join(current))
                current = []
                inside = False
            else:
                current.append(char)
        elif char == '"':
            inside = True
        index += 1
    if inside:
        strings.append("".join(current))
    return strings


def normalise_txt(value: str) -> str:
    """A TXT value the way Route53 stores it: quoted strings of at most 255 characters."""
    chunks: list[str] = []
    for string in txt_strings(value):
        pieces = [string[start:start + TXT_STRING_LIMIT] for start in range(0, len(string), TXT_STRING_LIMIT)] or [""]
        chunks.extend(pieces)
    return " ".join('"' + chunk.replace("\\", "\\\\").replace('"', '\\"') + '"' for chunk in chunks)


def _domain(value: str) -> str:
    return normalise_name(value) if value not in ("", ".") else "."


def normalise_value(record_type: str, value: str) -> str:
    """One ResourceRecord value in canonical form for its type."""
    text = " ".join(str(value).split()) if record_type not in ("TXT", "SPF") else str(value)
    if record_type in ("TXT", "SPF"):
        return normalise_txt(text)
    if record_type == "AAAA":
        try:
            return ipaddress.IPv6Address(text).compressed
        except ValueError:
            return text.lower()
    if record_type in DOMAIN_VALUE_TYPES:
        return _domain(text)
    parts = text.split(" ")
    if record_type == "MX" and len(parts) == 2:
        return f"{int(parts[0])} {_domain(parts[1])}"
    if record_type == "SRV" and len(parts) == 4:
        return f"{int(parts[0])} {int(parts[1])} {int(parts[2])} {_domain(parts[3])}"
    if record_type == "CAA" and len(parts) >= 3:
        tag_value = " ".join(parts[2:])
        if not tag_value.startswith('"'):
            tag_value = f'"{tag_value}"'
        return f"{int(parts[0])} {parts[1].lower()} {tag_value}"
    return text


def _canonical_routing_value(name: str, value: Any) -> Any:
    if name == "Weight":
        return int(value)
    if name == "MultiValueAnswer":
        return bool(value)
    if name == "GeoProximityLocation" and isinstance(value, Mapping):
        result = dict(value)
        if "Bias" in result:
            result["Bias"] = int(result["Bias"])
        if isinstance(result.get("Coordinates"), Mapping):
            result["Coordinates"] = {key: str(item) for key, item in result["Coordinates"].items()}
        return result
    return value


# ---------------------------------------------------------------- values


@dataclass(frozen=True, order=True)
class Alias:
    dns_name: str
    hosted_zone_id: str
    evaluate_target_health: bool = False

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Alias:
        return cls(dns_name=normalise_name(data["DNSName"]), hosted_zone_id=bare_zone_id(data["HostedZoneId"]),
                   evaluate_target_health=bool(data.get("EvaluateTargetHealth", False)))

    def to_api(self) -> dict[str, Any]:
        return {"DNSName": self.dns_name, "HostedZoneId": self.hosted_zone_id,
                "EvaluateTargetHealth": self.evaluate_target_health}


def bare_zone_id(hosted_zone_id: str) -> str:
    return str(hosted_zone_id).rsplit("/", 1)[-1]


@dataclass(frozen=True)
class RecordSet:
    """One Route53 resource record set in canonical form; equality means "same in Route53"."""

    name: str
    type: str
    set_identifier: str | None = None
    ttl: int | None = None
    values: tuple[str, ...] = ()
    alias: Alias | None = None
    routing: tuple[tuple[str, str], ...] = ()
    health_check_id: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.name, self.type, self.set_identifier or "")

    @property
    def label(self) -> str:
        return record_label(self.key)

    def routing_dict(self) -> dict[str, Any]:
        return {name: json.loads(value) for name, value in self.routing}

    @classmethod
    def build(cls, name: str, record_type: str, *, set_identifier: str | None = None, ttl: int | None = None,
              values: Iterable[str] = (), alias: Alias | None = None, routing: Mapping[str, Any] | None = None,
              health_check_id: str | None = None) -> RecordSet:
        record_type = str(record_type).upper()
        canonical_values = tuple(sorted({normalise_value(record_type, value) for value in values}))
        routing_pairs = tuple(sorted(
            (field_name, json.dumps(_canonical_routing_value(field_name, value), sort_keys=True))
            for field_name, value in (routing or {}).items()
            if field_name in ROUTING_FIELDS and value is not None
            and not (field_name == "MultiValueAnswer" and value is False and not set_identifier)
        ))
        return cls(name=normalise_name(name), type=record_type, set_identifier=set_identifier or None,
                   ttl=None if alias else (int(ttl) if ttl is not None else None), values=() if alias else canonical_values,
                   alias=alias, routing=routing_pairs, health_check_id=health_check_id or None)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> RecordSet:
        alias = Alias.from_api(data["AliasTarget"]) if data.get("AliasTarget") else None
        # moto answers TTL 0 for aliases; Route53 has no TTL on them at all.
        return cls.build(
            data["Name"], data["Type"], set_identifier=data.get("SetIdentifier"),
            ttl=None if alias else data.get("TTL"),
            values=[item["Value"] for item in data.get("ResourceRecords") or []],
            alias=alias, routing={name: data.get(name) for name in ROUTING_FIELDS},
            health_check_id=data.get("HealthCheckId"),
        )

    def to_api(self) -> dict[str, Any]:
        """The ResourceRecordSet element for ChangeResourceRecordSets (never a TTL on an alias)."""
        data: dict[str, Any] = {"Name": self.name, "Type": self.type}
        if self.set_identifier:
            data["SetIdentifier"] = self.set_identifier
        data.update(self.routing_dict())
        if self.alias:
            data["AliasTarget"] = self.alias.to_api()
        else:
            data["TTL"] = int(self.ttl if self.ttl is not None else 300)
            data["ResourceRecords"] = [{"Value": value} for value in self.values]
        if self.health_check_id:
            data["HealthCheckId"] = self.health_check_id
        return data

    def render(self) -> str:
        """One zone-file-like line per value, for diff output and messages."""
        head = f"{self.name} {self.type}"
        extras = []
        if self.set_identifier:
            extras.append(f"set_identifier={self.set_identifier}")
        extras.extend(f"{name}={value}" for name, value in self.routing)
        if self.health_check_id:
            extras.append(f"health_check={self.health_check_id}")
        suffix = f" ; {' '.join(extras)}" if extras else ""
        if self.alias:
            return (f"{head} ALIAS {self.alias.dns_name} zone={self.alias.hosted_zone_id} "
                    f"evaluate_target_health={str(self.alias.evaluate_target_health).lower()}{suffix}")
        return "\n".join(f"{self.name} {self.ttl} {self.type} {value}{suffix}" for value in self.values)

    def element_count(self) -> int:
        # An alias has no ResourceRecord element; counting it as one keeps batches safe if
        # Route53 ever counts it, and costs at most one extra call per thousand aliases.
        return len(self.values) if not self.alias else 1

    def character_count(self) -> int:
        if self.alias:
            return len(self.alias.dns_name)
        return sum(len(value) for value in self.values)


def record_label(key: tuple[str, str, str]) -> str:
    name, record_type, set_identifier = key
    return f"{name} {record_type}" + (f" {set_identifier}" if set_identifier else "")


def dedupe_record_sets(pages: Iterable[Iterable[Mapping[str, Any]]]) -> list[RecordSet]:
    """Record sets from ListResourceRecordSets pages, each key once.

    moto ignores StartRecordIdentifier, so a page that splits a group of record sets with set
    identifiers repeats the group on the next page; Route53 never repeats, so keeping the first
    copy is right for both.
    """
    seen: dict[tuple[str, str, str], RecordSet] = {}
    for page in pages:
        for data in page:
            record = RecordSet.from_api(data)
            seen.setdefault(record.key, record)
    return list(seen.values())


# ---------------------------------------------------------------- plan values


@dataclass(frozen=True)
class Change:
    action: str  # CREATE | UPSERT | DELETE
    record: RecordSet
    before: RecordSet | None = None
    reason: str = ""

    def to_api(self) -> dict[str, Any]:
        return {"Action": self.action, "ResourceRecordSet": self.record.to_api()}

    def element_count(self) -> int:
        return self.record.element_count() * (2 if self.action == "UPSERT" else 1)

    def character_count(self) -> int:
        return self.record.character_count() * (2 if self.action == "UPSERT" else 1)

    def describe(self) -> dict[str, Any]:
        result: dict[str, Any] = {"action": self.action, "name": self.record.name, "type": self.record.type}
        if self.record.set_identifier:
            result["set_identifier"] = self.record.set_identifier
        result.update(describe_routing(self.record))
        if self.record.alias:
            result["alias"] = {"dns_name": self.record.alias.dns_name, "hosted_zone_id": self.record.alias.hosted_zone_id,
                               "evaluate_target_health": self.record.alias.evaluate_target_health}
        else:
            result["ttl"] = self.record.ttl
            result["values"] = list(self.record.values)
        if self.reason:
            result["reason"] = self.reason
        return result


def describe_routing(record: RecordSet) -> dict[str, Any]:
    """The routing fields of a record set in the snake_case of route53_records' options (weight, region, ...)."""
    names = {"Weight": "weight", "Region": "region", "Failover": "failover", "GeoLocation": "geolocation",
             "GeoProximityLocation": "geoproximity_location", "MultiValueAnswer": "multi_value_answer",
             "CidrRoutingConfig": "cidr_routing_config"}
    return {names[name]: value for name, value in record.routing_dict().items()}


def describe_record_set(record: RecordSet) -> dict[str, Any]:
    """One record set as route53_records returns it (the shape of its ``records`` option)."""
    result: dict[str, Any] = {"name": record.name, "type": record.type}
    if record.set_identifier:
        result["set_identifier"] = record.set_identifier
    result.update(describe_routing(record))
    if record.alias:
        result["alias"] = {"dns_name": record.alias.dns_name, "hosted_zone_id": record.alias.hosted_zone_id,
                           "evaluate_target_health": record.alias.evaluate_target_health}
    else:
        result["ttl"] = record.ttl
        result["values"] = list(record.values)
    if record.health_check_id:
        result["health_check_id"] = record.health_check_id
    return result


@dataclass(frozen=True)
class HealthCheckCopy:
    """A health check of the source account to make (or found) in the target account."""

    source_id: str
    caller_reference: str
    config: tuple[tuple[str, str], ...]
    target_id: str | None = None

    def config_dict(self) -> dict[str, Any]:
        return {name: json.loads(value) for name, value in self.config}


@dataclass(frozen=True)
class RecordPlan:
    """Everything a run would do to one zone, before any write."""

    changes: tuple[Change, ...]
    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    capped_ttl: tuple[str, ...] = ()
    health_checks: tuple[HealthCheckCopy, ...] = ()
    warnings: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def has_changes(self) -> bool:
        return bool(self.changes) or any(check.target_id is None for check in self.health_checks)

    def summary(self) -> dict[str, list[str]]:
        return {"created": list(self.created), "updated": list(self.updated), "deleted": list(self.deleted),
                "unchanged": list(self.unchanged), "capped_ttl": list(self.capped_ttl),
                "conflicts": list(self.conflicts), "skipped": list(self.skipped)}

    def diff(self) -> dict[str, str]:
        before = [change.before.render() for change in self.changes if change.before]
        after = [change.record.render() for change in self.changes if change.action != "DELETE"]
        return {"before": "\n".join(sorted(before)) + ("\n" if before else ""),
                "after": "\n".join(sorted(after)) + ("\n" if after else "")}


# ---------------------------------------------------------------- zone clone planning


@dataclass(frozen=True)
class CloneOptions:
    include_types: tuple[str, ...] = ()
    exclude_types: tuple[str, ...] = ()
    exclude_names: tuple[str, ...] = ()
    max_ttl: int | None = None
    on_conflict: str = "keep"
    purge: bool = False
    health_checks: str = "recreate"

    def __post_init__(self) -> None:
        if self.on_conflict not in ON_CONFLICT_CHOICES:
            raise Route53PlanError(f"on_conflict must be one of {', '.join(ON_CONFLICT_CHOICES)}, not {self.on_conflict!r}",
                                   option="on_conflict")
        if self.health_checks not in HEALTH_CHECK_CHOICES:
            raise Route53PlanError(f"health_checks must be one of {', '.join(HEALTH_CHECK_CHOICES)}, "
                                   f"not {self.health_checks!r}", option="health_checks")
        if self.max_ttl is not None and int(self.max_ttl) < 0:
            raise Route53PlanError(f"max_ttl must be 0 or more, not {self.max_ttl}", option="max_ttl")


def is_apex_ns_or_soa(record: RecordSet, zone_name: str) -> bool:
    return record.type in ("NS", "SOA") and record.name == normalise_name(zone_name) and not record.set_identifier


def selected(record: RecordSet, options: CloneOptions) -> str | None:
    """Why a source record set is left out, or None when it is copied."""
    if options.include_types and record.type not in {item.upper() for item in options.include_types}:
        return "type not in include_types"
    if record.type in {item.upper() for item in options.exclude_types}:
        return "type in exclude_types"
    bare = record.name.rstrip(".")
    for pattern in options.exclude_names:
        pattern_name = normalise_name(pattern) if pattern not in ("*",) else "*"
        if fnmatch.fnmatchcase(record.name, pattern_name) or fnmatch.fnmatchcase(bare, pattern.lower().rstrip(".")):
            return f"name matches exclude_names {pattern!r}"
    return None


def desired_target_records(source_records: Sequence[RecordSet], *, source_zone_name: str, source_zone_id: str,
                           target_zone_name: str, target_zone_id: str | None, options: CloneOptions,
                           health_check_ids: Mapping[str, str | None]) -> tuple[list[RecordSet], list[str], list[str], list[str]]:
    """Source record sets as they must be in the target: (records, skipped, capped_ttl, warnings).

    ``health_check_ids`` maps a source health check id to its target id (None = not made yet).
    Raises :class:`Route53PlanError` for anything the target cannot accept.
    """
    source_zone_name = normalise_name(source_zone_name)
    target_zone_name = normalise_name(target_zone_name)
    source_zone_id = bare_zone_id(source_zone_id)
    target_zone_ref = bare_zone_id(target_zone_id) if target_zone_id else "pending-target-zone"
    records: list[RecordSet] = []
    skipped: list[str] = []
    capped: list[str] = []
    warnings: list[str] = []
    misfits: list[str] = []
    unacceptable: list[str] = []
    dropped_checks: list[str] = []
    for record in sorted(source_records, key=lambda item: item.key):
        if is_apex_ns_or_soa(record, source_zone_name):
            continue
        reason = selected(record, options)
        if reason:
            skipped.append(record.label)
            continue
        if not name_in_zone(record.name, target_zone_name):
            misfits.append(record.label)
            continue
        if record.name == target_zone_name and record.type in ("NS", "SOA") and not record.set_identifier:
            misfits.append(record.label)
            continue
        changes: dict[str, Any] = {}
        if record.alias and record.alias.hosted_zone_id == source_zone_id:
            changes["alias"] = replace(record.alias, hosted_zone_id=target_zone_ref)
        if not record.alias and options.max_ttl is not None and record.ttl is not None and record.ttl > int(options.max_ttl):
            changes["ttl"] = int(options.max_ttl)
            capped.append(f"{record.label} ({record.ttl} -> {int(options.max_ttl)})")
        if record.health_check_id:
            if options.health_checks == "fail":
                unacceptable.append(f"{record.label} uses health check {record.health_check_id}, which belongs to the "
                                    "source account")
                continue
            if options.health_checks == "drop":
                changes["health_check_id"] = None
                dropped_checks.append(record.label)
            else:
                target_check = health_check_ids.get(record.health_check_id)
                changes["health_check_id"] = target_check or f"{PENDING_HEALTH_CHECK_PREFIX}{record.health_check_id}"
        records.append(replace(record, **changes) if changes else record)
    if misfits:
        raise Route53PlanError(
            f"target zone {target_zone_name} differs from the source zone {source_zone_name} and {len(misfits)} record "
            f"set(s) would not fit in it (first: {', '.join(misfits[:5])}); set target.zone to {source_zone_name} "
            "(the default) or exclude those names with exclude_names", side="target", option="zone", records=misfits)
    if unacceptable:
        raise Route53PlanError(
            f"{len(unacceptable)} record set(s) cannot be accepted by the target account: {'; '.join(unacceptable[:5])}; "
            "set health_checks to recreate (make equivalent checks in the target) or drop", side="source",
            option="health_checks", records=unacceptable)
    names = {record.name for record in records}
    dangling = [f"{record.label} -> {record.alias.dns_name}" for record in records
                if record.alias and record.alias.hosted_zone_id == target_zone_ref and record.alias.dns_name not in names]
    if dangling:
        raise Route53PlanError(
            f"{len(dangling)} alias record set(s) point at names in the zone that are not copied, and Route53 rejects an "
            f"alias to a missing record ({'; '.join(dangling[:5])}); include their targets or add the aliases to "
            "exclude_names", side="source", option="exclude_names", records=dangling)
    if dropped_checks:
        warnings.append(f"health checks dropped from {len(dropped_checks)} record set(s) (health_checks=drop): "
                        f"{', '.join(dropped_checks[:10])}")
    return records, skipped, capped, warnings


def plan_record_changes(desired: Sequence[RecordSet], actual: Sequence[RecordSet], *, zone_name: str,
                        on_conflict: str = "keep", purge: bool = False,
                        managed: Any = None) -> RecordPlan:
    """Changes that make ``actual`` hold ``desired`` (record sets of one zone).

    ``on_conflict`` decides a set present on both sides with different data; ``purge`` deletes
    actual sets the desired side lacks (never the apex NS/SOA; ``managed(record)`` narrows which
    actual sets purge may touch).
    """
    actual_by_key = {record.key: record for record in actual}
    desired_by_key = {record.key: record for record in desired}
    changes: list[Change] = []
    created: list[str] = []
    updated: list[str] = []
    unchanged: list[str] = []
    conflicts: list[str] = []
    deleted: list[str] = []
    routing_by_name: dict[tuple[str, str], list[RecordSet]] = {}
    for record in actual:
        routing_by_name.setdefault((record.name, record.type), []).append(record)
    replaced: set[tuple[str, str, str]] = set()
    for key in sorted(desired_by_key):
        record = desired_by_key[key]
        current = actual_by_key.get(key)
        # Route53 refuses a simple set beside weighted/latency/... sets of the same name and type, so
        # a target that switched routing policy (e.g. a weighted cutover shift under way) holds this
        # name with different data: a conflict, not a missing set.
        other_policy = [other for other in routing_by_name.get((record.name, record.type), [])
                        if (other.set_identifier is None) != (record.set_identifier is None)]
        if current is None and other_policy:
            if on_conflict == "overwrite":
                for other in other_policy:
                    if other.key not in replaced:
                        replaced.add(other.key)
                        changes.append(Change("DELETE", other, other, "other routing policy than the source"))
                        deleted.append(other.label)
                changes.append(Change("CREATE", record, None, "differs from source"))
                updated.append(record.label)
            else:
                conflicts.append(record.label)
        elif current is None:
            changes.append(Change("CREATE", record, None, "missing in target"))
            created.append(record.label)
        elif current == record:
            unchanged.append(record.label)
        elif on_conflict == "overwrite":
            changes.append(Change("UPSERT", record, current, "differs from source"))
            updated.append(record.label)
        else:
            conflicts.append(record.label)
    if conflicts and on_conflict == "fail":
        raise Route53PlanError(
            f"{len(conflicts)} record set(s) already exist in the target with different data "
            f"({', '.join(conflicts[:5])}); set on_conflict to keep (leave them, e.g. after the cutover flip) or "
            "overwrite (put the source data back)", side="target", option="on_conflict", records=conflicts)
    if purge:
        for key in sorted(actual_by_key):
            record = actual_by_key[key]
            if key in desired_by_key or key in replaced or is_apex_ns_or_soa(record, zone_name):
                continue
            if managed is not None and not managed(record):
                continue
            changes.append(Change("DELETE", record, record, "not in source (purge)"))
            deleted.append(record.label)
    # Conflicts under "keep" are what a rerun after the cutover flip finds: not errors.
    return RecordPlan(changes=tuple(order_changes(changes)), created=tuple(created), updated=tuple(updated),
                      deleted=tuple(deleted), unchanged=tuple(unchanged), conflicts=tuple(conflicts))


def _alias_depths(records: Iterable[RecordSet]) -> dict[tuple[str, str, str], int]:
    """How many same-zone alias hops each record set is from a plain record (0 = not an alias)."""
    by_name: dict[str, list[RecordSet]] = {}
    records = list(records)
    for record in records:
        by_name.setdefault(record.name, []).append(record)
    zone_ids = _same_zone_ids(records)
    depths: dict[tuple[str, str, str], int] = {}

    def depth(record: RecordSet, visiting: frozenset) -> int:
        if record.key in depths:
            return depths[record.key]
        if not record.alias or record.alias.hosted_zone_id not in zone_ids or record.key in visiting:
            value = 0
        else:
            targets = by_name.get(record.alias.dns_name, [])
            value = 1 + max((depth(target, visiting | {record.key}) for target in targets), default=0)
        depths[record.key] = value
        return value

    for record in records:
        depth(record, frozenset())
    return depths


def _same_zone_ids(records: Sequence[RecordSet]) -> set[str]:
    # An alias whose target name is a record set of the same list is a same-zone alias; the
    # zone id it carries is then this zone's (whatever the id's spelling).
    names = {record.name for record in records}
    return {record.alias.hosted_zone_id for record in records if record.alias and record.alias.dns_name in names}


def order_changes(changes: Sequence[Change]) -> list[Change]:
    """Deletes first (aliases before what they point at), then writes (targets before aliases).

    Route53 rejects an alias to a record set of the same zone that does not exist yet, and a
    delete of a set an alias still points at; a later batch sees the earlier ones applied.
    """
    depths = _alias_depths(change.record for change in changes)
    deletes = [change for change in changes if change.action == "DELETE"]
    writes = [change for change in changes if change.action != "DELETE"]
    deletes.sort(key=lambda change: (-depths.get(change.record.key, 0), change.record.key))
    writes.sort(key=lambda change: (depths.get(change.record.key, 0), change.record.key))
    return deletes + writes


def batches_within_limits(changes: Sequence[Change], max_records: int = MAX_RECORDS_PER_REQUEST,
                          max_chars: int = MAX_CHARACTERS_PER_REQUEST) -> list[list[Change]]:
    """Consecutive runs of ``changes``, each within one request's limits, order kept."""
    batches: list[list[Change]] = []
    current: list[Change] = []
    records = characters = 0
    for change in changes:
        change_records, change_chars = change.element_count(), change.character_count()
        if change_records > max_records or change_chars > max_chars:
            raise Route53PlanError(
                f"{change.record.label} alone has {change_records} ResourceRecord elements and {change_chars} characters "
                f"({change.action}), over Route53's limit of {max_records} and {max_chars} per request; split it into "
                "fewer values", option="records", records=[change.record.label])
        if current and (records + change_records > max_records or characters + change_chars > max_chars):
            batches.append(current)
            current, records, characters = [], 0, 0
        current.append(change)
        records += change_records
        characters += change_chars
    if current:
        batches.append(current)
    return batches


def health_check_caller_reference(source_account: str, source_id: str) -> str:
    """Idempotency token of a copied health check (CallerReference: at most 64 characters)."""
    return f"cutover-{source_account}-{source_id}"[:64]


def health_check_copy_config(config: Mapping[str, Any], child_map: Mapping[str, str | None]) -> dict[str, Any]:
    """A source health check's HealthCheckConfig as CreateHealthCheck accepts it in the target."""
    allowed = ("IPAddress", "Port", "Type", "ResourcePath", "FullyQualifiedDomainName", "SearchString",
               "RequestInterval", "FailureThreshold", "MeasureLatency", "Inverted", "Disabled", "HealthThreshold",
               "ChildHealthChecks", "EnableSNI", "Regions", "AlarmIdentifier", "InsufficientDataHealthStatus",
               "RoutingControlArn")
    result = {name: config[name] for name in allowed if config.get(name) not in (None, [], "")}
    if result.get("ChildHealthChecks"):
        result["ChildHealthChecks"] = [child_map.get(child) or child for child in result["ChildHealthChecks"]]
    return result


# ---------------------------------------------------------------- declarative records (route53_records)


def record_from_option(item: Mapping[str, Any], zone_name: str, zone_id: str) -> RecordSet:
    """One entry of route53_records' ``records`` option as a :class:`RecordSet` of the zone."""
    raw_name = str(item.get("name") or "@")
    zone_name = normalise_name(zone_name)
    if raw_name in ("@", ""):
        name = zone_name
    else:
        name = normalise_name(raw_name)
        if not name_in_zone(name, zone_name):
            name = normalise_name(raw_name.rstrip(".") + "." + zone_name)
    label = f"records[{name} {item.get('type')}]"
    record_type = str(item.get("type") or "").upper()
    if not record_type:
        raise Route53PlanError(f"{label}: type is required", option="records")
    alias = None
    if item.get("alias"):
        alias_option = item["alias"]
        if not alias_option.get("dns_name"):
            raise Route53PlanError(f"{label}: alias.dns_name is required", option="records")
        alias = Alias(dns_name=normalise_name(alias_option["dns_name"]),
                      hosted_zone_id=bare_zone_id(alias_option.get("hosted_zone_id") or zone_id),
                      evaluate_target_health=bool(alias_option.get("evaluate_target_health")))
    values = list(item.get("values") or [])
    routing: dict[str, Any] = {}
    if item.get("weight") is not None:
        routing["Weight"] = item["weight"]
    if item.get("region"):
        routing["Region"] = item["region"]
    if item.get("failover"):
        routing["Failover"] = str(item["failover"]).upper()
    if item.get("geolocation"):
        routing["GeoLocation"] = {_camel(key): value for key, value in item["geolocation"].items() if value is not None}
    if item.get("geoproximity_location"):
        geo = item["geoproximity_location"]
        location: dict[str, Any] = {_camel(key): value for key, value in geo.items()
                                    if value is not None and key != "coordinates"}
        if geo.get("coordinates"):
            location["Coordinates"] = {key.capitalize(): str(value) for key, value in geo["coordinates"].items()}
        routing["GeoProximityLocation"] = location
    if item.get("multi_value_answer") is not None and (item.get("multi_value_answer") or item.get("set_identifier")):
        routing["MultiValueAnswer"] = bool(item["multi_value_answer"])
    if item.get("cidr_routing_config"):
        routing["CidrRoutingConfig"] = {_camel(key): value for key, value in item["cidr_routing_config"].items()}
    if routing and not item.get("set_identifier"):
        raise Route53PlanError(f"{label}: routing fields ({', '.join(sorted(routing))}) need set_identifier",
                               option="records")
    return RecordSet.build(name, record_type, set_identifier=item.get("set_identifier"), ttl=item.get("ttl"),
                           values=values, alias=alias, routing=routing, health_check_id=item.get("health_check_id"))


_CAMEL_EXCEPTIONS = {"aws_region": "AWSRegion", "collection_id": "CollectionId", "location_name": "LocationName"}


def _camel(key: str) -> str:
    return _CAMEL_EXCEPTIONS.get(key) or "".join(part.capitalize() for part in key.split("_"))


def plan_declared_records(declared: Sequence[Mapping[str, Any]], actual: Sequence[RecordSet], *, zone_name: str,
                          zone_id: str, state: str = "present", ttl_only: bool = False,
                          exclusive: bool = False) -> RecordPlan:
    """route53_records: the one change batch that makes the declared record sets true.

    Route53 keeps a simple record set and record sets with a set identifier (weighted, failover,
    ...) of one name and type apart: it rejects a batch that would leave both. ``exclusive``
    deletes every other set of a declared name and type in the same batch, so a simple record
    turns into weighted ones (or back) in one atomic request; without it such a declaration fails
    here, before any write.
    """
    actual_by_key = {record.key: record for record in actual}
    changes: list[Change] = []
    created: list[str] = []
    updated: list[str] = []
    deleted: list[str] = []
    unchanged: list[str] = []
    missing: list[str] = []
    seen: set[tuple[str, str, str]] = set()
    for item in declared:
        if state == "absent" or ttl_only:
            record = _key_only(item, zone_name, zone_id)
        else:
            record = record_from_option(item, zone_name, zone_id)
            if not record.alias and not record.values:
                raise Route53PlanError(f"records[{record.label}]: give values or alias for state=present",
                                       option="records", records=[record.label])
            if not record.alias and record.ttl is None:
                record = replace(record, ttl=300)
        if record.key in seen:
            raise Route53PlanError(f"records: {record.label} is listed twice; keep one entry per name/type/set_identifier",
                                   option="records", records=[record.label])
        seen.add(record.key)
        if is_apex_ns_or_soa(record, zone_name) and state == "absent":
            raise Route53PlanError(f"records: {record.label} is the zone's apex {record.type} and cannot be deleted",
                                   option="records", records=[record.label])
        current = actual_by_key.get(record.key)
        if state == "absent":
            if current is None:
                unchanged.append(record.label)
            else:
                changes.append(Change("DELETE", current, current, "state=absent"))
                deleted.append(record.label)
            continue
        if ttl_only:
            if current is None:
                missing.append(record.label)
                continue
            if current.alias:
                raise Route53PlanError(f"records: {record.label} is an alias and has no TTL; remove it from ttl_only",
                                       option="ttl_only", records=[record.label])
            ttl = item.get("ttl")
            if ttl is None:
                raise Route53PlanError(f"records[{record.label}]: ttl is required with ttl_only", option="records",
                                       records=[record.label])
            wanted = replace(current, ttl=int(ttl))
        else:
            wanted = record
        if current is None:
            changes.append(Change("CREATE", wanted, None, "missing"))
            created.append(record.label)
        elif current == wanted:
            unchanged.append(record.label)
        else:
            changes.append(Change("UPSERT", wanted, current, "ttl" if ttl_only else "differs"))
            updated.append(record.label)
    if missing:
        raise Route53PlanError(f"ttl_only changes existing record sets only, and {len(missing)} do not exist in zone "
                               f"{zone_name}: {', '.join(missing[:5])}; create them first (ttl_only: false)",
                               option="ttl_only", records=missing)
    if state == "present" and not ttl_only:
        declared_names_types = {(key[0], key[1]) for key in seen}
        others = [record for key, record in sorted(actual_by_key.items())
                  if (key[0], key[1]) in declared_names_types and key not in seen]
        if exclusive:
            for record in others:
                changes.append(Change("DELETE", record, record, "not declared (exclusive)"))
                deleted.append(record.label)
        else:
            _refuse_mixed_routing(seen, others)
    return RecordPlan(changes=tuple(order_changes(changes)), created=tuple(created), updated=tuple(updated),
                      deleted=tuple(deleted), unchanged=tuple(unchanged))


def _refuse_mixed_routing(declared: set[tuple[str, str, str]], others: Sequence[RecordSet]) -> None:
    """Fail before writing when the batch would leave a simple set beside sets with identifiers."""
    conflicting = []
    for record in others:
        same_name_type = [key for key in declared if key[:2] == record.key[:2]]
        if any(bool(key[2]) != bool(record.set_identifier) for key in same_name_type):
            conflicting.append(record.label)
    if conflicting:
        raise Route53PlanError(
            f"records: {', '.join(conflicting[:5])} exist(s) with a different routing (a simple record set cannot stand "
            "beside weighted or other record sets with a set_identifier of the same name and type); set exclusive: true "
            "to replace them in the same atomic change batch", option="exclusive", records=conflicting)


def _key_only(item: Mapping[str, Any], zone_name: str, zone_id: str) -> RecordSet:
    bare = {key: item.get(key) for key in ("name", "type", "set_identifier", "ttl")}
    return record_from_option(bare, zone_name, zone_id) if not item.get("set_identifier") else replace(
        record_from_option({**bare, "set_identifier": None}, zone_name, zone_id), set_identifier=item["set_identifier"])
