#!/usr/bin/python
# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# ruff: noqa: E402  (Ansible modules put DOCUMENTATION before the imports)

from __future__ import annotations

DOCUMENTATION = r"""
module: route53_zone_clone
short_description: Copy a Route53 hosted zone's record sets into another account
version_added: 0.1.0
description:
  - Reads every record set of the source zone and of the target zone, normalises both (names, TXT strings, value order),
    and writes only the differences to the target in as few C(ChangeResourceRecordSets) requests as Route53's limits allow
    (1,000 records and 32,000 characters per request, UPSERT counting twice).
  - Creates the target zone when it does not exist. Copies every record set except the apex NS and SOA, including
    delegations, routing policies with their set identifiers and alias records. Aliases to AWS resources keep their DNS name
    and hosted zone id; aliases to records of the same zone are pointed at the target zone and created after their targets.
  - Health checks belong to an account; by default equivalent checks are made in the target account and the copied
    records use them.
  - A second run with nothing to do makes no write call and reports C(changed=false).
    By default (I(on_conflict=keep)) a rerun after the cutover never puts old values back over records that were already flipped.
author:
  - cutover.migration contributors (@cutover-migration)
extends_documentation_fragment:
  - cutover.migration.route53_sides
options:
  include_types:
    description: Copy only record sets of these types (for example C([A, AAAA, CNAME])). Empty copies every type.
    type: list
    elements: str
    default: []
  exclude_types:
    description: Do not copy record sets of these types.
    type: list
    elements: str
    default: []
  exclude_names:
    description:
      - Do not copy record sets whose name matches one of these shell-style globs (for example C(*.staging.example.com)).
      - Matched against the lower-case name, with or without the trailing dot.
    type: list
    elements: str
    default: []
  max_ttl:
    description:
      - Cap every copied TTL at this many seconds, to lower TTLs ahead of a cutover. The capped sets are listed in
        RV(summary.capped_ttl).
    type: int
  on_conflict:
    description:
      - What to do where the target already has a record set with the same name, type and set identifier but different data.
      - C(keep) leaves the target's set (listed in RV(summary.conflicts)); C(overwrite) replaces it with the source's;
        C(fail) stops before any write.
    type: str
    choices: [keep, overwrite, fail]
    default: keep
  purge:
    description:
      - Delete target record sets that the source does not have (only among the types and names selected by the filters).
      - The target's apex NS and SOA are never deleted.
    type: bool
    default: false
  health_checks:
    description:
      - C(recreate) makes an equivalent health check in the target account for each one the copied records use
        (found again on reruns by its caller reference) and points the copies at it.
      - C(drop) copies the records without a health check, with a warning.
      - C(fail) stops before any write if a record uses a health check.
    type: str
    choices: [recreate, drop, fail]
    default: recreate
  wait:
    description: Wait until Route53 reports every change C(INSYNC).
    type: bool
    default: true
  wait_timeout:
    description: How long to wait for C(INSYNC), in seconds.
    type: int
    default: 300
notes:
  - Parents often cache NS records for two days. Clone the zone and change the delegation at least a day before the cutover.
  - ACM validation uses CNAME records; they are copied like any other record and the old zone's are not needed after issue.
  - Supports check mode (returns the plan, makes no write call) and diff mode (before/after of the changed record sets).
seealso:
  - module: cutover.migration.route53_records
"""

EXAMPLES = r"""
- name: Clone the prod zone into the new account, TTLs lowered for the cutover
  cutover.migration.route53_zone_clone:
    source:
      role_arn: "arn:aws:iam::111111111111:role/migration"
      zone: example.com
    target:
      role_arn: "arn:aws:iam::222222222222:role/migration"
      comment: "prod zone, moved from the old account"
    max_ttl: 60
  register: clone

- name: Delegate to the new zone from the parent zone (a day ahead of the cutover)
  cutover.migration.route53_records:
    account:
      role_arn: "arn:aws:iam::333333333333:role/dns-admin"
    zone: com.example-parent.net
    records:
      - name: example.com
        type: NS
        ttl: 3600
        values: "{{ clone.name_servers }}"

- name: Rerun after the flip; refuse to touch anything that differs
  cutover.migration.route53_zone_clone:
    source: {role_arn: "arn:aws:iam::111111111111:role/migration", zone: example.com}
    target: {role_arn: "arn:aws:iam::222222222222:role/migration"}
    on_conflict: fail
    exclude_names: ["*.internal.example.com"]
"""

