# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Route53 reads and writes for route53_zone_clone and route53_records (boto3, no Ansible).

Reads build :class:`route53_plan.RecordSet` values; ``apply_changes`` is the only function that
changes record sets. Every call goes through :class:`Route53Calls`, which counts calls
(``api_calls`` in the module results) and retries Throttling and PriorRequestNotComplete.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ansible_collections.cutover.migration.plugins.module_utils.route53_plan import (
    PAGE_SIZE,
    Change,
    CloneOptions,
    HealthCheckCopy,
    RecordPlan,
    RecordSet,
    Route53PlanError,
    bare_zone_id,
    batches_within_limits,
    dedupe_record_sets,
    describe_record_set,
    desired_target_records,
    health_check_caller_reference,
    health_check_copy_config,
    normalise_name,
    plan_declared_records,
    plan_record_changes,
    record_from_option,
)

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:  # pragma: no cover - the module reports missing boto3 before calling here
    class ClientError(Exception):  # type: ignore[no-redef]
        pass

    class BotoCoreError(Exception):  # type: ignore[no-redef]
        pass

RETRIED_CODES = ("Throttling", "ThrottlingException", "PriorRequestNotComplete", "RequestLimitExceeded")
READ_PREFIXES = ("List", "Get")


class Route53ApiError(Exception):
    """An AWS call failed; the message names the call, the side and what to check."""

    def __init__(self, message: str, side: str, aws_error_code: str | None = None, **details: Any):
        self.side = side
        self.aws_error_code = aws_error_code
        self.details = details
        super().__init__(message)


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        return response.get("Error", {}).get("Code")
    return None


class Route53Calls:
    """One side's Route53 client, counting calls into a shared ``{"list": n, "change": n}``."""

    def __init__(self, client: Any, side: str, counts: dict[str, int], max_retries: int = 6,
                 base_delay: float = 0.5, sleep: Callable[[float], None] = time.sleep):
        self.client = client
        self.side = side
        self.counts = counts
        self.max_retries = max_retries
        self.base_delay = base_delay
        self.sleep = sleep

    def __call__(self, operation: str, **request: Any) -> dict:
        api_name = "".join(part.capitalize() for part in operation.split("_"))
        kind = "list" if api_name.startswith(READ_PREFIXES) else "change"
        attempt = 0
        while True:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            try:
                return getattr(self.client, operation)(**request)
            except ClientError as exc:
                code = _error_code(exc)
                if code in RETRIED_CODES and attempt < self.max_retries:
                    # Route53 allows five requests a second per account and answers
                    # PriorRequestNotComplete while an earlier change to the zone is applying.
                    self.sleep(min(20.0, self.base_delay * 2 ** attempt) * (0.5 + random.random() / 2))
                    attempt += 1
                    continue
                raise Route53ApiError(f"{self.side}: {api_name} failed: {code}: "
                                      f"{exc.response.get('Error', {}).get('Message', '')}",  # type: ignore[attr-defined]
                                      side=self.side, aws_error_code=code) from exc
            except BotoCoreError as exc:
                raise Route53ApiError(f"{self.side}: {api_name} failed: {exc}; check {self.side}.endpoint_url and the "
                                      "network", side=self.side) from exc


@dataclass(frozen=True)
class Zone:
    hosted_zone_id: str
    name: str
    private_zone: bool
    record_count: int = 0
    name_servers: tuple[str, ...] = ()
    comment: str | None = None


# ---------------------------------------------------------------- reads


