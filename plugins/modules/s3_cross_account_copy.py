#!/usr/bin/python
# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: s3_cross_account_copy
short_description: Copy an S3 bucket into a differently named bucket in another AWS account
version_added: 0.1.0
description:
  - Copies the objects of I(source.bucket) (below I(source.prefix)) into I(target.bucket) (below I(target.prefix)), with
    one identity per side, keeping content headers, user metadata and tags.
  - Lists both sides concurrently. An object counts as already copied when the target has the same size and either the
    same ETag or the source ETag recorded on the target object (user metadata C(cutover-source-etag)); object bodies are
    never read to decide, and a multipart ETag that differs only because the parts differ does not force a recopy.
    A rerun therefore copies only what is missing or changed, and a run with nothing to do makes no write call.
  - A single-part source object copied in one request gets the same ETag on the target (the MD5 of the same bytes), so
    it is copied with one C(CopyObject) that has S3 copy its headers, user metadata and tags (C(MetadataDirective=COPY))
    and is recognised on a rerun by the listing alone. Objects copied in parts, multipart sources, I(target.kms_key_id)
    and a narrowed I(metadata) get the source ETag recorded in C(cutover-source-etag) instead (one C(HeadObject) first,
    and one on each rerun).
  - C(server_side) copies with C(CopyObject) / C(UploadPartCopy) as the target identity, which needs the source bucket
    policy to grant it C(s3:GetObject). C(stream) reads as the source identity and writes as the target identity, with one
    GET and one PUT for an object that fits in memory whole, ranged GETs into a multipart upload for larger ones, holding
    at most I(concurrency) x I(part_size) bytes in memory and nothing on disk.
    C(auto) tries server-side and falls back to stream per object on AccessDenied; RV(method_used) tells which was used.
  - Every copy is conditional on the source ETag seen in the listing (C(CopySourceIfMatch) / C(If-Match)), so an object
    changed during the copy fails cleanly (and is copied by the next run) instead of becoming a mix of two versions.
  - Before copying, aborts incomplete multipart uploads under I(target.prefix) that an interrupted earlier run left
    for keys this run selects.
  - Creates the target bucket when missing. When the name is taken by another account (S3 bucket names are global) the
    task fails before copying anything and says how to map a new name in the inventory.
  - Single objects that fail are collected in RV(failures); the rest is still copied, then the task fails.
author:
  - cutover.migration contributors (@cutover-migration)
extends_documentation_fragment:
  - cutover.migration.s3_sides
