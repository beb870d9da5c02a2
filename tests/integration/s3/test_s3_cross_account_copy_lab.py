"""s3_cross_account_copy against the lab: two accounts, real S3 API (moto), bytes compared by checksum."""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
import textwrap
import threading

import pytest
from s3_copy_lab import (
    COPY_SETTINGS,
    DESCRIBED_KEY,
    EMPTY_KEY,
    MULTIPART_KEY,
    SINGLE_LARGE_KEY,
    WriteCounter,
    assert_same_objects,
    keys_in,
    object_view,
    open_uploads,
    unique,
    write_dataset,
)

from ansible_collections.cutover.migration.plugins.module_utils.s3_copy import (
    S3CopyError,
    TargetBucketTaken,
    build_options,
)
from ansible_collections.cutover.migration.plugins.module_utils.s3_copy_transfer import (
    copy_bucket,
)


def copy(s3_lab, source_bucket, target_bucket, session=None, target_side=None, check_mode=False, **settings):
    """One run of the core as the module runs it; ``session`` is a target session carrying test hooks."""
    options = build_options({"bucket": source_bucket}, {"bucket": target_bucket, **(target_side or {})},
                            **{**COPY_SETTINGS, **settings})
    return copy_bucket(s3_lab.fresh_source_session(), session or s3_lab.target, options,
                       check_mode=check_mode).as_dict()


@pytest.fixture(scope="module")
def copied(s3_lab, granted_dataset):
    """The granted dataset copied once with method auto (server-side wherever the policy allows)."""
    target_bucket = unique("cutover-dst")
    result = copy(s3_lab, granted_dataset.bucket, target_bucket)
    return target_bucket, result


def test_copy_keeps_bytes_content_headers_metadata_and_tags(s3_lab, granted_dataset, copied):
    target_bucket, result = copied
    assert result["failures"] == []
    assert result["objects"]["copied"] == len(granted_dataset.keys) == result["objects"]["source"]
    assert result["method_used"] == {"server_side": len(granted_dataset.keys), "stream": 0}
    assert result["verified"] == len(granted_dataset.keys)
    assert result["bucket_created"] is True
    assert_same_objects(s3_lab, granted_dataset.bucket, target_bucket, granted_dataset.keys)
    described = object_view(s3_lab.target_s3, target_bucket, DESCRIBED_KEY)
    assert described["cache_control"] == "max-age=300" and described["content_language"] == "ja"
    assert ("owner", "recommend team") in described["tags"]
    assert object_view(s3_lab.target_s3, target_bucket, EMPTY_KEY)["size"] == 0


def test_copied_objects_record_the_source_etag(s3_lab, granted_dataset, copied):
    target_bucket, _unused = copied
    source_etag = s3_lab.source_s3.head_object(Bucket=granted_dataset.bucket, Key=MULTIPART_KEY)["ETag"]
    target_head = s3_lab.target_s3.head_object(Bucket=target_bucket, Key=MULTIPART_KEY)
    # 6 MiB source parts, 5 MiB copy parts: different multipart ETags for the same bytes.
    assert target_head["ETag"] != source_etag
    assert target_head["Metadata"]["cutover-source-etag"] == source_etag.strip('"')


def test_single_part_objects_are_copied_in_one_request_and_keep_the_source_etag(s3_lab, granted_dataset, copied):
    target_bucket, result = copied
    # One CopyObject per object copied whole (MetadataDirective COPY); HeadObject and GetObjectTagging
    # only for the two objects copied in parts (CreateMultipartUpload needs their headers and tags).
    source_calls, target_calls = result["requests"]["source"], result["requests"]["target"]
    whole = len(granted_dataset.keys) - 2
    assert target_calls["CopyObject"] == whole
    assert source_calls.get("HeadObject") == 2 and source_calls.get("GetObjectTagging") == 2
    source_head = s3_lab.source_s3.head_object(Bucket=granted_dataset.bucket, Key=DESCRIBED_KEY)
    target_head = s3_lab.target_s3.head_object(Bucket=target_bucket, Key=DESCRIBED_KEY)
    # Same bytes in one part: the same ETag, which is what the rerun compares (no recorded ETag needed).
    assert target_head["ETag"] == source_head["ETag"]
    # Verified by the ETag each CopyObject answered with, plus one HeadObject per multipart copy.
    assert result["verified"] == len(granted_dataset.keys)
    assert target_calls.get("HeadObject") == 2 and target_calls["ListObjectsV2"] == 1


