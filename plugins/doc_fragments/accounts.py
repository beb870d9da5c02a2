# -*- coding: utf-8 -*-
# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of the ``source``/``target`` (and single ``account``) AWS identity options.

Ansible merges fragments one option deep, so a module whose ``source`` has keys of its own
(``zone``, ``bucket``) cannot add them to a shared ``source``. The text is therefore composed
here from one table of account options: ``sides_documentation(extra_source, extra_target)``
gives the ``source``/``target`` documentation with a module's own keys added, and other
fragments (``route53_sides``, ``s3_sides``) call it. The table mirrors
``plugins/module_utils/account_options.py``; validate-modules checks they agree.
"""

from __future__ import annotations

import copy

import yaml

ACCOUNT_SUBOPTIONS = {
    "profile": {
        "description": ["Named profile from the AWS config files to use as the base identity."],
        "type": "str",
        "aliases": ["aws_profile"],
    },
    "role_arn": {
        "description": [
            "ARN of a role to assume from the base identity, for example C(arn:aws:iam::222222222222:role/migration).",
            "This is how one AWX credential reaches both accounts. Credentials are refreshed before they expire.",
        ],
        "type": "str",
    },
    "external_id": {
        "description": ["External ID to pass when assuming I(role_arn), if the role's trust policy requires one."],
        "type": "str",
    },
    "session_name": {
        "description": ["Role session name to use when assuming I(role_arn) (shows in CloudTrail)."],
        "type": "str",
    },
    "access_key": {
        "description": [
            "Access key ID of the base identity.",
            "When neither this nor I(profile) is set, the environment is used: C(AWS_ACCESS_KEY_ID),"
            " C(AWS_SECRET_ACCESS_KEY) and C(AWS_SESSION_TOKEN) or C(AWS_SECURITY_TOKEN) (as AWX injects them),"
            " then boto3's default chain.",
        ],
        "type": "str",
        "aliases": ["aws_access_key_id"],
    },
    "secret_key": {
        "description": ["Secret access key of the base identity; required with I(access_key)."],
        "type": "str",
        "aliases": ["aws_secret_access_key"],
    },
    "session_token": {
        "description": ["Session token for temporary base credentials."],
        "type": "str",
        "aliases": ["aws_session_token", "security_token"],
    },
    "region": {
        "description": ["AWS region. Defaults to C(AWS_REGION), then C(AWS_DEFAULT_REGION), then C(us-east-1)."],
        "type": "str",
    },
    "endpoint_url": {
        "description": [
            "URL of the AWS API endpoint, for a local emulator or a VPC endpoint. Defaults to C(AWS_ENDPOINT_URL).",
        ],
        "type": "str",
    },
    "retry_mode": {
        "description": ["botocore retry mode used on throttling and transient errors."],
        "type": "str",
        "choices": ["adaptive", "standard", "legacy"],
        "default": "adaptive",
    },
    "max_attempts": {
        "description": ["Maximum attempts per API call (first try included) before giving up."],
        "type": "int",
        "default": 10,
    },
}


def _side(description, extra):
    suboptions = copy.deepcopy(ACCOUNT_SUBOPTIONS)
    suboptions.update(copy.deepcopy(extra or {}))
    return {"description": description, "type": "dict", "required": True, "suboptions": suboptions}


def sides_documentation(extra_source=None, extra_target=None):
    """YAML documentation for ``source`` and ``target``, each the account options plus ``extra_*``."""
    return yaml.safe_dump({
        "options": {
            "source": _side(["The old side: the identity that can read what is being moved, and where it is."],
                            extra_source),
            "target": _side(["The new side: the identity that writes, and where it goes."], extra_target),
        },
        "requirements": ["python >= 3.9", "boto3 >= 1.34", "botocore >= 1.34"],
    }, sort_keys=False)


def account_documentation(extra=None):
    """YAML documentation for a single ``account`` option (one identity, no source/target)."""
    account = _side(["The AWS identity that makes the changes."], extra)
    return yaml.safe_dump({
        "options": {"account": account},
        "requirements": ["python >= 3.9", "boto3 >= 1.34", "botocore >= 1.34"],
    }, sort_keys=False)


class ModuleDocFragment(object):
    # cutover.migration.accounts: source and target with the account options only.
    DOCUMENTATION = sides_documentation()

    # cutover.migration.accounts.account: one identity under ``account``.
    ACCOUNT = account_documentation()
