# -*- coding: utf-8 -*-
# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument-spec pieces for the ``source``/``target``/``account`` options.

Plain data (no Ansible import), so the spec and ``plugins/doc_fragments/accounts.py`` describe
the same options; ``ansible-test sanity`` (validate-modules) checks that they agree.
"""

from __future__ import annotations

import copy
from typing import Any

ACCOUNT_ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "profile": {"type": "str", "aliases": ["aws_profile"]},
    "role_arn": {"type": "str"},
    "external_id": {"type": "str", "no_log": True},
    "session_name": {"type": "str"},
    "access_key": {"type": "str", "aliases": ["aws_access_key_id"], "no_log": True},
    "secret_key": {"type": "str", "aliases": ["aws_secret_access_key"], "no_log": True},
    "session_token": {"type": "str", "aliases": ["aws_session_token", "security_token"], "no_log": True},
    "region": {"type": "str"},
    "endpoint_url": {"type": "str"},
    "retry_mode": {"type": "str", "choices": ["adaptive", "standard", "legacy"], "default": "adaptive"},
    "max_attempts": {"type": "int", "default": 10},
}


def account_side_spec(extra: dict[str, dict[str, Any]] | None = None, required: bool = False) -> dict[str, Any]:
    """The spec of one side (a dict option): the account options plus the module's own keys."""
    options = copy.deepcopy(ACCOUNT_ARGUMENT_SPEC)
    options.update(copy.deepcopy(extra or {}))
    spec: dict[str, Any] = {"type": "dict", "options": options}
    if required:
        spec["required"] = True
    else:
        spec["default"] = {}
    return spec