def test_a_copy_whose_target_etag_differs_is_redone_recording_the_source_etag(s3_lab, granted_dataset):
    """A target that encrypts with KMS by default answers CopyObject with an ETag that is no MD5."""
    target_bucket = unique("cutover-dst-kms")
    target = s3_lab.fresh_target_session()

    def answer_like_sse_kms(parsed, model, **_):
        if model.name == "CopyObject" and parsed.get("CopyObjectResult", {}).get("ETag"):
            parsed["CopyObjectResult"]["ETag"] = '"0123456789abcdef0123456789abcdef"'

    target.session.events.register("after-call.s3.CopyObject", answer_like_sse_kms)
    # The described object carries every content header (Expires too) through the REPLACE copy.
    result = copy(s3_lab, granted_dataset.bucket, target_bucket, session=target, include=["reports/*", DESCRIBED_KEY])
    assert result["objects"]["copied"] == 3 and result["failures"] == []
    # First the one-request copy, then the HeadObject + CopyObject (REPLACE) that records the source ETag.
    assert result["requests"]["target"]["CopyObject"] == 6 and result["requests"]["source"]["HeadObject"] == 3
    for key in ("reports/q1 summary.csv", "reports/2024 Q2/売上 レポート.csv", DESCRIBED_KEY):
        source_etag = s3_lab.source_s3.head_object(Bucket=granted_dataset.bucket, Key=key)["ETag"]
        head = s3_lab.target_s3.head_object(Bucket=target_bucket, Key=key)
        assert head["Metadata"]["cutover-source-etag"] == source_etag.strip('"')
    assert_same_objects(s3_lab, granted_dataset.bucket, target_bucket,
                        [key for key in granted_dataset.keys if key.startswith("reports/") or key == DESCRIBED_KEY])


def test_rerun_copies_nothing_and_makes_no_write_call(s3_lab, granted_dataset, copied):
    target_bucket, _unused = copied
    target = s3_lab.fresh_target_session()
    counter = WriteCounter(target)
    result = copy(s3_lab, granted_dataset.bucket, target_bucket, session=target)
    assert result["changed"] is False
    assert result["objects"]["copied"] == 0 and result["objects"]["skipped"] == len(granted_dataset.keys)
    assert counter.writes == []
    # Only the two objects copied in parts (their ETags differ) need the recorded source ETag; no body is read.
    assert "GetObject" not in counter.calls and counter.calls.count("HeadObject") == 2


def test_object_changed_at_source_is_copied_again(s3_lab):
    source_bucket = unique("cutover-src-change")
    keys = write_dataset(s3_lab, source_bucket, small_count=10)
    s3_lab.grant_target_read(source_bucket)
    target_bucket = unique("cutover-dst-change")
    copy(s3_lab, source_bucket, target_bucket)
    s3_lab.source_s3.put_object(Bucket=source_bucket, Key=keys[3], Body=b"new bytes, same key")
    # Same size, different bytes: only the ETag tells.
    same_size = os.urandom(s3_lab.source_s3.head_object(Bucket=source_bucket, Key=SINGLE_LARGE_KEY)["ContentLength"])
    s3_lab.source_s3.put_object(Bucket=source_bucket, Key=SINGLE_LARGE_KEY, Body=same_size)

    result = copy(s3_lab, source_bucket, target_bucket)
    assert result["objects"]["copied"] == 2 and result["objects"]["skipped"] == len(keys) - 2
    assert_same_objects(s3_lab, source_bucket, target_bucket, keys)


def test_stream_copies_when_the_target_identity_may_not_read_the_source(s3_lab, dataset):
    target_bucket = unique("cutover-dst-stream")
    with pytest.raises(Exception, match="AccessDenied"):
        s3_lab.target_s3.get_object(Bucket=dataset.bucket, Key=EMPTY_KEY)
    result = copy(s3_lab, dataset.bucket, target_bucket, method="stream")
    assert result["failures"] == []
    assert result["method_used"] == {"server_side": 0, "stream": len(dataset.keys)}
    assert_same_objects(s3_lab, dataset.bucket, target_bucket, dataset.keys)


