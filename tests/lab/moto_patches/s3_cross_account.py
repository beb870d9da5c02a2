"""Cross-account S3 access decided by the bucket policy, as AWS decides it.

moto either lets every account reach every bucket (the default) or, with
``MOTO_S3_ALLOW_CROSSACCOUNT_ACCESS=false``, denies all of it, bucket policy or not. AWS allows
a request on another account's bucket exactly when that bucket's policy grants the caller (the
account, its root, the role or the assumed-role session) the action on the resource, and no
statement denies it. The lab needs that rule so a migration test can show both outcomes:
without a policy the target identity cannot read the source (stream mode is needed), with one
it can (server-side copy works).

The identity-policy half of AWS's evaluation is not modelled (the lab does not enforce IAM
policies; with ``INITIAL_NO_AUTH_ACTION_COUNT`` moto would deny every cross-account read).
Requests inside one account keep moto's behaviour. Conditions: ``aws:SecureTransport``,
``aws:PrincipalAccount`` and ``aws:PrincipalArn`` are evaluated; a statement with any other
condition key is treated as not matching (an Allow grants nothing, a Deny denies nothing).

Also fixed here: ``x-amz-copy-source-if-match`` on CopyObject and UploadPartCopy (moto ignores
it; AWS fails a copy of a changed source with 412), and CopyObject's tag copy across accounts
(moto looks the source's tags up in the destination account and copies none).
"""

from __future__ import annotations

import contextvars
import fnmatch
import json
from typing import Any
from urllib.parse import unquote, urlparse

# The S3 request being served by this thread; moto creates one S3Response per request and
# werkzeug serves each request on its own thread.
current_request: contextvars.ContextVar[Any] = contextvars.ContextVar("cutover_s3_request", default=None)

# moto names some actions after the API call; the bucket policy names the IAM action.
IAM_ACTION_FOR = {
    "HeadBucket": "ListBucket",
    "ListBucketMultipartUploads": "ListBucketMultipartUploads",
    "ListMultipartUploadParts": "ListMultipartUploadParts",
}


def principals_of(access_key: str, account_id: str) -> set[str]:
    """Every way a bucket policy may name the caller."""
    names = {account_id, f"arn:aws:iam::{account_id}:root"}
    try:
        from moto.iam.models import iam_backends
        from moto.sts.models import sts_backends
    except ImportError:  # pragma: no cover
        return names
    key = iam_backends[account_id]["aws"].access_keys.get(access_key)
    role_arn = getattr(key, "role_arn", None) if key is not None else None
    if role_arn:
        names.add(role_arn)
        assumed = sts_backends[account_id]["aws"].get_assumed_role_from_access_key(access_key)
        if assumed is not None:
            names.add(assumed.arn)
    elif key is not None and getattr(key, "user_name", None):
        names.add(f"arn:aws:iam::{account_id}:user/{key.user_name}")
    return names


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _principal_matches(element: Any, principals: set[str]) -> bool:
    if element == "*":
        return True
    values = _as_list(element.get("AWS")) if isinstance(element, dict) else _as_list(element)
    return any(value == "*" or value in principals for value in values)


def _any_pattern_matches(patterns: Any, value: str, case_sensitive: bool) -> bool:
    for pattern in _as_list(patterns):
        if case_sensitive and fnmatch.fnmatchcase(value, pattern):
            return True
        if not case_sensitive and fnmatch.fnmatchcase(value.lower(), str(pattern).lower()):
            return True
    return False


def _conditions_hold(conditions: Any, context: dict[str, str]) -> bool | None:
    """True/False when every condition could be evaluated, None when one names an unknown key."""
    if not conditions:
        return True
    for operator, tests in conditions.items():
        base = operator.replace("IfExists", "")
        for condition_key, expected in tests.items():
            actual = context.get(condition_key.lower())
            if actual is None:
                return None
            wanted = [str(value) for value in _as_list(expected)]
            if base in ("StringEquals", "ArnEquals"):
                holds = actual in wanted
            elif base in ("StringNotEquals", "ArnNotEquals"):
                holds = actual not in wanted
            elif base in ("StringLike", "ArnLike"):
                holds = any(fnmatch.fnmatchcase(actual, value) for value in wanted)
            elif base in ("StringNotLike", "ArnNotLike"):
                holds = not any(fnmatch.fnmatchcase(actual, value) for value in wanted)
            elif base == "Bool":
                holds = actual.lower() in [value.lower() for value in wanted]
            else:
                return None
            if not holds:
                return False
    return True


def policy_allows(policy_document: str | bytes | None, action: str, resource: str, principals: set[str],
                  context: dict[str, str]) -> bool:
    """AWS's answer for a cross-account request: an Allow that matches and no Deny that matches."""
    if not policy_document:
        return False
    if isinstance(policy_document, bytes):
        policy_document = policy_document.decode("utf-8")
    try:
        statements = _as_list(json.loads(policy_document).get("Statement"))
    except (ValueError, AttributeError):
        return False
    allowed = False
    for statement in statements:
        if "Principal" in statement:
            if not _principal_matches(statement["Principal"], principals):
                continue
        elif "NotPrincipal" in statement:
            if _principal_matches(statement["NotPrincipal"], principals):
                continue
        else:
            continue
        if "Action" in statement and not _any_pattern_matches(statement["Action"], action, case_sensitive=False):
            continue
        if "NotAction" in statement and _any_pattern_matches(statement["NotAction"], action, case_sensitive=False):
            continue
        if "Resource" in statement and not _any_pattern_matches(statement["Resource"], resource, case_sensitive=True):
            continue
        if "NotResource" in statement and _any_pattern_matches(statement["NotResource"], resource, case_sensitive=True):
            continue
        if _conditions_hold(statement.get("Condition"), context) is not True:
            continue
        if statement.get("Effect") == "Deny":
            return False
        if statement.get("Effect") == "Allow":
            allowed = True
    return allowed


