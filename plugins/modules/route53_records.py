#!/usr/bin/python
# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# ruff: noqa: E402  (Ansible modules put DOCUMENTATION before the imports)

from __future__ import annotations

DOCUMENTATION = r"""
module: route53_records
short_description: Declarative Route53 record sets, changed together in one atomic batch
version_added: 0.1.0
description:
  - Makes the listed record sets of one hosted zone exist (or not) with one C(ChangeResourceRecordSets) request, so every
    hostname of a cutover flips at the same moment. Only when the changes exceed Route53's limits for one request
    (1,000 records, 32,000 characters, UPSERT counting twice) are they split, with a warning.
  - Reads only the named record sets when that takes fewer calls than listing the whole zone.
  - Used for the cutover flip (point service names at the new load balancers), for lowering TTLs ahead of it
    (I(ttl_only)), and for the NS delegation of a zone in its parent zone.
  - A run with nothing to change makes no write call and reports C(changed=false).
author:
  - cutover.migration contributors (@cutover-migration)
extends_documentation_fragment:
  - cutover.migration.route53_sides.account
options:
  zone:
    description: Name of the hosted zone. One of I(zone) or I(hosted_zone_id) is required.
    type: str
  hosted_zone_id:
    description: ID of the hosted zone; needed when two zones share a name.
    type: str
  private_zone:
    description: Pick the private (true) or public (false) zone of that name when both exist.
    type: bool
  records:
    description: The record sets to manage. Each is identified by name, type and set identifier.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Record name, absolute (C(www.example.com)) or relative to the zone (C(www), C(@) for the apex).
        type: str
        required: true
      type:
        description: Record type (C(A), C(AAAA), C(CNAME), C(NS), C(TXT), C(MX), ...).
        type: str
        required: true
      ttl:
        description: TTL in seconds (not for aliases). Defaults to 300. The new TTL when I(ttl_only=true).
        type: int
      values:
        description: Record values. Give I(values) or I(alias) with I(state=present), unless I(ttl_only=true).
        type: list
        elements: str
      alias:
        description: Alias target.
        type: dict
        suboptions:
          dns_name:
            description: DNS name of the target (load balancer, CloudFront distribution, or a record of this zone).
            type: str
            required: true
          hosted_zone_id:
            description:
              - Hosted zone id of the target, for example a load balancer's C(CanonicalHostedZoneId).
              - Defaults to this zone (an alias to a record of the same zone).
            type: str
          evaluate_target_health:
            description: Whether Route53 checks the health of the alias target.
            type: bool
            default: false
      set_identifier:
        description: Identifier of a record set with a routing policy.
        type: str
      weight:
        description: Weight (weighted routing).
        type: int
      region:
        description: AWS region (latency routing).
        type: str
      failover:
        description: Failover role.
        type: str
        choices: [PRIMARY, SECONDARY]
      geolocation:
        description: Geolocation routing.
        type: dict
        suboptions:
          continent_code: {description: Continent code., type: str}
          country_code: {description: Country code (C(*) is the default location)., type: str}
          subdivision_code: {description: Subdivision code., type: str}
      geoproximity_location:
        description: Geoproximity routing.
        type: dict
        suboptions:
          aws_region: {description: AWS region., type: str}
          local_zone_group: {description: Local zone group., type: str}
          coordinates:
            description: Latitude and longitude.
            type: dict
            suboptions:
              latitude: {description: Latitude., type: str}
              longitude: {description: Longitude., type: str}
          bias: {description: Bias., type: int}
      multi_value_answer:
        description: Multivalue answer routing.
        type: bool
      cidr_routing_config:
        description: IP-based (CIDR) routing.
        type: dict
        suboptions:
          collection_id: {description: CIDR collection id., type: str, required: true}
          location_name: {description: CIDR location name., type: str, required: true}
      health_check_id:
        description: Health check of this record set.
        type: str
  state:
    description: C(present) creates or updates the record sets; C(absent) deletes them (whatever their current values).
    type: str
    choices: [present, absent]
    default: present
  exclusive:
    description:
      - The declared record sets are the only ones of their name and type. Any other record set of a declared name and
        type (another set identifier, or the simple record set where weighted ones are declared, and the other way
        round) is deleted in the same change batch.
      - Route53 rejects a simple record set beside record sets with a set identifier of the same name and type, so
        this is how a simple alias becomes two weighted sets (or two weighted sets become one simple record again) in
        one atomic request, without a moment where the name does not resolve.
      - Without it, such a declaration fails before any write, naming the record sets in the way.
    type: bool
    default: false
  ttl_only:
    description:
      - Change only the TTL of the named record sets, keeping their current values (for lowering TTLs before a cutover).
      - Every named set must exist.
    type: bool
    default: false
  wait:
    description: Wait until Route53 reports the change C(INSYNC).
    type: bool
    default: true
  wait_timeout:
    description: How long to wait for C(INSYNC), in seconds.
    type: int
    default: 300
notes:
  - Parents often cache NS records for two days; change a delegation a day ahead of the cutover.
  - Supports check mode (returns the plan, makes no write call) and diff mode.
seealso:
  - module: cutover.migration.route53_zone_clone
"""

