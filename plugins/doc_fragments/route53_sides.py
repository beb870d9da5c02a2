# -*- coding: utf-8 -*-
# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``source``/``target`` of route53_zone_clone and ``account`` of route53_records, documented once."""

from __future__ import annotations

from ansible_collections.cutover.migration.plugins.doc_fragments.accounts import account_documentation, sides_documentation

HOSTED_ZONE_ID = {
    "description": ["ID of the hosted zone (with or without C(/hostedzone/)); needed when two zones share a name."],
    "type": "str",
}

SOURCE_EXTRA = {
    "zone": {"description": ["Name of the source hosted zone. One of I(zone) or I(hosted_zone_id) is required."],
             "type": "str"},
    "hosted_zone_id": HOSTED_ZONE_ID,
    "private_zone": {
        "description": ["Pick the private (true) or public (false) zone of that name when both exist."],
        "type": "bool",
    },
}

TARGET_EXTRA = {
    "zone": {
        "description": [
            "Name of the target hosted zone; defaults to the source zone's name.",
            "It is created when the target account has no such zone.",
            "A different name is accepted only if every copied record set fits under it.",
        ],
        "type": "str",
    },
    "hosted_zone_id": {"description": ["ID of an existing target zone to copy into."], "type": "str"},
    "private_zone": {
        "description": ["Whether the target zone is private. Defaults to what the source zone is."],
        "type": "bool",
    },
    "vpcs": {
        "description": ["VPCs to associate a new private target zone with (the first at creation, the others after)."],
        "type": "list",
        "elements": "dict",
        "suboptions": {
            "id": {"description": ["VPC ID."], "type": "str", "required": True},
            "region": {"description": ["Region of the VPC."], "type": "str", "required": True},
        },
    },
    "comment": {"description": ["Comment of a newly created target zone."], "type": "str"},
    "delegation_set_id": {
        "description": ["Reusable delegation set for a newly created target zone (same name servers for many zones)."],
        "type": "str",
    },
}

ACCOUNT_EXTRA: dict = {}


class ModuleDocFragment(object):
    # route53_zone_clone: source and target
    DOCUMENTATION = sides_documentation(SOURCE_EXTRA, TARGET_EXTRA)

    # route53_records: one account
    ACCOUNT = account_documentation(ACCOUNT_EXTRA)