def test_stream_moves_objects_that_fit_the_memory_bound_in_one_get_and_one_put(s3_lab, dataset):
    target_bucket = unique("cutover-dst-stream-whole")
    # 8 buffers of 5 MiB: the 6 MiB and 11 MiB objects fit whole (2 and 3 buffers), under the 16 MiB threshold.
    settings = {"include": ["big/*"], "method": "stream", "multipart_threshold": "16MiB"}
    result = copy(s3_lab, dataset.bucket, target_bucket, **settings)
    assert result["failures"] == [] and result["method_used"] == {"server_side": 0, "stream": 2}
    assert result["requests"]["source"]["GetObject"] == 2 and result["requests"]["target"]["PutObject"] == 2
    assert "UploadPart" not in result["requests"]["target"]
    assert_same_objects(s3_lab, dataset.bucket, target_bucket, [MULTIPART_KEY, SINGLE_LARGE_KEY])
    # The multipart source's ETag cannot match a one-part upload: it is recorded, and the rerun reads it.
    source_etag = s3_lab.source_s3.head_object(Bucket=dataset.bucket, Key=MULTIPART_KEY)["ETag"]
    head = s3_lab.target_s3.head_object(Bucket=target_bucket, Key=MULTIPART_KEY)
    assert head["Metadata"]["cutover-source-etag"] == source_etag.strip('"')
    target = s3_lab.fresh_target_session()
    counter = WriteCounter(target)
    rerun = copy(s3_lab, dataset.bucket, target_bucket, session=target, **settings)
    assert rerun["changed"] is False and counter.writes == [] and counter.calls.count("HeadObject") == 1


def test_auto_without_bucket_policy_falls_back_to_stream_per_object(s3_lab, dataset):
    target_bucket = unique("cutover-dst-auto")
    result = copy(s3_lab, dataset.bucket, target_bucket, method="auto", include=["models/v1/*", "big/*"])
    selected = [key for key in dataset.keys if key.startswith(("models/v1/", "big/"))]
    assert result["failures"] == []
    assert result["method_used"] == {"server_side": 0, "stream": len(selected)}
    assert_same_objects(s3_lab, dataset.bucket, target_bucket, selected)


def test_server_side_without_bucket_policy_fails_each_object_with_the_fix(s3_lab, dataset):
    target_bucket = unique("cutover-dst-denied")
    result = copy(s3_lab, dataset.bucket, target_bucket, method="server_side", include=["reports/*"])
    assert result["objects"]["failed"] == 2 and result["objects"]["copied"] == 0
    assert all("in the source bucket policy" in failure["reason"] for failure in result["failures"])
    assert keys_in(s3_lab.target_s3, target_bucket) == []


def test_auto_with_bucket_policy_copies_server_side(s3_lab, granted_dataset):
    target_bucket = unique("cutover-dst-granted")
    result = copy(s3_lab, granted_dataset.bucket, target_bucket, include=["reports/*", "big/*"])
    assert result["method_used"] == {"server_side": 4, "stream": 0}
    assert_same_objects(s3_lab, granted_dataset.bucket, target_bucket,
                        [key for key in granted_dataset.keys if key.startswith(("reports/", "big/"))])


# Awkward keys, both large objects, a quarter of the small ones: enough to split, quick to copy twice.
SHARDED = ["models/v0/*", "models/a+b/*", "reports/*", "big/*", "markers/*", "deep/*", "ünïcödé/*"]


def test_two_shards_together_copy_everything_exactly_once(s3_lab, granted_dataset):
    target_bucket = unique("cutover-dst-shards")
    s3_lab.target_s3.create_bucket(Bucket=target_bucket)
    results: dict[int, dict] = {}

    def run(index: int) -> None:
        results[index] = copy(s3_lab, granted_dataset.bucket, target_bucket, session=s3_lab.fresh_target_session(),
                              shard={"index": index, "count": 2}, include=SHARDED)

    threads = [threading.Thread(target=run, args=(index,)) for index in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    selected = [key for key in granted_dataset.keys if any(fnmatch.fnmatchcase(key, glob) for glob in SHARDED)]
    copied = [results[0]["objects"]["copied"], results[1]["objects"]["copied"]]
    assert all(copied) and sum(copied) == len(selected)
    assert results[0]["objects"]["source"] + results[1]["objects"]["source"] == len(selected)
    assert_same_objects(s3_lab, granted_dataset.bucket, target_bucket, selected)


CRASHING_RUN = textwrap.dedent("""
    import json, os, sys, time
    from ansible_collections.cutover.migration.plugins.module_utils.accounts import open_account
    from ansible_collections.cutover.migration.plugins.module_utils.s3_copy import build_options
    from ansible_collections.cutover.migration.plugins.module_utils.s3_copy_transfer import copy_bucket
    arguments = json.loads(sys.argv[1])
    source = open_account("source", arguments["source_account"])
    target = open_account("target", arguments["target_account"])
    small_copies = []
    def count_small_copy(**_):
        small_copies.append(1)
    def crash_after_first_part(**_):
        # Let other workers finish some small objects first, then die like a killed runner:
        # no cleanup, no abort, a multipart upload left open.
        for _ in range(200):
            if len(small_copies) >= 20:
                break
            time.sleep(0.05)
        os._exit(137)
    target.session.events.register("after-call.s3.CopyObject", count_small_copy)
    target.session.events.register("after-call.s3.UploadPartCopy", crash_after_first_part)
    options = build_options({"bucket": arguments["source_bucket"]}, {"bucket": arguments["target_bucket"]},
                            **arguments["settings"])
    copy_bucket(source, target, options)
""")


def test_killed_mid_copy_then_rerun_converges_with_no_leftover_upload(s3_lab, granted_dataset):
    target_bucket = unique("cutover-dst-crash")
    completed = subprocess.run(
        [sys.executable, "-c", CRASHING_RUN, json.dumps({
            "source_account": s3_lab.source_options, "target_account": s3_lab.target_options,
            "source_bucket": granted_dataset.bucket, "target_bucket": target_bucket,
            "settings": dict(COPY_SETTINGS, concurrency=4)})],
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)), capture_output=True, text=True, timeout=120,
        check=False)
    assert completed.returncode == 137, completed.stderr
    assert open_uploads(s3_lab.target_s3, target_bucket), "the crash should have left a multipart upload"
    assert len(keys_in(s3_lab.target_s3, target_bucket)) < len(granted_dataset.keys)

    result = copy(s3_lab, granted_dataset.bucket, target_bucket)
    assert result["aborted_uploads"] >= 1
    assert result["objects"]["skipped"] > 0 and result["failures"] == []
    assert open_uploads(s3_lab.target_s3, target_bucket) == []
    assert_same_objects(s3_lab, granted_dataset.bucket, target_bucket, granted_dataset.keys)


