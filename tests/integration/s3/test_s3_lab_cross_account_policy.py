"""The lab's moto decides cross-account S3 access by the bucket policy, as AWS does (moto_patches/s3_cross_account)."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError
from s3_copy_lab import role, unique


@pytest.fixture
def bucket(s3_lab):
    name = unique("cutover-policy")
    s3_lab.source_s3.create_bucket(Bucket=name)
    s3_lab.source_s3.put_object(Bucket=name, Key="models/weights.bin", Body=b"weights")
    s3_lab.source_s3.put_object(Bucket=name, Key="private/secret.txt", Body=b"secret")
    return name


def policy(s3_lab, bucket, *statements):
    s3_lab.source_s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17",
                                                                         "Statement": list(statements)}))


def error_code(call) -> str:
    with pytest.raises(ClientError) as error:
        call()
    return error.value.response["Error"]["Code"]


def test_without_a_bucket_policy_another_account_is_denied(s3_lab, bucket):
    assert error_code(lambda: s3_lab.target_s3.get_object(Bucket=bucket, Key="models/weights.bin")) == "AccessDenied"
    assert error_code(lambda: s3_lab.target_s3.list_objects_v2(Bucket=bucket)) == "AccessDenied"
    assert error_code(lambda: s3_lab.target_s3.put_object(Bucket=bucket, Key="x", Body=b"x")) == "AccessDenied"
    # The owner is unaffected.
    assert s3_lab.source_s3.get_object(Bucket=bucket, Key="models/weights.bin")["Body"].read() == b"weights"


def test_a_policy_granting_the_account_allows_exactly_what_it_names(s3_lab, bucket):
    policy(s3_lab, bucket, {"Effect": "Allow", "Principal": {"AWS": s3_lab.new_account}, "Action": "s3:GetObject",
                            "Resource": f"arn:aws:s3:::{bucket}/models/*"})
    assert s3_lab.target_s3.get_object(Bucket=bucket, Key="models/weights.bin")["Body"].read() == b"weights"
    assert error_code(lambda: s3_lab.target_s3.get_object(Bucket=bucket, Key="private/secret.txt")) == "AccessDenied"
    assert error_code(lambda: s3_lab.target_s3.list_objects_v2(Bucket=bucket)) == "AccessDenied"
    assert error_code(lambda: s3_lab.other_s3.get_object(Bucket=bucket, Key="models/weights.bin")) == "AccessDenied"


def test_a_policy_granting_one_role_allows_that_role_only(s3_lab, bucket):
    from ansible_collections.cutover.migration.plugins.module_utils.accounts import open_account

    policy(s3_lab, bucket, {"Effect": "Allow", "Principal": {"AWS": [role(s3_lab.new_account)]},
                            "Action": ["s3:GetObject", "s3:ListBucket"],
                            "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]})
    assert s3_lab.target_s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 2
    other_role = open_account("target", {"role_arn": role(s3_lab.new_account, "someone-else")}).client("s3")
    assert error_code(lambda: other_role.get_object(Bucket=bucket, Key="models/weights.bin")) == "AccessDenied"


def test_an_explicit_deny_wins_over_an_allow(s3_lab, bucket):
    policy(s3_lab, bucket,
           {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{s3_lab.new_account}:root"}, "Action": "s3:Get*",
            "Resource": f"arn:aws:s3:::{bucket}/*"},
           {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/private/*"})
    assert s3_lab.target_s3.get_object(Bucket=bucket, Key="models/weights.bin")["Body"].read() == b"weights"
    assert error_code(lambda: s3_lab.target_s3.get_object(Bucket=bucket, Key="private/secret.txt")) == "AccessDenied"


def test_server_side_copy_reads_the_source_with_the_callers_grant(s3_lab, bucket):
    target_bucket = unique("cutover-policy-dst")
    s3_lab.target_s3.create_bucket(Bucket=target_bucket)
    source = {"Bucket": bucket, "Key": "models/weights.bin"}
    assert error_code(lambda: s3_lab.target_s3.copy_object(Bucket=target_bucket, Key="w", CopySource=source)) \
        == "AccessDenied"
    policy(s3_lab, bucket, {"Effect": "Allow", "Principal": {"AWS": s3_lab.new_account}, "Action": "s3:GetObject",
                            "Resource": f"arn:aws:s3:::{bucket}/*"})
    s3_lab.target_s3.copy_object(Bucket=target_bucket, Key="w", CopySource=source)
    assert s3_lab.target_s3.get_object(Bucket=target_bucket, Key="w")["Body"].read() == b"weights"


def test_copy_source_if_match_is_enforced(s3_lab, bucket):
    target_bucket = unique("cutover-policy-dst")
    s3_lab.source_s3.create_bucket(Bucket=target_bucket)
    source = {"Bucket": bucket, "Key": "models/weights.bin"}
    assert error_code(lambda: s3_lab.source_s3.copy_object(Bucket=target_bucket, Key="w", CopySource=source,
                                                           CopySourceIfMatch='"0123456789abcdef"')) \
        == "PreconditionFailed"
    etag = s3_lab.source_s3.head_object(Bucket=bucket, Key="models/weights.bin")["ETag"]
    s3_lab.source_s3.copy_object(Bucket=target_bucket, Key="w", CopySource=source, CopySourceIfMatch=etag)


def test_a_name_taken_by_another_account_is_bucket_already_exists(s3_lab, bucket):
    assert error_code(lambda: s3_lab.target_s3.create_bucket(Bucket=bucket)) == "BucketAlreadyExists"


def test_copy_object_keeps_the_source_tags_across_accounts(s3_lab, bucket):
    s3_lab.source_s3.put_object_tagging(Bucket=bucket, Key="models/weights.bin",
                                        Tagging={"TagSet": [{"Key": "tier", "Value": "hot"}]})
    policy(s3_lab, bucket, {"Effect": "Allow", "Principal": {"AWS": s3_lab.new_account},
                            "Action": ["s3:GetObject", "s3:GetObjectTagging"], "Resource": f"arn:aws:s3:::{bucket}/*"})
    target_bucket = unique("cutover-policy-dst")
    s3_lab.target_s3.create_bucket(Bucket=target_bucket)
    s3_lab.target_s3.copy_object(Bucket=target_bucket, Key="w", CopySource={"Bucket": bucket, "Key": "models/weights.bin"},
                                 TaggingDirective="COPY")
    assert s3_lab.target_s3.get_object_tagging(Bucket=target_bucket, Key="w")["TagSet"] == [{"Key": "tier", "Value": "hot"}]
