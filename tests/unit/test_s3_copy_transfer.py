"""Retries and progress lines of the S3 copy (no server: the failures are made up here)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from botocore.exceptions import ClientError, ResponseStreamingError

from ansible_collections.cutover.migration.plugins.module_utils.s3_copy_transfer import (
    MemorySlots,
    Progress,
    encode_tags,
    with_retries,
)


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "UploadPart")


def flaky(failures: list[BaseException]):
    calls = []

    def action():
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "done"

    return action, calls


@pytest.mark.parametrize("failure", [client_error("SlowDown"), client_error("503"), client_error("InternalError"),
                                     ResponseStreamingError(error="connection reset")])
def test_throttling_and_a_broken_body_are_retried(failure):
    action, calls = flaky([failure, failure])
    assert with_retries(action, sleep=lambda _: None) == "done"
    assert len(calls) == 3


def test_a_denied_or_failed_precondition_is_not_retried():
    for code in ("AccessDenied", "PreconditionFailed", "NoSuchKey"):
        action, calls = flaky([client_error(code)])
        with pytest.raises(ClientError):
            with_retries(action, sleep=lambda _: None)
        assert len(calls) == 1


def test_retries_give_up_after_the_last_attempt():
    action, calls = flaky([client_error("SlowDown")] * 10)
    with pytest.raises(ClientError):
        with_retries(action, attempts=3, sleep=lambda _: None)
    assert len(calls) == 3


def test_progress_lines_report_counts_rate_and_eta(tmp_path):
    now = [100.0]
    path = tmp_path / "nested" / "progress.jsonl"
    progress = Progress(str(path), objects_total=4, bytes_total=40 * 1024 * 1024, clock=lambda: now[0])
    now[0] = 102.0
    progress.add_bytes(10 * 1024 * 1024)
    progress.object_done()
    now[0] = 102.5  # within a second of the last line: not written
    progress.object_done(failed=True)
    progress.finish()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["phase"] for line in lines] == ["start", "copy", "done"]
    assert lines[1]["rate_mib_s"] == 5.0 and lines[1]["eta_s"] == 6.0
    assert lines[-1]["objects_done"] == 2 and lines[-1]["objects_failed"] == 1


def test_tags_are_url_encoded_for_the_tagging_header():
    assert encode_tags([{"Key": "owner", "Value": "recommend team"}, {"Key": "a+b", "Value": "x&y"}]) == \
        "owner=recommend+team&a%2Bb=x%26y"


def test_memory_slots_never_hand_out_more_than_their_count_and_serve_in_order():
    slots = MemorySlots(4)
    held = []
    peak = []
    order = []
    lock = threading.Lock()

    def take(name: str, wanted: int) -> None:
        with slots.hold(wanted):
            with lock:
                held.append(wanted)
                peak.append(sum(held))
                order.append(name)
            time.sleep(0.02)
            with lock:
                held.remove(wanted)

    with slots.hold(3):
        # The whole-object request (4) queues first; a later single slot must not overtake it.
        large = threading.Thread(target=take, args=("large", 4))
        large.start()
        time.sleep(0.05)
        small = threading.Thread(target=take, args=("small", 1))
        small.start()
        time.sleep(0.05)
        assert order == []
    large.join()
    small.join()
    assert order == ["large", "small"]
    assert max(peak) <= 4
    # More than the count is capped at the count instead of waiting forever.
    with slots.hold(99):
        pass


class FakeAccount:
    """What s3_client reads from an AccountSession; no request leaves the process (see sent_headers)."""

    def __init__(self, endpoint_url):
        import boto3

        self.session = boto3.session.Session(aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret",
                                             region_name="us-east-1")
        self.region = "us-east-1"
        self.endpoint_url = endpoint_url
        self.config = None


def sent_headers(endpoint_url, calls):
    """Headers of each request the copy's S3 client would send (the send itself is cut short)."""
    from botocore.awsrequest import AWSResponse

    from ansible_collections.cutover.migration.plugins.module_utils.s3_copy_transfer import (
        RequestCounter,
        s3_client,
    )

    class EmptyBody:
        def stream(self, *args, **kwargs):
            yield b""

    client = s3_client(FakeAccount(endpoint_url), 4, RequestCounter())
    seen = []

    def answer(request, **_):
        seen.append({name.lower(): value for name, value in request.headers.items()})
        return AWSResponse(request.url, 200, {}, EmptyBody())

    client.meta.events.register("before-send.s3", answer)
    for call in calls:
        call(client)
    return seen


def test_a_small_body_goes_with_its_headers_a_large_one_waits_for_100_continue():
    seen = sent_headers("http://127.0.0.1:9", [
        lambda client: client.put_object(Bucket="bucket-a", Key="small", Body=b"x" * 65536),
        lambda client: client.upload_part(Bucket="bucket-a", Key="part", UploadId="u", PartNumber=1, Body=b"x" * 100),
        lambda client: client.put_object(Bucket="bucket-a", Key="large", Body=b"x" * (2 * 1024 * 1024)),
    ])
    assert "expect" not in seen[0] and "expect" not in seen[1]
    assert seen[2]["expect"] == b"100-continue"
    # the body's checksum still goes along
    assert all("x-amz-checksum-crc32" in headers for headers in seen)


def test_the_user_agent_is_built_once_per_client():
    import botocore.useragent

    calls = []
    original = botocore.useragent.sanitize_user_agent_string_component

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    botocore.useragent.sanitize_user_agent_string_component = counting
    try:
        seen = sent_headers("http://127.0.0.1:9", [
            lambda client: calls.clear(),
            *[lambda client, number=number: client.put_object(Bucket="bucket-a", Key=f"k{number}", Body=b"x")
              for number in range(3)],
        ])
    finally:
        botocore.useragent.sanitize_user_agent_string_component = original
    assert calls == []
    assert len({headers["user-agent"] for headers in seen}) == 1


@pytest.mark.parametrize("endpoint_url, loopback", [
    ("http://127.0.0.1:9", True), ("http://localhost:9", True), ("http://[::1]:9", True),
    ("https://127.0.0.1:9", False), ("http://10.0.0.1:9", False), ("http://s3.example.com:9", False), (None, False),
])
def test_only_a_loopback_http_endpoint_counts_as_loopback(endpoint_url, loopback):
    from ansible_collections.cutover.migration.plugins.module_utils.s3_copy_transfer import is_loopback

    assert is_loopback(endpoint_url) is loopback


@pytest.mark.parametrize("endpoint_url", ["http://127.0.0.1:9", "http://10.0.0.1:9"])
def test_a_put_body_is_hashed_for_the_signature_over_http_except_on_loopback(endpoint_url):
    import hashlib

    body = b"x" * 10
    seen = sent_headers(endpoint_url, [lambda client: client.put_object(Bucket="bucket-a", Key="k", Body=body)])
    expected = b"UNSIGNED-PAYLOAD" if "127.0.0.1" in endpoint_url else hashlib.sha256(body).hexdigest().encode()
    assert seen[0]["x-amz-content-sha256"] == expected
    assert "x-amz-checksum-crc32" in seen[0]
