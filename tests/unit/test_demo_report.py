"""The demo's judgement: what counts as lost, rejected, and failed outside the freeze."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))

import demo_report  # noqa: E402

WINDOWS = {"web": (10.0, 20.0), "dns": (30.0, 40.0), "db": (50.0, 60.0)}


def read(t, side="old", status=200):
    return {"t": t, "kind": "read", "side": side, "status": status, "error": None}


def write(t, status=201, order_id=None, side="old"):
    return {"t": t, "kind": "write", "side": side, "status": status, "error": None, "id": order_id}


def test_freeze_window_spans_the_first_to_last_rejected_write():
    judgement = demo_report.judge([write(52.0, 503), write(53.5, 503), write(55.0, 201, 7)], WINDOWS)
    assert judgement.freeze_window == (52.0, 53.5)
    assert judgement.rejected_writes == 2
    assert judgement.freeze_s == 1.5


def test_a_failed_read_inside_the_freeze_is_not_counted_as_outside():
    traffic = [write(52.0, 503), read(52.5, status=502), write(54.0, 503), read(58.0, status=None)]
    traffic[-1]["error"] = "connection refused"
    judgement = demo_report.judge(traffic, WINDOWS)
    assert judgement.failed_reads == 2
    assert judgement.failed_reads_outside_freeze == 1
    assert judgement.failures_by_stage["db"] == 4  # two rejected writes and two failed reads


def test_new_side_before_the_web_stage_and_old_side_after_cache_clear_are_counted():
    traffic = [read(5.0, side="new"), read(15.0, side="new"), read(45.0, side="old"), read(35.0, side="old")]
    judgement = demo_report.judge(traffic, WINDOWS, cache_clear_at=40.0)
    assert judgement.served_by_new_before_web == 1
    assert judgement.served_by_old_after_cache_clear == 1


def test_acknowledged_ids_are_the_distinct_ids_of_successful_writes():
    traffic = [write(1.0, 201, 5), write(2.0, 201, 3), write(3.0, 503, None), write(4.0, 201, 5)]
    assert demo_report.acknowledged_ids(traffic) == [3, 5]


def test_stage_windows_cover_every_run_of_a_role():
    log = [{"t": 1.0, "event": "task_start", "role": "cutover.migration.web_stage"},
           {"t": 4.0, "event": "task_ok", "role": "web_stage"},
           {"t": 9.0, "event": "task_start", "role": "web_stage"},
           {"t": 2.0, "event": "task_start", "role": "something_else"}]
    assert demo_report.stage_windows(log) == {"web": (1.0, 9.0)}


def test_timeline_is_drawn_to_a_png(tmp_path):
    traffic = [read(float(t), side="old" if t < 30 else "new") for t in range(60)] + [write(52.0, 503)]
    demo_report.render_timeline(traffic, WINDOWS, tmp_path / "timeline.png", (52.0, 52.0))
    assert (tmp_path / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_freeze_budget_sums_the_final_delta_and_the_endpoint_flip_with_its_wait():
    log = [
        {"t": 100.0, "event": "task_start", "role": "cutover.migration.db_stage", "task": "db_stage : Freeze the source, apply the final delta"},
        {"t": 103.5, "event": "task_ok", "role": "cutover.migration.db_stage", "task": "db_stage : Freeze the source, apply the final delta"},
        {"t": 103.6, "event": "task_start", "role": "cutover.migration.db_stage", "task": "db_stage : Point the DB endpoint name at the target"},
        {"t": 104.1, "event": "task_ok", "role": "cutover.migration.db_stage", "task": "db_stage : Point the DB endpoint name at the target"},
        {"t": 104.2, "event": "task_start", "role": "cutover.migration.db_stage", "task": "db_stage : Wait until every server and resolver"},
        {"t": 109.2, "event": "task_ok", "role": "cutover.migration.db_stage", "task": "db_stage : Wait until every server and resolver"},
        {"t": 1.0, "event": "task_start", "role": "cutover.migration.dns_stage", "task": "dns_stage : Wait until every server"},
        {"t": 61.0, "event": "task_ok", "role": "cutover.migration.dns_stage", "task": "dns_stage : Wait until every server"},
    ]
    final_delta, flip = demo_report.freeze_budget(log)
    assert round(final_delta, 2) == 3.5
    assert round(flip, 2) == 5.5
