"""Render the ``source``/``target``/``account`` doc fragments from one table of account options.

Ansible merges doc fragments only one option deep, so a module whose ``source`` has keys of its
own (``zone``, ``bucket``) cannot extend a shared ``source``; and ansible-test's yamllint reads
fragments as string literals, so they cannot be composed at import time. The table below is the
one source of truth; this script writes literal fragments. ``--check`` fails when a written
fragment is stale (run by tests/unit/test_doc_fragments.py).

    python hacking/render_doc_fragments.py          # rewrite plugins/doc_fragments/*
    python hacking/render_doc_fragments.py --check
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
FRAGMENT_DIR = REPO_ROOT / "plugins" / "doc_fragments"
REQUIREMENTS = ["python >= 3.9", "boto3 >= 1.34", "botocore >= 1.34"]

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

# Module-specific keys of a side, per fragment: {fragment: {variant: (extra_source, extra_target) | extra_account}}.
SIDE_EXTRAS: dict[str, dict] = {}

# -- route53_zone_clone (source/target) and route53_records (account) --------------------------
ROUTE53_HOSTED_ZONE_ID = {
    "description": ["ID of the hosted zone (with or without C(/hostedzone/)); needed when two zones share a name."],
    "type": "str",
}

ROUTE53_SOURCE_EXTRA = {
    "zone": {"description": ["Name of the source hosted zone. One of I(zone) or I(hosted_zone_id) is required."],
             "type": "str"},
    "hosted_zone_id": ROUTE53_HOSTED_ZONE_ID,
    "private_zone": {
        "description": ["Pick the private (true) or public (false) zone of that name when both exist."],
        "type": "bool",
    },
}

ROUTE53_TARGET_EXTRA = {
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

SIDE_EXTRAS["route53_sides"] = {
    "summary": "source/target of route53_zone_clone (DOCUMENTATION) and account of route53_records (ACCOUNT).",
    "variants": {"DOCUMENTATION": (ROUTE53_SOURCE_EXTRA, ROUTE53_TARGET_EXTRA), "ACCOUNT": {}},
}

# -- s3_cross_account_copy (source/target) ------------------------------------------------------
S3_SOURCE_OPTIONS = {
    "bucket": {
        "description": ["Bucket to copy from."],
        "type": "str",
        "required": True,
    },
    "prefix": {
        "description": [
            "Copy only keys starting with this prefix. The prefix is cut off before I(target.prefix) is put in front,",
            "and include/exclude patterns and shards apply to the key below it.",
        ],
        "type": "str",
        "default": "",
    },
}

S3_TARGET_OPTIONS = {
    "bucket": {
        "description": [
            "Bucket to copy to. S3 bucket names are global, so the new account usually needs a new name.",
            "Map it in the inventory (for example C(s3_bucket_map) in C(group_vars/<env>.yml)).",
        ],
        "type": "str",
        "required": True,
    },
    "prefix": {
        "description": ["Put copied keys under this prefix in the target bucket."],
        "type": "str",
        "default": "",
    },
    "create_bucket": {
        "description": [
            "Create the target bucket in I(target.region) when it does not exist.",
            "When the name is taken by another account the task fails before copying anything.",
        ],
        "type": "bool",
        "default": True,
    },
    "kms_key_id": {
        "description": ["Encrypt copied objects with this KMS key (SSE-KMS); the target identity needs to use the key."],
        "type": "str",
    },
    "storage_class": {
        "description": ["Storage class of the copied objects; the bucket's default when not set."],
        "type": "str",
        "choices": ["STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER",
                    "DEEP_ARCHIVE", "GLACIER_IR"],
    },
}

SIDE_EXTRAS["s3_sides"] = {
    "summary": 'source/target of s3_cross_account_copy: account options plus bucket, prefix (target: create_bucket, kms_key_id, storage_class).',
    "variants": {"DOCUMENTATION": (S3_SOURCE_OPTIONS, S3_TARGET_OPTIONS)},
}


def side(description: list[str], extra: dict | None) -> dict:
    suboptions = copy.deepcopy(ACCOUNT_SUBOPTIONS)
    suboptions.update(copy.deepcopy(extra or {}))
    return {"description": description, "type": "dict", "required": True, "suboptions": suboptions}


def sides_documentation(extra_source: dict | None = None, extra_target: dict | None = None) -> str:
    return yaml.safe_dump({
        "options": {
            "source": side(["The old side: the identity that can read what is being moved, and where it is."], extra_source),
            "target": side(["The new side: the identity that writes, and where it goes."], extra_target),
        },
        "requirements": REQUIREMENTS,
    }, sort_keys=False, width=120)


def account_documentation(extra: dict | None = None) -> str:
    return yaml.safe_dump({
        "options": {"account": side(["The AWS identity that makes the changes."], extra)},
        "requirements": REQUIREMENTS,
    }, sort_keys=False, width=120)


def fragment_source(name: str, variants: dict[str, str], summary: str) -> str:
    lines = [
        "# -*- coding: utf-8 -*-",
        "# Copyright: cutover.migration contributors",
        "# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)",
        "# Generated by hacking/render_doc_fragments.py from its table of account options: edit that, then rerun it.",
        f'"""{summary}"""',
        "",
        "from __future__ import annotations",
        "",
        "",
        "class ModuleDocFragment(object):",
    ]
    for index, (variant, text) in enumerate(variants.items()):
        if index:
            lines.append("")
        lines.append(f"    {variant} = r\'\'\'")
        lines.extend(text.rstrip("\n").splitlines())
        lines.append("\'\'\'")
    return "\n".join(lines) + "\n"


def rendered_fragments() -> dict[Path, str]:
    fragments = {
        FRAGMENT_DIR / "accounts.py": fragment_source(
            "accounts",
            {"DOCUMENTATION": sides_documentation(), "ACCOUNT": account_documentation()},
            "AWS identity options: source/target (DOCUMENTATION) or a single account (ACCOUNT).",
        ),
    }
    for name, spec in SIDE_EXTRAS.items():
        variants = {}
        for variant, extras in spec["variants"].items():
            if variant.startswith("ACCOUNT"):
                variants[variant] = account_documentation(extras)
            else:
                variants[variant] = sides_documentation(*extras)
        fragments[FRAGMENT_DIR / f"{name}.py"] = fragment_source(name, variants, spec["summary"])
    return fragments


def main(argv: list[str]) -> int:
    stale = []
    for path, text in rendered_fragments().items():
        current = path.read_text() if path.exists() else None
        if current != text:
            stale.append(path)
            if "--check" not in argv:
                path.write_text(text)
    if "--check" in argv and stale:
        print("stale doc fragments (run python hacking/render_doc_fragments.py): " + ", ".join(str(p) for p in stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
