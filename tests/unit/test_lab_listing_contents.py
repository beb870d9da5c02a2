"""The lab's moto patch s3_listing_contents: ListObjectsV2 pages byte for byte as moto writes them.

Runs moto in a child process (the patch never leaks into other tests): the same listings are
answered by moto's own serializer, then with the lab's patches applied, and the raw answers
(status, headers but the date and request id, body) compared. The objects carry every field moto puts in a
listing: keys that need escaping or URL encoding, checksums, owners, common prefixes.
"""

from __future__ import annotations

from lab_moto import load_patch, run_in_moto_child

PATCH = "s3_listing_contents"

CHECK = r'''
import sys
sys.path.insert(0, sys.argv[1])
import boto3
from moto import mock_aws

answers = []

def keep(http_response=None, **_):
    headers = sorted((name.lower(), value) for name, value in http_response.headers.items() if name.lower() not in ("date", "x-amzn-requestid"))
    answers.append((http_response.status_code, headers, http_response.content))

LISTINGS = [
    {},
    {"MaxKeys": 7},
    {"MaxKeys": 7, "StartAfter": "deep/002"},
    {"Prefix": "deep/", "Delimiter": "/"},
    {"Delimiter": "/", "FetchOwner": True},
    {"FetchOwner": True, "EncodingType": "url"},
    {"EncodingType": "url", "Prefix": "odd"},
    {"Prefix": "nothing-here/"},
]

def listings(s3):
    answers.clear()
    for arguments in LISTINGS:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket="listing-check", **arguments)
        for _page in pages:
            pass
    return list(answers)

with mock_aws():
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.meta.events.register("after-call.s3.ListObjectsV2", keep)
    # boto3 asks for URL-encoded keys unless told otherwise; most listings here want them as XML
    # text (escaped), the ones that name EncodingType get them encoded.
    from botocore.handlers import set_list_objects_encoding_type_url
    s3.meta.events.unregister("before-parameter-build.s3.ListObjectsV2", set_list_objects_encoding_type_url)
    s3.create_bucket(Bucket="listing-check")
    for number in range(25):
        s3.put_object(Bucket="listing-check", Key=f"deep/{number % 4:03d}/object-{number}.bin", Body=b"x" * number)
    for key in ("odd/a&b <c> \"d\" 'e'.txt", "odd/ünïcødé ☃.txt", "odd/plus+sign", "odd/ spaced /key ",
                "odd/tab\tand%percent"):
        s3.put_object(Bucket="listing-check", Key=key, Body=b"odd")
    s3.put_object(Bucket="listing-check", Key="odd/empty", Body=b"")
    s3.put_object(Bucket="listing-check", Key="sum/sha256", Body=b"s", ChecksumAlgorithm="SHA256")
    s3.put_object(Bucket="listing-check", Key="sum/sha1", Body=b"c", ChecksumAlgorithm="SHA1")
    s3.put_object(Bucket="listing-check", Key="sum/ia", Body=b"i", StorageClass="STANDARD_IA")
    upload = s3.create_multipart_upload(Bucket="listing-check", Key="sum/multipart")
    part = s3.upload_part(Bucket="listing-check", Key="sum/multipart", UploadId=upload["UploadId"], PartNumber=1,
                          Body=b"m" * (5 << 20))
    s3.complete_multipart_upload(Bucket="listing-check", Key="sum/multipart", UploadId=upload["UploadId"],
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    before = listings(s3)
    from moto_patches import s3_listing_contents, serializer_timestamps
    serializer_timestamps.apply()
    s3_listing_contents.apply()
    after = listings(s3)
    assert len(before) == len(after) >= len(LISTINGS) + 4, (len(before), len(after))
    for number, (old, new) in enumerate(zip(before, after)):
        assert old == new, (number, old, new)
    assert sum(body.count(b"<Contents>") for _status, _headers, body in after) > 60
    assert any(b"<ChecksumAlgorithm>SHA256</ChecksumAlgorithm>" in body for _status, _headers, body in after)
    assert any(b"<Owner><DisplayName>" in body for _status, _headers, body in after)
    assert any(b"&amp;b &lt;c&gt;" in body for _status, _headers, body in after)
print("ok")
'''


def test_patched_listing_pages_are_byte_for_byte_moto_s_own():
    completed = run_in_moto_child(CHECK)
    assert completed.returncode == 0 and completed.stdout.strip() == "ok", completed.stdout + completed.stderr


def test_objects_with_anything_unexpected_are_left_to_moto():
    patch = load_patch(PATCH)
    plain = {"Key": "k", "LastModified": "2026-12-05T14:00:00.000Z", "ETag": '"e"', "Size": 1, "StorageClass": "STANDARD"}
    assert patch.render_contents([plain]) == (
        '<Contents><Key>k</Key><LastModified>2026-12-05T14:00:00.000Z</LastModified><ETag>"e"</ETag><Size>1</Size>'
        "<StorageClass>STANDARD</StorageClass></Contents>")
    for changed in ({"RestoreStatus": {"IsRestoreInProgress": True}}, {"LastModified": "2026-12-05T14:00:00Z"},
                    {"Size": True}, {"Size": "1"}, {"Owner": {"ID": 1}}, {"ChecksumAlgorithm": "CRC32"},
                    {"StorageClass": None}):
        assert patch.render_contents([plain, dict(plain, **changed)]) is None, changed