def test_source_changed_during_a_multipart_copy_fails_only_that_object(s3_lab):
    source_bucket = unique("cutover-src-moving")
    keys = write_dataset(s3_lab, source_bucket, small_count=5)
    s3_lab.grant_target_read(source_bucket)
    target_bucket = unique("cutover-dst-moving")
    target = s3_lab.fresh_target_session()
    changed = []

    def change_source_once(params, **_):
        if not changed and params.get("Key") == MULTIPART_KEY:
            changed.append(1)
            s3_lab.source_s3.put_object(Bucket=source_bucket, Key=MULTIPART_KEY, Body=b"replaced mid-copy")

    target.session.events.register("before-parameter-build.s3.UploadPartCopy", change_source_once)
    result = copy(s3_lab, source_bucket, target_bucket, session=target, concurrency=1)
    assert [failure["key"] for failure in result["failures"]] == [MULTIPART_KEY]
    assert "changed during the copy" in result["failures"][0]["reason"]
    assert result["objects"]["copied"] == len(keys) - 1
    assert MULTIPART_KEY not in keys_in(s3_lab.target_s3, target_bucket)
    assert open_uploads(s3_lab.target_s3, target_bucket) == []

    rerun = copy(s3_lab, source_bucket, target_bucket)
    assert rerun["objects"]["copied"] == 1
    assert_same_objects(s3_lab, source_bucket, target_bucket, keys)


def test_bucket_name_taken_in_another_account_fails_before_copying(s3_lab, granted_dataset):
    taken = unique("cutover-taken")
    s3_lab.other_s3.create_bucket(Bucket=taken)
    target = s3_lab.fresh_target_session()
    counter = WriteCounter(target)
    with pytest.raises(TargetBucketTaken) as error:
        copy(s3_lab, granted_dataset.bucket, taken, session=target)
    message = str(error.value)
    assert "target.bucket" in message and "S3 bucket names are global" in message and "s3_bucket_map" in message
    assert [name for name in counter.writes if name != "CreateBucket"] == []
    assert keys_in(s3_lab.other_s3, taken) == []
    names = [bucket["Name"] for bucket in s3_lab.target_s3.list_buckets()["Buckets"]]
    assert taken not in names


def test_missing_target_bucket_with_create_bucket_false_is_refused(s3_lab, granted_dataset):
    target_bucket = unique("cutover-dst-absent")
    with pytest.raises(S3CopyError, match="target.create_bucket"):
        copy(s3_lab, granted_dataset.bucket, target_bucket, target_side={"create_bucket": False})
    assert target_bucket not in [bucket["Name"] for bucket in s3_lab.target_s3.list_buckets()["Buckets"]]


