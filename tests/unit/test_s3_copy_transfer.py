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
