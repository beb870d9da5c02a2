"""The lab's moto patch serializer_timestamps: the same answers, byte for byte, without dateutil.

The patch changes how moto formats timestamps in the lab (tests/lab/moto_patches/
serializer_timestamps.py); a different byte in an answer would make the lab unlike AWS. The
moto part runs in a child process, so the patched serializer never leaks into other tests.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from botocore.utils import parse_to_aware_datetime
from lab_moto import load_patch, run_in_moto_child

PATCH = "serializer_timestamps"


@pytest.mark.parametrize("value", [
    "2026-12-05T14:00:00.000Z",            # moto's S3 LastModified text
    "2026-12-05T14:00:00Z",
    "2026-12-05T14:00:00.123456+00:00",
    "2026-12-05T16:30:00+02:30",           # another offset: converted to UTC, as botocore does
    datetime(2026, 12, 5, 14, 0, 0, 500, tzinfo=UTC),
    datetime(2026, 12, 5, 9, 0, 0, tzinfo=timezone(timedelta(hours=-5))),
])
def test_values_taken_directly_give_the_utc_datetime_botocore_would(value):
    parsed = load_patch(PATCH).aware_datetime(value)
    assert parsed == parse_to_aware_datetime(value)
    assert parsed.utcoffset() == timedelta(0)
    assert parsed.replace(tzinfo=None) == parse_to_aware_datetime(value).replace(tzinfo=None)


@pytest.mark.parametrize("value", [
    "2026-12-05T14:00:00",                 # no offset: moto's path assumes UTC, left to it
    datetime(2026, 12, 5, 14, 0, 0),       # naive datetime: the same
    "1764943200",                          # epoch text
    1764943200,
    "Sat, 05 Dec 2026 14:00:00 GMT",       # RFC 1123 text
])
def test_anything_needing_a_guess_is_left_to_moto(value):
    assert load_patch(PATCH).aware_datetime(value) is None


# In-process moto: the same calls answered before and after the patch, raw bodies and timestamp
# headers compared. Every call that carries a timestamp in the lab's S3 work is here.
CHECK = r'''
import sys
sys.path.insert(0, sys.argv[1])
import boto3
from moto import mock_aws

answers = []

def keep(http_response=None, model=None, **_):
    # GetObject's body is the object's bytes, read by the caller: its headers are the answer here.
    body = b"" if model.name == "GetObject" else http_response.content
    headers = {name: value for name, value in http_response.headers.items()
               if name.lower() in ("last-modified", "expires", "x-amz-expiration")}
    answers.append((body, sorted(headers.items())))

def calls(s3):
    answers.clear()
    s3.list_buckets()
    s3.list_objects_v2(Bucket="serializer-check")
    s3.list_objects(Bucket="serializer-check")
    s3.list_object_versions(Bucket="serializer-check")
    s3.head_object(Bucket="serializer-check", Key="a b+ü.txt")
    s3.get_object(Bucket="serializer-check", Key="expires.bin")["Body"].read()
    s3.list_multipart_uploads(Bucket="serializer-check")
    s3.copy_object(Bucket="serializer-check", Key="copy.bin", CopySource={"Bucket": "serializer-check", "Key": "expires.bin"})
    return list(answers)

with mock_aws():
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.meta.events.register("after-call.s3", keep)
    s3.create_bucket(Bucket="serializer-check")
    for number in range(30):
        s3.put_object(Bucket="serializer-check", Key=f"deep/{number:03d}/object.bin", Body=b"x" * number)
    s3.put_object(Bucket="serializer-check", Key="a b+ü.txt", Body=b"text")
    s3.put_object(Bucket="serializer-check", Key="expires.bin", Body=b"e", Expires="2030-01-01T00:00:00Z")
    s3.create_multipart_upload(Bucket="serializer-check", Key="pending.bin")
    before = calls(s3)
    s3.delete_object(Bucket="serializer-check", Key="copy.bin")
    from moto_patches import serializer_timestamps
    serializer_timestamps.apply()
    after = calls(s3)
    # CopyObject's LastModified is the copy's own time: compare its shape, not its value.
    assert before[-1][0].count(b"<LastModified>") == after[-1][0].count(b"<LastModified>") == 1
    assert before[:-1] == after[:-1], [(b, a) for b, a in zip(before, after) if b != a][:1]
    assert b"<LastModified>" in before[1][0] and before[1][0].count(b"<Key>") == 32
print("ok")
'''


def test_patched_moto_answers_are_byte_for_byte_the_same():
    completed = run_in_moto_child(CHECK)
    assert completed.returncode == 0 and completed.stdout.strip() == "ok", completed.stdout + completed.stderr
