# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``source``/``target`` documentation for S3 modules: the account options plus bucket keys."""

from __future__ import annotations

from ansible_collections.cutover.migration.plugins.doc_fragments.accounts import (
    sides_documentation,
)

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


class ModuleDocFragment:
    # cutover.migration.s3_sides: source/target with bucket and prefix (target: create_bucket, KMS, storage class).
    DOCUMENTATION = sides_documentation(S3_SOURCE_OPTIONS, S3_TARGET_OPTIONS)