def find_zone(calls: Route53Calls, *, zone: str | None = None, hosted_zone_id: str | None = None,
              private_zone: bool | None = None, required: bool = True) -> Zone | None:
    """The hosted zone named by ``hosted_zone_id`` or by ``zone`` (unique), else None/error."""
    side = calls.side
    if hosted_zone_id:
        try:
            answer = calls("get_hosted_zone", Id=bare_zone_id(hosted_zone_id))
        except Route53ApiError as exc:
            if exc.aws_error_code == "NoSuchHostedZone":
                raise Route53ApiError(f"{side}.hosted_zone_id: no hosted zone {hosted_zone_id} in the {side} account; "
                                      f"check the id, or give {side}.zone instead", side=side,
                                      aws_error_code=exc.aws_error_code) from exc
            raise
        return _zone_from_answer(answer["HostedZone"], answer.get("DelegationSet"))
    if not zone:
        raise Route53ApiError(f"{side}: give zone or hosted_zone_id", side=side)
    wanted = normalise_name(zone)
    matches: list[dict] = []
    request: dict[str, Any] = {"DNSName": wanted, "MaxItems": "100"}
    while True:
        answer = calls("list_hosted_zones_by_name", **request)
        zones = answer.get("HostedZones", [])
        matches.extend(item for item in zones if normalise_name(item["Name"]) == wanted)
        # Route53 answers zones in name order from DNSName on; once past the name, stop.
        past = any(normalise_name(item["Name"]) != wanted for item in zones)
        if past or not answer.get("IsTruncated") or not answer.get("NextDNSName"):
            break
        request = {"DNSName": answer["NextDNSName"], "HostedZoneId": answer["NextHostedZoneId"], "MaxItems": "100"}
    if private_zone is not None:
        matches = [item for item in matches if bool(item.get("Config", {}).get("PrivateZone")) == bool(private_zone)]
    if not matches:
        if required:
            kind = "" if private_zone is None else ("private " if private_zone else "public ")
            raise Route53ApiError(f"{side}.zone: no {kind}hosted zone named {wanted} in the {side} account; check the "
                                  f"name and {side}.role_arn (is it the right account?)", side=side, zone_not_found=wanted)
        return None
    if len(matches) > 1:
        ids = ", ".join(bare_zone_id(item["Id"]) for item in matches)
        raise Route53ApiError(f"{side}.zone: {len(matches)} hosted zones are named {wanted} in the {side} account "
                              f"({ids}); set {side}.hosted_zone_id to the one to use", side=side, hosted_zone_ids=ids)
    # ListHostedZonesByName already carries id, name, privacy and size; the name servers come
    # from the apex NS record when the caller needs them, saving a GetHostedZone per run.
    return _zone_from_answer(matches[0], None)


def _zone_from_answer(hosted_zone: Mapping[str, Any], delegation_set: Mapping[str, Any] | None) -> Zone:
    config = hosted_zone.get("Config") or {}
    return Zone(hosted_zone_id=bare_zone_id(hosted_zone["Id"]), name=normalise_name(hosted_zone["Name"]),
                private_zone=bool(config.get("PrivateZone")), record_count=int(hosted_zone.get("ResourceRecordSetCount") or 0),
                name_servers=tuple((delegation_set or {}).get("NameServers") or ()), comment=config.get("Comment"))


def list_record_sets(calls: Route53Calls, hosted_zone_id: str) -> list[RecordSet]:
    """Every record set of the zone, 300 per page, each (name, type, set identifier) once."""
    pages: list[list[dict]] = []
    request: dict[str, Any] = {"HostedZoneId": hosted_zone_id, "MaxItems": str(PAGE_SIZE)}
    previous_start = None
    while True:
        answer = calls("list_resource_record_sets", **request)
        pages.append(answer.get("ResourceRecordSets", []))
        if not answer.get("IsTruncated"):
            break
        start = (answer.get("NextRecordName"), answer.get("NextRecordType"), answer.get("NextRecordIdentifier"))
        if start == previous_start:
            # moto restarts a page at the name/type without the identifier: a group of more
            # than one page of sets with one name and type would loop forever.
            raise Route53ApiError(f"{calls.side}: ListResourceRecordSets returned the same page twice at {start}; more "
                                  f"than {PAGE_SIZE} record sets share one name and type", side=calls.side)
        previous_start = start
        request = {"HostedZoneId": hosted_zone_id, "MaxItems": str(PAGE_SIZE), "StartRecordName": start[0],
                   "StartRecordType": start[1]}
        if start[2]:
            request["StartRecordIdentifier"] = start[2]
    return dedupe_record_sets(pages)