options:
  method:
    description:
      - C(server_side), C(stream), or C(auto) (server-side per object, streamed where the target identity may not read
        the source).
    type: str
    choices: [auto, server_side, stream]
    default: auto
  include:
    description:
      - Copy only keys (below I(source.prefix)) matching one of these shell-style globs, for example C(models/*.bin).
        C(*) matches C(/) too. Empty copies every key.
    type: list
    elements: str
    default: []
  exclude:
    description: Do not copy keys (below I(source.prefix)) matching one of these globs. Wins over I(include).
    type: list
    elements: str
    default: []
  delete_extra:
    description:
      - Delete target objects below I(target.prefix) that the source lacks (only among keys selected by I(include),
        I(exclude) and I(shard)).
    type: bool
    default: false
  concurrency:
    description: Objects and parts in flight at once (1 to 256).
    type: int
    default: 16
  part_size:
    description:
      - Part size for multipart copies and uploads, in bytes or with a binary unit (C(64MiB), C(8M)); 5 MiB to 5 GiB.
      - Raised for an object that would otherwise need more than 10,000 parts.
    type: raw
    default: 64MiB
  multipart_threshold:
    description:
      - Server-side copies of objects larger than this use C(UploadPartCopy) in parallel parts; at most 5 GiB (objects
        over 5 GiB always use multipart copy). Streamed objects go in parts above this size too, and above
        I(concurrency) x I(part_size) (the memory bound); below both they take one GET and one PUT.
    type: raw
    default: 256MiB
  metadata:
    description:
      - What to keep from each source object, C(all) (default) or a list of C(content_type), C(cache_control),
        C(content_encoding), C(content_disposition), C(content_language), C(expires), C(user) (user metadata), C(tags);
        C(none) keeps nothing. C(true)/C(false) mean C(all)/C(none).
      - Copied objects get the ACL C(bucket-owner-full-control) unless the target bucket enforces object ownership.
    type: raw
    default: [all]
  shard:
    description:
      - Copy only keys whose stable hash (SHA-256 of the key below the prefix) falls in shard I(index) of I(count), so
        several hosts, forks or AWX job slices copy one bucket in parallel with no coordination.
    type: dict
    suboptions:
      index:
        description: This shard, C(0) to I(count) - 1 (with AWX job slicing, the slice number - 1).
        type: int
        required: true
      count:
        description: Number of shards.
        type: int
        required: true
  verify:
    description:
      - After copying, check that every copied object has the source's size and ETag (or records it); mismatches are
        reported as failures.
      - An object whose single write S3 answered with the source's ETag is verified by that answer (S3 computed it over
        the bytes it stored). The others are read back, with one C(HeadObject) each when up to 100, else with one listing
        of the target.
    type: bool
    default: true
  progress_file:
    description:
      - Write progress as JSON lines to this file on the managed host during the copy (objects and bytes done, rate in
        MiB/s, ETA in seconds), at most once a second, for a play that runs the task with C(async) and polls.
    type: path
notes:
  - Supports check mode (returns the plan - counts and bytes to copy, skip and delete - and writes nothing) and diff mode
    (the keys that would be copied or deleted).
  - "Server-side copy needs, on the source bucket policy: C(s3:GetObject) and C(s3:GetObjectTagging) on
    C(arn:aws:s3:::<source>/*) for the target identity; see docs/s3_cross_account_copy.md for the full least-privilege
    policies and SSE-KMS key policy notes."
  - Stream mode moves every byte through the host running the task, in and out.
seealso:
  - name: S3 Batch Operations
    description: For billions of objects, beyond what one runner can list and copy.
    link: https://docs.aws.amazon.com/AmazonS3/latest/userguide/batch-ops.html
"""

EXAMPLES = r"""
- name: Copy the ML models into the new prod account (new bucket name, as mapped in group_vars/prod.yml)
  cutover.migration.s3_cross_account_copy:
    source:
      role_arn: "arn:aws:iam::111111111111:role/migration"
      bucket: recommend-models-prod
    target:
      role_arn: "arn:aws:iam::222222222222:role/migration"
      bucket: "{{ s3_bucket_map['recommend-models-prod'] }}"
      region: ap-northeast-1
    progress_file: /tmp/s3-copy-models.jsonl
  async: 86400
  poll: 30

- name: One prefix, four AWX job slices in parallel, stream because the source policy cannot be changed
  cutover.migration.s3_cross_account_copy:
    source: {role_arn: "arn:aws:iam::111111111111:role/migration", bucket: recommend-data-prod, prefix: features/}
    target: {role_arn: "arn:aws:iam::222222222222:role/migration", bucket: recommend-data-prod-222222222222,
             prefix: features/, kms_key_id: "alias/recommend-data"}
    method: stream
    shard:
      index: "{{ awx_job_slice_number | default(1) | int - 1 }}"
      count: "{{ awx_job_slice_count | default(1) | int }}"
    exclude: ["*.tmp", "_scratch/*"]

- name: Final delta in the cutover window, removing what was deleted at the source since the bulk copy
  cutover.migration.s3_cross_account_copy:
    source: {role_arn: "arn:aws:iam::111111111111:role/migration", bucket: recommend-models-prod}
    target: {role_arn: "arn:aws:iam::222222222222:role/migration", bucket: recommend-models-prod-222222222222}
    delete_extra: true
  register: delta

- name: Show what the delta did
  ansible.builtin.debug:
    msg: "{{ delta.objects.copied }} copied, {{ delta.objects.deleted }} deleted, {{ delta.throughput_mib_s }} MiB/s"
"""

RETURN = r"""
changed:
  description: Whether anything was (or in check mode would be) written in the target.
  returned: always
  type: bool
objects:
  description: Object counts. In check mode C(copied) and C(deleted) are what would be copied and deleted.
  returned: always
  type: dict
  contains:
    source:
      description: Source objects selected (prefix, include/exclude, shard).
      type: int
    copied:
      description: Objects copied (and verified, when I(verify=true)).
      type: int
    skipped:
      description: Objects already copied, left alone.
      type: int
    deleted:
      description: Extra target objects deleted (I(delete_extra)).
      type: int
    failed:
      description: Objects that could not be copied, deleted or verified.
      type: int
  sample: {source: 2204, copied: 12, skipped: 2192, deleted: 0, failed: 0}
bytes_copied:
  description: Bytes of the objects copied.
  returned: always
  type: int
method_used:
  description: How many objects were copied server-side and how many streamed.
  returned: always
  type: dict
  contains:
    server_side:
      description: Objects copied with CopyObject / UploadPartCopy.
      type: int
    stream:
      description: Objects streamed through the host.
      type: int
  sample: {server_side: 10, stream: 2}
failures:
  description: Objects that failed, with the reason (AWS error code and what to do).
  returned: always
  type: list
  elements: dict
  contains:
    key:
      description: The source key (or the target key, for a failed delete).
      type: str
    reason:
      description: What went wrong.
      type: str
  sample: [{key: "models/v3/weights.bin", reason: "changed during the copy (CopySourceIfMatch failed); rerun"}]
elapsed_s:
  description: Wall time of the task in seconds.
  returned: always
  type: float
throughput_mib_s:
  description: RV(bytes_copied) per second of RV(elapsed_s), in MiB/s.
  returned: always
  type: float
plan:
  description: The plan the run followed (in check mode, the whole result).
  returned: always
  type: dict
  contains:
    create_bucket:
      description: Whether the target bucket is (to be) created.
      type: bool
    copy:
      description: Objects to copy.
      type: int
    skip:
      description: Objects already copied.
      type: int
    delete:
      description: Extra target objects to delete.
      type: int
    bytes_to_copy:
      description: Bytes to copy.
      type: int
    bytes_to_skip:
      description: Bytes already copied.
      type: int
    abort_uploads:
      description: Incomplete multipart uploads left by an interrupted earlier run, to abort.
      type: int
bucket_created:
  description: Whether the target bucket was created by this run.
  returned: always
  type: bool
aborted_uploads:
  description: Incomplete multipart uploads from an earlier interrupted run that were aborted.
  returned: always
  type: int
verified:
  description: Copied objects whose size and source ETag were checked in the target after the copy.
  returned: always
  type: int
requests:
  description: S3 API calls made, per side and operation, and the number of write calls per side.
  returned: always
  type: dict
  sample: {source: {ListObjectsV2: 3}, target: {ListObjectsV2: 3, HeadBucket: 1}, writes: {source: 0, target: 0}}
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
from ansible_collections.cutover.migration.plugins.module_utils.s3_copy import (
    STORAGE_CLASSES,
    S3CopyError,
    build_options,
    render_plan,
)

if HAS_BOTO3:
    from ansible_collections.cutover.migration.plugins.module_utils.s3_copy_transfer import (
        BucketCopy,
    )

SOURCE_OPTIONS = {
    "bucket": {"type": "str", "required": True},
    "prefix": {"type": "str", "default": ""},
}
TARGET_OPTIONS = {
    "bucket": {"type": "str", "required": True},
    "prefix": {"type": "str", "default": ""},
    "create_bucket": {"type": "bool", "default": True},
    "kms_key_id": {"type": "str"},
    "storage_class": {"type": "str", "choices": list(STORAGE_CLASSES)},
}


def argument_spec() -> dict:
    return {
        "source": account_side_spec(SOURCE_OPTIONS, required=True),
        "target": account_side_spec(TARGET_OPTIONS, required=True),
        "method": {"type": "str", "choices": ["auto", "server_side", "stream"], "default": "auto"},
        "include": {"type": "list", "elements": "str", "default": []},
        "exclude": {"type": "list", "elements": "str", "default": []},
        "delete_extra": {"type": "bool", "default": False},
        "concurrency": {"type": "int", "default": 16},
        "part_size": {"type": "raw", "default": "64MiB"},
        "multipart_threshold": {"type": "raw", "default": "256MiB"},
        "metadata": {"type": "raw", "default": ["all"]},
        "shard": {"type": "dict", "options": {"index": {"type": "int", "required": True},
                                              "count": {"type": "int", "required": True}}},
        "verify": {"type": "bool", "default": True},
        "progress_file": {"type": "path"},
    }


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if not HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3"), exception=str(BOTO3_IMPORT_ERROR))
    params = module.params
    try:
        settings = {name: params[name] for name in ("method", "include", "exclude", "delete_extra", "concurrency",
                                                    "part_size", "multipart_threshold", "metadata", "shard", "verify",
                                                    "progress_file")}
        options = build_options(params["source"], params["target"], **settings)
        source, target = open_accounts(params["source"], params["target"])
        copy = BucketCopy(source, target, options)
        result = copy.run(check_mode=module.check_mode).as_dict()
    except AccountError as exc:
        module.fail_json(msg=str(exc), side=exc.side, option=exc.option, aws_error_code=exc.aws_error_code)
    except S3CopyError as exc:
        module.fail_json(msg=str(exc), side=exc.side, option=exc.option, aws_error_code=exc.aws_error_code)
    if module._diff and copy.plan is not None:
        result["diff"] = render_plan(copy.plan, options)
    if result["objects"]["failed"]:
        failures = result["failures"]
        shown = "; ".join(f"{failure['key']}: {failure['reason']}" for failure in failures[:5])
        more = f" (and {len(failures) - 5} more in failures)" if len(failures) > 5 else ""
        module.fail_json(msg=f"{result['objects']['failed']} object(s) failed, the other {result['objects']['copied']} "
                             f"were copied; rerun to retry only what is missing: {shown}{more}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
