#!/usr/bin/python
# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# ruff: noqa: E402  (Ansible modules put DOCUMENTATION before the imports)

from __future__ import annotations

DOCUMENTATION = r"""
module: elbv2_targets
short_description: Put hosts into (or out of) service behind an ELBv2 load balancer's target group
version_added: 0.1.0
description:
  - Reads the targets registered in one target group and registers or deregisters only the difference, so a rerun
    changes nothing. Used by the web stage of a cutover to put the new web hosts into service behind the old load
    balancer (IP targets across VPC peering) and behind the new one.
  - Also reports the load balancers that forward to the group (DNS name and canonical hosted zone id), which is what
    a Route53 alias record to the new load balancer needs.
author:
  - cutover.migration contributors (@cutover-migration)
extends_documentation_fragment:
  - cutover.migration.accounts.account
options:
  target_group_name:
    description: Name of the target group. One of I(target_group_name) or I(target_group_arn) is required.
    type: str
  target_group_arn:
    description: ARN of the target group.
    type: str
  targets:
    description:
      - The targets to register (or, with I(state=absent), to deregister). Empty with I(state=present) only reads the group.
    type: list
    elements: dict
    default: []
    suboptions:
      id:
        description: Instance id, or IP address for a group of target type C(ip).
        type: str
        required: true
      port:
        description: Port traffic is sent to; defaults to the group's port.
        type: int
  state:
    description: C(present) registers I(targets); C(absent) deregisters them.
    type: str
    choices: [present, absent]
    default: present
  purge:
    description: With I(state=present), also deregister every target not listed in I(targets).
    type: bool
    default: false
notes:
  - Supports check mode (reports what would be registered, calls nothing that writes) and diff mode.
  - Deregistering does not wait for connection draining.
"""

EXAMPLES = r"""
- name: Put the new web hosts into service behind the old load balancer (VPC peering, IP targets)
  cutover.migration.elbv2_targets:
    account: {role_arn: "arn:aws:iam::111111111111:role/migration"}
    target_group_name: shop-prod-web
    targets:
      - {id: 10.20.1.15, port: 8080}
      - {id: 10.20.2.15, port: 8080}

- name: Read the new load balancer's DNS name for the Route53 alias
  cutover.migration.elbv2_targets:
    account: {role_arn: "arn:aws:iam::222222222222:role/migration"}
    target_group_name: shop-prod-web-new
  register: new_web_group

- name: Take the old hosts out of service after the cutover
  cutover.migration.elbv2_targets:
    account: {role_arn: "arn:aws:iam::111111111111:role/migration"}
    target_group_name: shop-prod-web
    targets: [{id: 10.10.1.15, port: 8080}]
    state: absent
"""

RETURN = r"""
changed:
  description: Whether a target was (or in check mode would be) registered or deregistered.
  returned: always
  type: bool
registered:
  description: Targets registered by this run, as C(id:port).
  returned: always
  type: list
  elements: str
deregistered:
  description: Targets deregistered by this run, as C(id:port).
  returned: always
  type: list
  elements: str
unchanged:
  description: Listed targets that were already registered.
  returned: always
  type: list
  elements: str
target_group_arn:
  description: ARN of the target group.
  returned: always
  type: str
target_group_name:
  description: Name of the target group.
  returned: always
  type: str
target_type:
  description: The group's target type (C(instance), C(ip), C(lambda), C(alb)).
  returned: always
  type: str
targets:
  description: Every target registered after the run, with its health state as the load balancer reports it.
  returned: always
  type: list
  elements: dict
  sample: [{id: 10.20.1.15, port: 8080, health: healthy}]
load_balancers:
  description: Load balancers forwarding to the group, with what a Route53 alias to them needs.
  returned: always
  type: list
  elements: dict
  sample: [{name: shop-prod-new, arn: "arn:aws:elasticloadbalancing:...", dns_name: shop-prod-new-1.us-east-1.elb.amazonaws.com,
            canonical_hosted_zone_id: Z35SXDOTRQ7X7K}]
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.cutover.migration.plugins.module_utils.account_options import (
    account_side_spec,
)
from ansible_collections.cutover.migration.plugins.module_utils.accounts import (
    BOTO3_IMPORT_ERROR,
    HAS_BOTO3,
    AccountError,
    aws_error_code,
    describe_aws_error,
    open_account,
)
from ansible_collections.cutover.migration.plugins.module_utils.elbv2_targets import (
    TargetGroupError,
    manage_targets,
)

if HAS_BOTO3:
    from botocore.exceptions import BotoCoreError, ClientError


def argument_spec() -> dict:
    return {
        "account": account_side_spec(required=True),
        "target_group_name": {"type": "str"},
        "target_group_arn": {"type": "str"},
        "targets": {"type": "list", "elements": "dict", "default": [], "options": {
            "id": {"type": "str", "required": True},
            "port": {"type": "int"},
        }},
        "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        "purge": {"type": "bool", "default": False},
    }


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_one_of=[("target_group_name", "target_group_arn")],
                           mutually_exclusive=[("target_group_name", "target_group_arn")])
    if not HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3"), exception=str(BOTO3_IMPORT_ERROR))
    try:
        session = open_account("account", module.params["account"])
        result = manage_targets(session.client("elbv2"), module.params, check_mode=module.check_mode)
    except AccountError as exc:
        module.fail_json(msg=str(exc), side=exc.side, option=exc.option, aws_error_code=exc.aws_error_code)
    except TargetGroupError as exc:
        module.fail_json(msg=f"account: {exc}", side="account", option=exc.option, aws_error_code=exc.aws_error_code)
    except (BotoCoreError, ClientError) as exc:
        module.fail_json(msg=f"account: {describe_aws_error(exc)}", side="account", aws_error_code=aws_error_code(exc))
    diff = result.pop("diff")
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