RETURN = r"""
changed:
  description: Whether anything was (or in check mode would be) written.
  returned: always
  type: bool
target_hosted_zone_id:
  description: ID of the target zone (null in check mode when it would be created).
  returned: always
  type: str
  sample: Z0123456789ABCDEFGHIJ
target_zone_created:
  description: Whether the target zone was (or would be) created by this run.
  returned: always
  type: bool
source_hosted_zone_id:
  description: ID of the source zone.
  returned: always
  type: str
name_servers:
  description: The target zone's name servers, the values to put in the parent's NS record.
  returned: always
  type: list
  elements: str
  sample: [ns-1.awsdns-01.org, ns-2.awsdns-02.co.uk]
summary:
  description: Record set keys (C(name type [set_identifier])) by outcome.
  returned: always
  type: dict
  contains:
    created: {description: Sets created in the target., type: list, elements: str, returned: always}
    updated: {description: Sets overwritten (on_conflict=overwrite)., type: list, elements: str, returned: always}
    deleted: {description: Sets deleted (purge)., type: list, elements: str, returned: always}
    unchanged: {description: Sets already equal in the target., type: list, elements: str, returned: always}
    capped_ttl: {description: "Sets whose TTL was capped by max_ttl, with the old and new TTL.", type: list, elements: str, returned: always}
    conflicts: {description: Sets that differ in the target and were kept (on_conflict=keep)., type: list, elements: str, returned: always}
    skipped: {description: Source sets left out by include_types/exclude_types/exclude_names., type: list, elements: str, returned: always}
api_calls:
  description: Route53 calls made, C(list) for reads (List*, Get*) and C(change) for writes.
  returned: always
  type: dict
  sample: {list: 4, change: 1}
changes:
  description: The planned changes in the order they are sent (action, name, type, set identifier, values or alias).
  returned: always
  type: list
  elements: dict
health_checks_created:
  description: Source health check ids for which an equivalent was (or would be) created in the target.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.cutover.migration.plugins.module_utils.account_options import (
    account_side_spec,
)
from ansible_collections.cutover.migration.plugins.module_utils.accounts import (
    BOTO3_IMPORT_ERROR,
    HAS_BOTO3,
    AccountError,
    open_accounts,
)
from ansible_collections.cutover.migration.plugins.module_utils.route53_plan import (
    Route53PlanError,
)

if HAS_BOTO3:
    from ansible_collections.cutover.migration.plugins.module_utils.route53_api import (
        Route53ApiError,
        clone_zone,
    )

SOURCE_OPTIONS = {
    "zone": {"type": "str"},
    "hosted_zone_id": {"type": "str"},
    "private_zone": {"type": "bool"},
}
TARGET_OPTIONS = {
    "zone": {"type": "str"},
    "hosted_zone_id": {"type": "str"},
    "private_zone": {"type": "bool"},
    "vpcs": {"type": "list", "elements": "dict", "options": {"id": {"type": "str", "required": True},
                                                             "region": {"type": "str", "required": True}}},
    "comment": {"type": "str"},
    "delegation_set_id": {"type": "str"},
}


def argument_spec() -> dict:
    return {
        "source": account_side_spec(SOURCE_OPTIONS, required=True),
        "target": account_side_spec(TARGET_OPTIONS, required=True),
        "include_types": {"type": "list", "elements": "str", "default": []},
        "exclude_types": {"type": "list", "elements": "str", "default": []},
        "exclude_names": {"type": "list", "elements": "str", "default": []},
        "max_ttl": {"type": "int"},
        "on_conflict": {"type": "str", "choices": ["keep", "overwrite", "fail"], "default": "keep"},
        "purge": {"type": "bool", "default": False},
        "health_checks": {"type": "str", "choices": ["recreate", "drop", "fail"], "default": "recreate"},
        "wait": {"type": "bool", "default": True},
        "wait_timeout": {"type": "int", "default": 300},
    }


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if not HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3"), exception=str(BOTO3_IMPORT_ERROR))
    params = module.params
    if not (params["source"].get("zone") or params["source"].get("hosted_zone_id")):
        module.fail_json(msg="source: give zone (the zone's name) or hosted_zone_id", side="source", option="zone")
    try:
        source, target = open_accounts(params["source"], params["target"])
        result = clone_zone(source, target, params, check_mode=module.check_mode)
    except AccountError as exc:
        module.fail_json(msg=str(exc), side=exc.side, option=exc.option, aws_error_code=exc.aws_error_code)
    except Route53PlanError as exc:
        module.fail_json(msg=str(exc), **exc.details())
    except Route53ApiError as exc:
        module.fail_json(msg=str(exc), side=exc.side, aws_error_code=exc.aws_error_code, **exc.details)
    diff = result.pop("diff")
    warnings = result.pop("warnings")
    for warning in warnings:
        module.warn(warning)
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
