"""Helpers for the s3_cross_account_copy lab tests: two accounts, a mixed dataset, views of objects."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import threading
import uuid
from dataclasses import dataclass

MIB = 1024 * 1024

# Small objects with awkward keys, metadata and tags; two objects over one 5 MiB part.
AWKWARD_KEYS = [
    "reports/q1 summary.csv",
    "reports/2024 Q2/売上 レポート.csv",
    "models/a+b/c+d.bin",
    "deep/1/2/3/4/5/6/7/8/9/leaf.txt",
    "spaces  twice/ trailing .txt",
    "ünïcödé/ključ/ключ.json",
]
EMPTY_KEY = "markers/_SUCCESS"
# Uploaded in 6 MiB parts, copied in 5 MiB parts: the ETags differ, the bytes do not.
MULTIPART_KEY = "big/weights-a.bin"
MULTIPART_SIZE = 11 * MIB
SINGLE_LARGE_KEY = "big/weights-b.bin"
SINGLE_LARGE_SIZE = 6 * MIB + 12345
DESCRIBED_KEY = "models/v1/described.json"
SMALL_COUNT = 240

# part_size at S3's minimum keeps the multipart paths in play with small data.
COPY_SETTINGS = {"part_size": "5MiB", "multipart_threshold": "5MiB", "concurrency": 8}


def role(account: str, name: str = "cutover-migration") -> str:
    return f"arn:aws:iam::{account}:role/{name}"


# Every bucket a test session makes carries this tag, so the session can remove them at the end.
SESSION_TAG = uuid.uuid4().hex[:6]


def unique(name: str) -> str:
    return f"{name}-{SESSION_TAG}{uuid.uuid4().hex[:6]}"


def remove_buckets(s3, marker: str) -> None:
    """Delete every bucket of this account whose name contains ``marker``, with its objects and uploads."""
    for bucket in s3.list_buckets()["Buckets"]:
        name = bucket["Name"]
        if marker not in name:
            continue
        for upload in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
            s3.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
            objects = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if objects:
                s3.delete_objects(Bucket=name, Delete={"Objects": objects, "Quiet": True})
        s3.delete_bucket(Bucket=name)


@dataclass
class Dataset:
    bucket: str
    keys: list[str]


class Lab:
    """Sessions for the old (source) and new (target) accounts of the lab."""

    def __init__(self, env: dict[str, str]):
        from ansible_collections.cutover.migration.plugins.module_utils.accounts import (
            open_account,
        )

        self.env = env
        self.old_account = env["LAB_ACCOUNT_OLD"]
        self.new_account = env["LAB_ACCOUNT_NEW"]
        self.other_account = env["LAB_ACCOUNT_PARENT"]
        self.source_options = {"role_arn": role(self.old_account)}
        self.target_options = {"role_arn": role(self.new_account)}
        self.source = open_account("source", self.source_options)
        self.target = open_account("target", self.target_options)
        self.other = open_account("target", {"role_arn": role(self.other_account)})
        self.source_s3 = self.source.client("s3")
        self.target_s3 = self.target.client("s3")
        self.other_s3 = self.other.client("s3")

    def fresh_target_session(self, **extra):
        from ansible_collections.cutover.migration.plugins.module_utils.accounts import (
            open_account,
        )

        return open_account("target", dict(self.target_options, **extra))

    def fresh_source_session(self):
        from ansible_collections.cutover.migration.plugins.module_utils.accounts import (
            open_account,
        )

        return open_account("source", self.source_options)

    def grant_target_read(self, bucket: str) -> None:
        self.source_s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "CutoverTargetReads",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{self.new_account}:root"},
                "Action": ["s3:GetObject", "s3:GetObjectTagging"],
                "Resource": f"arn:aws:s3:::{bucket}/*",
            }],
        }))


def write_dataset(lab: Lab, bucket: str, small_count: int = SMALL_COUNT) -> list[str]:
    s3 = lab.source_s3
    s3.create_bucket(Bucket=bucket)
    keys: list[str] = []
    jobs: list[dict] = []
    for number in range(small_count):
        jobs.append({"Key": f"models/v{number % 4}/shard-{number % 7}/part {number:04d}.bin",
                     "Body": os.urandom(200 + number * 13)})
    for number, key in enumerate(AWKWARD_KEYS):
        jobs.append({"Key": key, "Body": f"{key} {number}\n".encode() * 20, "ContentType": "text/plain; charset=utf-8",
                     "Metadata": {"origin": "old-account", "row": str(number)}, "Tagging": f"team=ml&n={number}"})
    jobs.append({"Key": DESCRIBED_KEY, "Body": b'{"model": "recommend", "version": 1}\n',
                 "ContentType": "application/json", "CacheControl": "max-age=300", "ContentEncoding": "identity",
                 "ContentDisposition": 'attachment; filename="described.json"', "ContentLanguage": "ja",
                 "Expires": datetime.datetime(2031, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
                 "Metadata": {"model-version": "1", "trained-on": "2024-05-01"},
                 "Tagging": "classification=internal&owner=recommend team"})
    jobs.append({"Key": EMPTY_KEY, "Body": b""})
    jobs.append({"Key": SINGLE_LARGE_KEY, "Body": os.urandom(SINGLE_LARGE_SIZE), "Metadata": {"kind": "weights"}})

    errors: list[BaseException] = []

    def put(batch: list[dict]) -> None:
        try:
            for job in batch:
                s3.put_object(Bucket=bucket, **job)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(jobs[index::8],)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    keys.extend(job["Key"] for job in jobs)

    body = os.urandom(MULTIPART_SIZE)
    upload = s3.create_multipart_upload(Bucket=bucket, Key=MULTIPART_KEY, ContentType="application/octet-stream",
                                        Metadata={"kind": "weights", "parts": "6MiB"}, Tagging="tier=hot")
    parts = []
    for number, offset in enumerate(range(0, MULTIPART_SIZE, 6 * MIB), start=1):
        answer = s3.upload_part(Bucket=bucket, Key=MULTIPART_KEY, UploadId=upload["UploadId"], PartNumber=number,
                                Body=body[offset:offset + 6 * MIB])
        parts.append({"PartNumber": number, "ETag": answer["ETag"]})
    s3.complete_multipart_upload(Bucket=bucket, Key=MULTIPART_KEY, UploadId=upload["UploadId"],
                                 MultipartUpload={"Parts": parts})
    keys.append(MULTIPART_KEY)
    return keys


def object_view(s3, bucket: str, key: str) -> dict:
    """What a user compares: the bytes' checksum, content headers, user metadata (minus our marker), tags."""
    answer = s3.get_object(Bucket=bucket, Key=key)
    body = answer["Body"].read()
    metadata = dict(answer.get("Metadata", {}))
    metadata.pop("cutover-source-etag", None)
    tags = s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
    return {
        "sha256": hashlib.sha256(body).hexdigest(),
        "size": len(body),
        "content_type": answer.get("ContentType"),
        "cache_control": answer.get("CacheControl"),
        "content_encoding": answer.get("ContentEncoding"),
        "content_disposition": answer.get("ContentDisposition"),
        "content_language": answer.get("ContentLanguage"),
        "expires": str(answer.get("Expires") or answer.get("ExpiresString") or ""),
        "metadata": metadata,
        "tags": sorted((tag["Key"], tag["Value"]) for tag in tags),
    }