EXAMPLES = r"""
- name: Lower the TTLs of the service names a day before the cutover
  cutover.migration.route53_records:
    account: {role_arn: "arn:aws:iam::222222222222:role/migration"}
    zone: example.com
    ttl_only: true
    records:
      - {name: www, type: A, ttl: 60}
      - {name: api, type: A, ttl: 60}

- name: Flip the service names to the new load balancer, all together
  cutover.migration.route53_records:
    account: {role_arn: "arn:aws:iam::222222222222:role/migration"}
    zone: example.com
    records:
      - name: www
        type: A
        alias:
          dns_name: "{{ new_alb.dns_name }}"
          hosted_zone_id: "{{ new_alb.canonical_hosted_zone_id }}"
          evaluate_target_health: true
      - name: api
        type: A
        alias:
          dns_name: "{{ new_alb.dns_name }}"
          hosted_zone_id: "{{ new_alb.canonical_hosted_zone_id }}"

- name: Send 10% of lookups to the new load balancer (the simple alias becomes two weighted sets, atomically)
  cutover.migration.route53_records:
    account: {role_arn: "arn:aws:iam::222222222222:role/migration"}
    zone: example.com
    exclusive: true
    records:
      - name: www
        type: A
        set_identifier: new
        weight: 10
        alias:
          dns_name: "{{ new_alb.dns_name }}"
          hosted_zone_id: "{{ new_alb.canonical_hosted_zone_id }}"
      - name: www
        type: A
        set_identifier: old
        weight: 90
        alias:
          dns_name: "{{ old_alb.dns_name }}"
          hosted_zone_id: "{{ old_alb.canonical_hosted_zone_id }}"

- name: Delegate the zone to the new account's name servers in the parent zone
  cutover.migration.route53_records:
    account: {role_arn: "arn:aws:iam::333333333333:role/dns-admin"}
    zone: example.com
    records:
      - name: shop.example.com
        type: NS
        ttl: 3600
        values: "{{ clone.name_servers }}"
"""