def test_delete_extra_removes_only_selected_target_objects_the_source_lacks(s3_lab, granted_dataset):
    target_bucket = unique("cutover-dst-extra")
    s3_lab.target_s3.create_bucket(Bucket=target_bucket)
    s3_lab.target_s3.put_object(Bucket=target_bucket, Key="copy/reports/stale.csv", Body=b"gone at the source")
    s3_lab.target_s3.put_object(Bucket=target_bucket, Key="copy/other/keep.txt", Body=b"not selected")
    s3_lab.target_s3.put_object(Bucket=target_bucket, Key="outside/keep.txt", Body=b"outside the prefix")
    result = copy(s3_lab, granted_dataset.bucket, target_bucket, target_side={"prefix": "copy/"},
                  include=["reports/*"], delete_extra=True)
    assert result["objects"]["deleted"] == 1 and result["objects"]["copied"] == 2
    assert keys_in(s3_lab.target_s3, target_bucket) == sorted(
        ["copy/other/keep.txt", "outside/keep.txt", "copy/reports/q1 summary.csv",
         "copy/reports/2024 Q2/売上 レポート.csv"])


def test_progress_file_reports_objects_bytes_rate_and_eta(s3_lab, granted_dataset, tmp_path):
    progress = tmp_path / "progress.jsonl"
    target_bucket = unique("cutover-dst-progress")
    copy(s3_lab, granted_dataset.bucket, target_bucket, progress_file=str(progress), include=["big/*"])
    lines = [json.loads(line) for line in progress.read_text().splitlines()]
    assert lines[0]["phase"] == "start" and lines[-1]["phase"] == "done"
    last = lines[-1]
    assert last["objects_done"] == last["objects_total"] == 2
    assert last["bytes_done"] == last["bytes_total"] > 10 * 1024 * 1024
    assert {"rate_mib_s", "eta_s", "elapsed_s"} <= set(last)


def test_module_check_mode_reports_the_plan_and_writes_nothing(s3_lab, granted_dataset, ansible_module):
    target_bucket = unique("cutover-dst-check")
    args = {"source": {"role_arn": s3_lab.source_options["role_arn"], "bucket": granted_dataset.bucket},
            "target": {"role_arn": s3_lab.target_options["role_arn"], "bucket": target_bucket},
            "include": ["reports/*", "big/*"], **COPY_SETTINGS}
    result = ansible_module("s3_cross_account_copy", args, check=True, diff=True)
    assert result.get("failed") is not True, result.get("msg")
    assert result["changed"] is True
    assert result["plan"]["create_bucket"] is True and result["plan"]["copy"] == 4
    assert result["plan"]["bytes_to_copy"] > 17 * 1024 * 1024
    assert "big/weights-a.bin" in result["diff"]["after"]
    assert result["requests"]["writes"] == {"source": 0, "target": 0}
    assert target_bucket not in [bucket["Name"] for bucket in s3_lab.target_s3.list_buckets()["Buckets"]]

    result = ansible_module("s3_cross_account_copy", args)
    assert result.get("failed") is not True, result.get("msg")
    assert result["changed"] is True and result["objects"]["copied"] == 4
    assert result["method_used"]["server_side"] == 4 and result["throughput_mib_s"] > 0
    assert_same_objects(s3_lab, granted_dataset.bucket, target_bucket,
                        [key for key in granted_dataset.keys if key.startswith(("reports/", "big/"))])

    result = ansible_module("s3_cross_account_copy", args)
    assert result["changed"] is False and result["requests"]["writes"]["target"] == 0


def test_module_refuses_same_bucket_with_overlapping_prefixes(s3_lab, granted_dataset, ansible_module):
    before = keys_in(s3_lab.source_s3, granted_dataset.bucket)
    result = ansible_module("s3_cross_account_copy", {
        "source": {"role_arn": s3_lab.source_options["role_arn"], "bucket": granted_dataset.bucket},
        "target": {"role_arn": s3_lab.source_options["role_arn"], "bucket": granted_dataset.bucket,
                   "prefix": "models/"}})
    assert result["failed"] is True
    assert "same bucket" in result["msg"] and "target.bucket" in result["msg"]
    assert result["side"] == "target" and result["option"] == "bucket"
    assert keys_in(s3_lab.source_s3, granted_dataset.bucket) == before


def test_module_reports_failed_objects_and_fails_after_copying_the_rest(s3_lab, dataset, ansible_module):
    target_bucket = unique("cutover-dst-partial")
    result = ansible_module("s3_cross_account_copy", {
        "source": {"role_arn": s3_lab.source_options["role_arn"], "bucket": dataset.bucket},
        "target": {"role_arn": s3_lab.target_options["role_arn"], "bucket": target_bucket},
        "method": "server_side", "include": ["reports/*"]})
    assert result["failed"] is True
    assert result["objects"]["failed"] == 2 and len(result["failures"]) == 2
    assert "in the source bucket policy" in result["msg"]