def keys_in(s3, bucket: str, prefix: str = "") -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return sorted(keys)


def open_uploads(s3, bucket: str) -> list[dict]:
    return s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


class WriteCounter:
    """Counts S3 calls seen by a botocore session, independently of the module's own counting."""

    WRITES = frozenset({
        "PutObject", "CopyObject", "UploadPart", "UploadPartCopy", "CreateMultipartUpload", "CompleteMultipartUpload",
        "DeleteObject", "DeleteObjects", "CreateBucket", "PutObjectTagging", "AbortMultipartUpload", "PutBucketPolicy",
    })

    def __init__(self, account_session) -> None:
        self.calls: list[str] = []
        self._lock = threading.Lock()
        account_session.session.events.register("before-call.s3", self)

    def __call__(self, model=None, **_):
        with self._lock:
            self.calls.append(model.name)

    @property
    def writes(self) -> list[str]:
        return [name for name in self.calls if name in self.WRITES]


def assert_same_objects(s3_lab: Lab, source_bucket: str, target_bucket: str, keys: list[str],
                        target_prefix: str = "", source_prefix: str = "") -> None:
    assert keys_in(s3_lab.target_s3, target_bucket, target_prefix) == sorted(
        target_prefix + key[len(source_prefix):] for key in keys)
    for key in keys:
        source = object_view(s3_lab.source_s3, source_bucket, key)
        target = object_view(s3_lab.target_s3, target_bucket, target_prefix + key[len(source_prefix):])
        assert target == source, key