RETURN = r"""
changed:
  description: Whether a change was (or in check mode would be) sent.
  returned: always
  type: bool
hosted_zone_id:
  description: ID of the zone.
  returned: always
  type: str
change_batches:
  description: Number of change requests the changes need (1 unless Route53's per-request limits are exceeded).
  returned: always
  type: int
summary:
  description: Record set keys by outcome (created, updated, deleted, unchanged).
  returned: always
  type: dict
changes:
  description: The changes in the order they are sent (action, name, type, set identifier, ttl and values or alias).
  returned: always
  type: list
  elements: dict
  sample: [{action: UPSERT, name: www.example.com., type: A, alias: {dns_name: new-alb.elb.amazonaws.com.}}]
record_sets:
  description:
    - The record sets of the declared names and types as they were before this run (every set identifier), in the
      shape of I(records); in check mode too, so a caller can read the current routing (for example the step a
      weighted shift reached).
  returned: always
  type: list
  elements: dict
  sample: [{name: www.example.com., type: A, set_identifier: new, weight: 10, alias: {dns_name: new-alb.elb.amazonaws.com.}}]
api_calls:
  description: Route53 calls made, C(list) for reads (List*, Get*) and C(change) for writes.
  returned: always
  type: dict
  sample: {list: 3, change: 1}
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.cutover.migration.plugins.module_utils.account_options import (
    account_side_spec,
)
from ansible_collections.cutover.migration.plugins.module_utils.accounts import (
    BOTO3_IMPORT_ERROR,
    HAS_BOTO3,
    AccountError,
    open_account,
)
from ansible_collections.cutover.migration.plugins.module_utils.route53_plan import (
    Route53PlanError,
)

if HAS_BOTO3:
    from ansible_collections.cutover.migration.plugins.module_utils.route53_api import (
        Route53ApiError,
        manage_records,
    )

RECORD_OPTIONS = {
    "name": {"type": "str", "required": True},
    "type": {"type": "str", "required": True},
    "ttl": {"type": "int"},
    "values": {"type": "list", "elements": "str"},
    "alias": {"type": "dict", "options": {
        "dns_name": {"type": "str", "required": True},
        "hosted_zone_id": {"type": "str"},
        "evaluate_target_health": {"type": "bool", "default": False},
    }},
    "set_identifier": {"type": "str"},
    "weight": {"type": "int"},
    "region": {"type": "str"},
    "failover": {"type": "str", "choices": ["PRIMARY", "SECONDARY"]},
    "geolocation": {"type": "dict", "options": {
        "continent_code": {"type": "str"}, "country_code": {"type": "str"}, "subdivision_code": {"type": "str"}}},
    "geoproximity_location": {"type": "dict", "options": {
        "aws_region": {"type": "str"}, "local_zone_group": {"type": "str"},
        "coordinates": {"type": "dict", "options": {"latitude": {"type": "str"}, "longitude": {"type": "str"}}},
        "bias": {"type": "int"}}},
    "multi_value_answer": {"type": "bool"},
    "cidr_routing_config": {"type": "dict", "options": {
        "collection_id": {"type": "str", "required": True}, "location_name": {"type": "str", "required": True}}},
    "health_check_id": {"type": "str"},
}


def argument_spec() -> dict:
    return {
        "account": account_side_spec(required=True),
        "zone": {"type": "str"},
        "hosted_zone_id": {"type": "str"},
        "private_zone": {"type": "bool"},
        "records": {"type": "list", "elements": "dict", "required": True, "options": RECORD_OPTIONS},
        "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        "exclusive": {"type": "bool", "default": False},
        "ttl_only": {"type": "bool", "default": False},
        "wait": {"type": "bool", "default": True},
        "wait_timeout": {"type": "int", "default": 300},
    }


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_one_of=[("zone", "hosted_zone_id")])
    if not HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3"), exception=str(BOTO3_IMPORT_ERROR))
    params = module.params
    if params["ttl_only"] and params["state"] == "absent":
        module.fail_json(msg="ttl_only changes TTLs of existing record sets; it cannot be combined with state=absent",
                         option="ttl_only")
    try:
        session = open_account("account", params["account"])
        result = manage_records(session, params, check_mode=module.check_mode)
    except AccountError as exc:
        module.fail_json(msg=str(exc), side=exc.side, option=exc.option, aws_error_code=exc.aws_error_code)
    except Route53PlanError as exc:
        module.fail_json(msg=str(exc), **exc.details())
    except Route53ApiError as exc:
        module.fail_json(msg=str(exc), side=exc.side, aws_error_code=exc.aws_error_code, **exc.details)
    diff = result.pop("diff")
    for warning in result.pop("warnings"):
        module.warn(warning)
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
