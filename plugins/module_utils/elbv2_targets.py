# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which targets a load balancer's target group sends traffic to: read, plan, apply.

Plain Python over a boto3 ``elbv2`` client. The web stage of a cutover puts the new hosts into
service by registering them here (in the old load balancer's group across VPC peering, and in
the new one's), and the DNS stage reads the new load balancer's DNS name from the same group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence


class TargetGroupError(Exception):
    """A target group could not be found or changed; the message says which and what to do."""

    def __init__(self, message: str, option: str | None = None, aws_error_code: str | None = None):
        self.option = option
        self.aws_error_code = aws_error_code
        super().__init__(message)


@dataclass(frozen=True, order=True)
class Target:
    """One registration: an instance id or IP address, and the port traffic is sent to."""

    target_id: str
    port: int | None = None

    def label(self) -> str:
        return f"{self.target_id}:{self.port}" if self.port else self.target_id

    def request(self) -> dict[str, Any]:
        request: dict[str, Any] = {"Id": self.target_id}
        if self.port:
            request["Port"] = self.port
        return request


@dataclass(frozen=True)
class TargetPlan:
    register: tuple[Target, ...]
    deregister: tuple[Target, ...]
    unchanged: tuple[Target, ...]

    @property
    def changed(self) -> bool:
        return bool(self.register or self.deregister)


def targets_from_option(items: Sequence[Mapping[str, Any]] | None) -> tuple[Target, ...]:
    targets = []
    for index, item in enumerate(items or ()):
        target_id = str(item.get("id") or "").strip()
        if not target_id:
            raise TargetGroupError(f"targets[{index}].id is empty: give an instance id or an IP address", option="targets")
        port = item.get("port")
        targets.append(Target(target_id, int(port) if port else None))
    return tuple(sorted(set(targets)))


def plan_targets(wanted: Sequence[Target], registered: Sequence[Target], *, state: str, purge: bool,
                 default_port: int | None) -> TargetPlan:
    """Registrations to add and remove so that ``wanted`` is (or is not) in service."""

    def with_port(target: Target) -> Target:
        return target if target.port or not default_port else Target(target.target_id, default_port)

    wanted_set = {with_port(target) for target in wanted}
    registered_set = {with_port(target) for target in registered}
    if state == "absent":
        deregister = sorted(wanted_set & registered_set)
        return TargetPlan((), tuple(deregister), ())
    register = sorted(wanted_set - registered_set)
    deregister = sorted(registered_set - wanted_set) if purge else []
    return TargetPlan(tuple(register), tuple(deregister), tuple(sorted(wanted_set & registered_set)))


def find_target_group(client: Any, *, name: str | None = None, arn: str | None = None) -> dict[str, Any]:
    from botocore.exceptions import ClientError

    try:
        request = {"TargetGroupArns": [arn]} if arn else {"Names": [name]}
        groups = client.describe_target_groups(**request)["TargetGroups"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("TargetGroupNotFound", "TargetGroupNotFoundException"):
            raise TargetGroupError(f"target group {arn or name} does not exist in this account: create it with the new "
                                   "infrastructure first, or fix target_group_name in the inventory",
                                   option="target_group_arn" if arn else "target_group_name", aws_error_code=code) from exc
        raise TargetGroupError(f"describe target group {arn or name} failed: {exc}", aws_error_code=code) from exc
    if not groups:
        raise TargetGroupError(f"target group {arn or name} does not exist in this account",
                               option="target_group_arn" if arn else "target_group_name")
    return groups[0]


def read_registered(client: Any, target_group_arn: str) -> list[dict[str, Any]]:
    descriptions = client.describe_target_health(TargetGroupArn=target_group_arn)["TargetHealthDescriptions"]
    return [{"id": item["Target"]["Id"], "port": item["Target"].get("Port"),
             "health": item.get("TargetHealth", {}).get("State", "unknown")} for item in descriptions]


def read_load_balancers(client: Any, arns: Sequence[str]) -> list[dict[str, Any]]:
    if not arns:
        return []
    balancers = client.describe_load_balancers(LoadBalancerArns=list(arns))["LoadBalancers"]
    return [{"name": item["LoadBalancerName"], "arn": item["LoadBalancerArn"], "dns_name": item["DNSName"],
             "canonical_hosted_zone_id": item.get("CanonicalHostedZoneId")} for item in balancers]


def manage_targets(client: Any, params: Mapping[str, Any], check_mode: bool = False) -> dict[str, Any]:
    """elbv2_targets: read the group, register/deregister only the difference, report the group."""
    state = params.get("state") or "present"
    group = find_target_group(client, name=params.get("target_group_name"), arn=params.get("target_group_arn"))
    arn = group["TargetGroupArn"]
    registered_rows = read_registered(client, arn)
    registered = [Target(row["id"], row["port"]) for row in registered_rows]
    wanted = targets_from_option(params.get("targets"))
    plan = plan_targets(wanted, registered, state=state, purge=bool(params.get("purge")), default_port=group.get("Port"))
    if plan.changed and not check_mode:
        if plan.register:
            client.register_targets(TargetGroupArn=arn, Targets=[target.request() for target in plan.register])
        if plan.deregister:
            client.deregister_targets(TargetGroupArn=arn, Targets=[target.request() for target in plan.deregister])
        registered_rows = read_registered(client, arn)
    return {
        "changed": plan.changed,
        "registered": [target.label() for target in plan.register],
        "deregistered": [target.label() for target in plan.deregister],
        "unchanged": [target.label() for target in plan.unchanged],
        "target_group_arn": arn,
        "target_group_name": group["TargetGroupName"],
        "target_type": group.get("TargetType"),
        "targets": registered_rows,
        "load_balancers": read_load_balancers(client, group.get("LoadBalancerArns") or []),
        "diff": {"before": {"targets": sorted(target.label() for target in registered)},
                 "after": {"targets": sorted({t.label() for t in registered} - {t.label() for t in plan.deregister}
                                             | {t.label() for t in plan.register})}},
    }