def list_named_record_sets(calls: Route53Calls, hosted_zone_id: str, names_and_types: Sequence[tuple[str, str]]) -> list[RecordSet]:
    """Only the record sets with these (name, type): one short listing per pair."""
    pages: list[list[dict]] = []
    for name, record_type in sorted(set(names_and_types)):
        request: dict[str, Any] = {"HostedZoneId": hosted_zone_id, "MaxItems": "100", "StartRecordName": name,
                                   "StartRecordType": record_type}
        for _page in range(1000):
            answer = calls("list_resource_record_sets", **request)
            items = answer.get("ResourceRecordSets", [])
            matching = [item for item in items if normalise_name(item["Name"]) == name and item["Type"] == record_type]
            pages.append(matching)
            if not answer.get("IsTruncated") or len(matching) < len(items):
                break
            if answer.get("NextRecordIdentifier") is None:
                break
            request["StartRecordIdentifier"] = answer["NextRecordIdentifier"]
    return dedupe_record_sets(pages)


def list_health_checks(calls: Route53Calls) -> list[dict]:
    checks: list[dict] = []
    request: dict[str, Any] = {"MaxItems": "1000"}
    while True:
        answer = calls("list_health_checks", **request)
        checks.extend(answer.get("HealthChecks", []))
        # moto omits IsTruncated; absent means the last page.
        if not answer.get("IsTruncated") or not answer.get("NextMarker"):
            return checks
        request["Marker"] = answer["NextMarker"]


# ---------------------------------------------------------------- writes


def apply_changes(calls: Route53Calls, hosted_zone_id: str, changes: Sequence[Change], *, comment: str,
                  wait: bool = True, wait_timeout: int = 300) -> int:
    """Send ``changes`` in as few ChangeResourceRecordSets requests as the limits allow, in order."""
    batches = batches_within_limits(changes)
    change_ids = []
    for number, batch in enumerate(batches, start=1):
        answer = calls("change_resource_record_sets", HostedZoneId=hosted_zone_id, ChangeBatch={
            "Comment": f"{comment} ({number}/{len(batches)})"[:256],
            "Changes": [change.to_api() for change in batch]})
        change_ids.append(answer["ChangeInfo"]["Id"])
    if wait and change_ids:
        # Route53 applies a zone's changes in order (hence PriorRequestNotComplete), so the
        # last batch in sync means all are.
        wait_in_sync(calls, change_ids[-1:], wait_timeout)
    return len(batches)