def _copy_source(response: Any) -> tuple[str, str] | None:
    header = response.headers.get("x-amz-copy-source") if response.headers is not None else None
    if not header:
        return None
    if isinstance(header, bytes):
        header = header.decode("utf-8")
    path = unquote(urlparse(header).path).lstrip("/")
    bucket, _unused, key = path.partition("/")
    return bucket, key


def action_and_resource(response: Any, bucket_name: str) -> tuple[str, str]:
    """The IAM action and resource ARN this request needs on ``bucket_name``."""
    copy_source = _copy_source(response)
    if copy_source and copy_source[0] == bucket_name and bucket_name != getattr(response, "bucket_name", None):
        # Reading the source of CopyObject / UploadPartCopy needs s3:GetObject on the source object.
        return "s3:GetObject", f"arn:aws:s3:::{bucket_name}/{copy_source[1]}"
    action = response.data.get("Action") if isinstance(getattr(response, "data", None), dict) else None
    action = IAM_ACTION_FOR.get(action, action) if action else "UnknownAction"
    key_name = ""
    try:
        key_name = response.parse_key_name() or ""
    except Exception:  # noqa: BLE001 - bucket-level requests have no key
        key_name = ""
    if key_name and key_name != bucket_name:
        return f"s3:{action}", f"arn:aws:s3:::{bucket_name}/{key_name}"
    return f"s3:{action}", f"arn:aws:s3:::{bucket_name}"


def apply() -> None:
    from moto.s3 import models, responses
    from moto.s3.exceptions import AccessDeniedByLock, MissingBucket, PreconditionFailed

    original_setup_class = responses.S3Response.setup_class

    def setup_class(self, request, full_url=None, headers=None):
        original_setup_class(self, request, full_url, headers)
        current_request.set(self)

    responses.S3Response.setup_class = setup_class

    def get_bucket(self, bucket_name):
        if bucket_name in self.buckets:
            return self.buckets[bucket_name]
        if bucket_name in self.table_buckets:
            return self.table_buckets[bucket_name]
        if bucket_name in models.s3_backends.bucket_accounts:
            partition, owner_account = models.s3_backends.bucket_accounts[bucket_name]
            bucket = models.s3_backends[owner_account][partition].get_bucket(bucket_name)
            response = current_request.get()
            # Calls made by moto itself (other services, the lab's own code) keep moto's behaviour.
            if response is not None and getattr(response, "current_account", None) == self.account_id:
                action, resource = action_and_resource(response, bucket_name)
                if action == "s3:CreateBucket":
                    # moto looks the bucket up to choose between BucketAlreadyExists and
                    # BucketAlreadyOwnedByYou; that is not an access to the bucket.
                    return bucket
                principals = principals_of(response.access_key, self.account_id)
                context = {
                    "aws:securetransport": "true" if str(getattr(response, "uri", "")).startswith("https") else "false",
                    "aws:principalaccount": self.account_id,
                    "aws:principalarn": next((name for name in principals if ":role/" in name or ":user/" in name),
                                             f"arn:aws:iam::{self.account_id}:root"),
                }
                if not policy_allows(bucket.policy, action, resource, principals, context):
                    raise AccessDeniedByLock()
            return bucket
        raise MissingBucket(bucket=bucket_name)

    models.S3Backend.get_bucket = get_bucket

    def require_copy_source_etag(response: Any) -> None:
        wanted = response.headers.get("x-amz-copy-source-if-match")
        source = _copy_source(response)
        if not wanted or source is None:
            return
        key = response.backend.get_object(source[0], source[1])
        if key is not None and wanted.strip('"') != key.etag.strip('"'):
            raise PreconditionFailed("x-amz-copy-source-If-Match")

    original_copy_object = responses.S3Response.copy_object
    original_upload_part_copy = responses.S3Response.upload_part_copy

    def copy_object(self):
        require_copy_source_etag(self)
        return original_copy_object(self)

    def upload_part_copy(self):
        require_copy_source_etag(self)
        return original_upload_part_copy(self)

    responses.S3Response.copy_object = copy_object
    responses.S3Response.upload_part_copy = upload_part_copy

    original_backend_copy_object = models.S3Backend.copy_object

    def backend_copy_object(self, src_key, dest_bucket_name, dest_key_name, *args, **kwargs):
        original_backend_copy_object(self, src_key, dest_bucket_name, dest_key_name, *args, **kwargs)
        source_account = getattr(src_key, "account_id", self.account_id)
        if source_account != self.account_id:
            # moto copies tags inside the destination account's tagger, where the source
            # object's tags are not: x-amz-tagging-directive COPY lost them across accounts.
            source_tagger = models.s3_backends[source_account][src_key.partition].tagger
            tags = source_tagger.get_tag_dict_for_resource(src_key.arn)
            if tags:
                new_key = self.get_object(dest_bucket_name, dest_key_name)
                self.tagger.tag_resource(new_key.arn, [{"Key": key, "Value": value} for key, value in tags.items()])

    models.S3Backend.copy_object = backend_copy_object