def wait_in_sync(calls: Route53Calls, change_ids: Sequence[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for change_id in change_ids:
        delay = 0.5
        while True:
            answer = calls("get_change", Id=change_id)
            if answer["ChangeInfo"]["Status"] == "INSYNC":
                break
            if time.monotonic() + delay > deadline:
                raise Route53ApiError(f"{calls.side}: change {change_id} was still {answer['ChangeInfo']['Status']} after "
                                      f"wait_timeout={int(timeout)}s; the changes are submitted and will apply — raise "
                                      "wait_timeout or set wait: false", side=calls.side, change_id=change_id)
            time.sleep(delay)
            delay = min(5.0, delay * 2)


def create_zone(calls: Route53Calls, *, name: str, private_zone: bool, vpcs: Sequence[Mapping[str, Any]],
                comment: str | None, delegation_set_id: str | None) -> Zone:
    request: dict[str, Any] = {"Name": name, "CallerReference": f"cutover-{uuid.uuid4()}",
                               "HostedZoneConfig": {"Comment": comment or "cloned by cutover.migration.route53_zone_clone",
                                                    "PrivateZone": private_zone}}
    if private_zone:
        request["VPC"] = {"VPCId": vpcs[0]["id"], "VPCRegion": vpcs[0]["region"]}
    if delegation_set_id:
        request["DelegationSetId"] = delegation_set_id
    answer = calls("create_hosted_zone", **request)
    zone = _zone_from_answer(answer["HostedZone"], answer.get("DelegationSet"))
    for vpc in vpcs[1:] if private_zone else []:
        calls("associate_vpc_with_hosted_zone", HostedZoneId=zone.hosted_zone_id,
              VPC={"VPCId": vpc["id"], "VPCRegion": vpc["region"]})
    return zone


# ---------------------------------------------------------------- route53_zone_clone


def _health_check_plan(source: Route53Calls, target: Route53Calls, records: Sequence[RecordSet],
                       source_account: str) -> tuple[list[HealthCheckCopy], dict[str, str | None]]:
    wanted = sorted({record.health_check_id for record in records if record.health_check_id})
    if not wanted:
        return [], {}
    by_reference = {check.get("CallerReference"): check["Id"] for check in list_health_checks(target)}
    configs: dict[str, dict] = {}
    pending = list(wanted)
    while pending:
        check_id = pending.pop()
        if check_id in configs:
            continue
        try:
            configs[check_id] = calls_get_health_check(source, check_id)
        except Route53ApiError as exc:
            raise Route53ApiError(f"source: record sets use health check {check_id}, which the source account cannot read "
                                  f"({exc}); set health_checks: drop to copy the records without it", side="source",
                                  aws_error_code=exc.aws_error_code) from exc
        pending.extend(configs[check_id].get("ChildHealthChecks") or [])
    mapping: dict[str, str | None] = {}
    copies = []
    # Children first: a CALCULATED check names its children by their target ids.
    for check_id in sorted(configs, key=lambda item: (configs[item].get("Type") == "CALCULATED", item)):
        reference = health_check_caller_reference(source_account, check_id)
        mapping[check_id] = by_reference.get(reference)
        config = health_check_copy_config(configs[check_id], mapping)
        copies.append(HealthCheckCopy(source_id=check_id, caller_reference=reference,
                                      config=tuple(sorted((key, json.dumps(value, sort_keys=True)) for key, value in config.items())),
                                      target_id=mapping[check_id]))
    return copies, mapping


def calls_get_health_check(calls: Route53Calls, check_id: str) -> dict:
    return dict(calls("get_health_check", HealthCheckId=check_id)["HealthCheck"]["HealthCheckConfig"])


def _create_health_checks(target: Route53Calls, copies: Sequence[HealthCheckCopy]) -> dict[str, str]:
    mapping: dict[str, str] = {copy.source_id: copy.target_id for copy in copies if copy.target_id}
    for copy in copies:
        if copy.target_id:
            continue
        config = copy.config_dict()
        if config.get("ChildHealthChecks"):
            config["ChildHealthChecks"] = [mapping.get(child, child) for child in config["ChildHealthChecks"]]
        answer = target("create_health_check", CallerReference=copy.caller_reference, HealthCheckConfig=config)
        mapping[copy.source_id] = answer["HealthCheck"]["Id"]
    return mapping


def clone_zone(source_session: Any, target_session: Any, params: Mapping[str, Any], check_mode: bool = False) -> dict[str, Any]:
    """route53_zone_clone: make the target zone hold the source zone's record sets.

    ``params`` are the module's options (``source``, ``target``, ``include_types``...).
    Returns the module result (without Ansible's own keys). Raises Route53PlanError or
    Route53ApiError before any write when the input cannot work.
    """
    counts = {"list": 0, "change": 0}
    source = Route53Calls(source_session.client("route53"), "source", counts)
    target = Route53Calls(target_session.client("route53"), "target", counts)
    source_options = params.get("source") or {}
    target_options = params.get("target") or {}
    options = CloneOptions(
        include_types=tuple(params.get("include_types") or ()), exclude_types=tuple(params.get("exclude_types") or ()),
        exclude_names=tuple(params.get("exclude_names") or ()), max_ttl=params.get("max_ttl"),
        on_conflict=params.get("on_conflict") or "keep", purge=bool(params.get("purge")),
        health_checks=params.get("health_checks") or "recreate")

    source_zone = find_zone(source, zone=source_options.get("zone"), hosted_zone_id=source_options.get("hosted_zone_id"),
                            private_zone=source_options.get("private_zone"))
    if source_zone is None:  # find_zone raises when required; this keeps type checkers informed
        raise Route53ApiError("source.zone: the source zone was not found", side="source")
    target_name = normalise_name(target_options.get("zone") or source_zone.name)
    target_private = target_options.get("private_zone")
    if target_private is None:
        target_private = source_zone.private_zone if not target_options.get("hosted_zone_id") else None
    vpcs = list(target_options.get("vpcs") or [])
    target_zone = find_zone(target, zone=target_name, hosted_zone_id=target_options.get("hosted_zone_id"),
                            private_zone=target_private, required=bool(target_options.get("hosted_zone_id")))
    if target_zone is None and target_private and not vpcs:
        raise Route53PlanError(f"target.vpcs: the target zone {target_name} is private and does not exist yet; a private "
                               "zone needs at least one VPC — set target.vpcs to [{id: vpc-..., region: ...}] or "
                               "target.private_zone: false", side="target", option="vpcs")
    for index, vpc in enumerate(vpcs):
        if not vpc.get("id") or not vpc.get("region"):
            raise Route53PlanError(f"target.vpcs[{index}]: give both id and region", side="target", option="vpcs")
    if target_zone is not None and target_zone.hosted_zone_id == source_zone.hosted_zone_id:
        raise Route53PlanError("target: the target zone is the source zone itself; set target.role_arn to the new account "
                               "or target.hosted_zone_id to another zone", side="target", option="hosted_zone_id")

    source_records = list_record_sets(source, source_zone.hosted_zone_id)
    target_records = list_record_sets(target, target_zone.hosted_zone_id) if target_zone else []

    copies: list[HealthCheckCopy] = []
    check_map: dict[str, str | None] = {}
    if options.health_checks == "recreate":
        candidates = [record for record in source_records if record.health_check_id]
        if candidates:
            copies, check_map = _health_check_plan(source, target, candidates, source_session.account_id)

    def plan_for(zone_id: str | None, checks: Mapping[str, str | None], actual: Sequence[RecordSet]) -> RecordPlan:
        desired, skipped, capped, warnings = desired_target_records(
            source_records, source_zone_name=source_zone.name, source_zone_id=source_zone.hosted_zone_id,
            target_zone_name=target_name, target_zone_id=zone_id, options=options, health_check_ids=checks)
        plan = plan_record_changes(desired, actual, zone_name=target_name, on_conflict=options.on_conflict,
                                   purge=options.purge)
        return replace(plan, skipped=tuple(skipped), capped_ttl=tuple(capped), warnings=tuple(warnings),
                       health_checks=tuple(copies))

    # Everything is validated (and a conflict under on_conflict=fail raised) before any write.
    plan = plan_for(target_zone.hosted_zone_id if target_zone else None, check_map, target_records)
    created_zone = False
    if not check_mode:
        if target_zone is None:
            target_zone = create_zone(target, name=target_name, private_zone=bool(target_private), vpcs=vpcs,
                                      comment=target_options.get("comment"),
                                      delegation_set_id=target_options.get("delegation_set_id"))
            created_zone = True
            # A new zone holds only its apex NS and SOA, which the plan never touches.
            target_records = []
        if any(copy.target_id is None for copy in copies):
            check_map = dict(_create_health_checks(target, copies))
        if created_zone or check_map != {copy.source_id: copy.target_id for copy in copies}:
            plan = plan_for(target_zone.hosted_zone_id, check_map, target_records)
        if plan.changes:
            apply_changes(target, target_zone.hosted_zone_id, plan.changes,
                          comment=f"cutover.migration.route53_zone_clone from {source_zone.name}",
                          wait=params.get("wait", True), wait_timeout=int(params.get("wait_timeout") or 300))
    name_servers = list(target_zone.name_servers) if target_zone else []
    if target_zone and not name_servers:
        apex_ns = [record for record in target_records if record.type == "NS" and record.name == target_name]
        name_servers = [value.rstrip(".") for value in apex_ns[0].values] if apex_ns else []
    changed = created_zone or bool(plan.changes) or any(copy.target_id is None for copy in copies) or (
        check_mode and target_zone is None)
    result: dict[str, Any] = {
        "changed": changed,
        "target_hosted_zone_id": target_zone.hosted_zone_id if target_zone else None,
        "target_zone_created": created_zone or (check_mode and target_zone is None),
        "source_hosted_zone_id": source_zone.hosted_zone_id,
        "name_servers": name_servers,
        "summary": plan.summary(),
        "api_calls": dict(counts),
        "changes": [change.describe() for change in plan.changes],
        "health_checks_created": [copy.source_id for copy in copies if copy.target_id is None],
        "warnings": list(plan.warnings),
        "diff": plan.diff(),
    }
    return result


# ---------------------------------------------------------------- route53_records


def manage_records(session: Any, params: Mapping[str, Any], check_mode: bool = False) -> dict[str, Any]:
    """route53_records: one atomic change batch that makes the declared record sets true."""
    counts = {"list": 0, "change": 0}
    calls = Route53Calls(session.client("route53"), "account", counts)
    zone = find_zone(calls, zone=params.get("zone"), hosted_zone_id=params.get("hosted_zone_id"),
                     private_zone=params.get("private_zone"))
    if zone is None:
        raise Route53ApiError("zone: the hosted zone was not found", side="account", zone_not_found=params.get("zone"))
    declared = list(params.get("records") or [])
    state = params.get("state") or "present"
    ttl_only = bool(params.get("ttl_only"))
    keys = []
    for item in declared:
        record = record_from_option({key: item.get(key) for key in ("name", "type")}, zone.name, zone.hosted_zone_id)
        keys.append((record.name, record.type))
    # Read only what is named when that is fewer calls than listing the whole zone (a zone of
    # 30,000 sets is 100 pages; flipping 20 hostnames is 20 short reads).
    whole_zone_pages = max(1, -(-zone.record_count // PAGE_SIZE))
    read_named = len(set(keys)) < whole_zone_pages
    actual = list_named_record_sets(calls, zone.hosted_zone_id, keys) if read_named else list_record_sets(calls, zone.hosted_zone_id)
    plan = plan_declared_records(declared, actual, zone_name=zone.name, zone_id=zone.hosted_zone_id, state=state,
                                 ttl_only=ttl_only, exclusive=bool(params.get("exclusive")))
    batches = batches_within_limits(plan.changes)
    warnings = []
    if len(batches) > 1:
        warnings.append(f"the changes need {len(batches)} change batches (Route53 limits one request to 1,000 records and "
                        "32,000 characters), so they do not apply atomically")
    if plan.changes and not check_mode:
        apply_changes(calls, zone.hosted_zone_id, plan.changes, comment="cutover.migration.route53_records",
                      wait=params.get("wait", True), wait_timeout=int(params.get("wait_timeout") or 300))
    return {
        "changed": bool(plan.changes),
        "hosted_zone_id": zone.hosted_zone_id,
        "zone": zone.name,
        "summary": {key: value for key, value in plan.summary().items()
                    if key in ("created", "updated", "deleted", "unchanged")},
        "change_batches": len(batches),
        "api_calls": dict(counts),
        "changes": [change.describe() for change in plan.changes],
        # What the declared names and types held before this run (every set identifier): a
        # caller reads the current routing (a weighted shift's step) from here, in check mode too.
        "record_sets": [describe_record_set(record) for record in sorted(actual, key=lambda record: record.key)
                        if (record.name, record.type) in set(keys)],
        "warnings": warnings,
        "diff": plan.diff(),
    }
