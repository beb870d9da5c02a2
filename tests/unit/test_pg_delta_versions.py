"""Row versions (pg_delta/versions.py and the pass planning in run.py): when a recorded baseline
may be trusted, and what a pass records. Pure planning, no server."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.buckets import Buckets
from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.schema import Column, TableSchema
from ansible_collections.cutover.migration.plugins.module_utils.pg_delta import run as pg_run
from ansible_collections.cutover.migration.plugins.module_utils.pg_delta.versions import (
    MAX_OWN_XIDS,
    XID_WINDOW,
    LoneKey,
    SideVersions,
    baseline_problem,
    keys_to_ask,
    lone_keys,
    xid32,
)

THEN = SideVersions(xmin=5_000, next_xid=5_010, relation="16400@5", layout="abc", own=(5_020,))


def test_a_baseline_is_trusted_only_for_the_same_table_layout_and_a_counter_that_moved_forward_a_little():
    assert baseline_problem("source", THEN, SideVersions(6_000, 6_010, "16400@5", "abc")) is None
    assert baseline_problem("source", None, THEN) == "no complete pass has recorded row versions yet"
    assert "recreated" in baseline_problem("target", THEN, SideVersions(6_000, 6_010, "16999@5", "abc"))
    assert "target table's columns" in baseline_problem("target", THEN, SideVersions(6_000, 6_010, "16400@5", "abd"))
    assert "went backwards" in baseline_problem("source", THEN, SideVersions(4_000, 4_100, "16400@5", "abc"))
    far = 5_000 + XID_WINDOW
    assert "transactions ran" in baseline_problem("source", THEN, SideVersions(far - 5, far, "16400@5", "abc"))
    assert baseline_problem("source", THEN, SideVersions(far - 10, far - 1, "16400@5", "abc")) is None


def test_row_headers_hold_the_low_32_bits_and_never_a_special_id():
    assert xid32((3 << 32) + 1234) == 1234
    assert xid32(1 << 32) == 3
    assert xid32(700) == 700


def test_state_round_trip_and_own_transactions_bounded():
    assert SideVersions.from_state(THEN.as_state()) == THEN
    assert SideVersions.from_state({"xmin": 1}) is None          # another version's record: compare all
    assert SideVersions.from_state(None) is None
    grown = THEN.with_own([5_021, 5_020])
    assert grown.own == (5_020, 5_021)
    assert THEN.with_own(range(MAX_OWN_XIDS + 1)).own == ()     # too many to keep: none trusted


def test_keys_new_elsewhere_are_asked_unless_already_hashed_here():
    found = {(1,): "h1", (2,): None}
    assert keys_to_ask(found, [(1,), (2,), (3,)]) == [(2,), (3,)]


SCHEMA = TableSchema(name="public.t", columns=(Column(name="id", data_type="int8", column_type="bigint"),),
                     key=("id",), key_kind="primary")
NOW = (SideVersions(9_000, 9_010, "1@1", "x"), SideVersions(7_000, 7_004, "2@1", "y"))
RECORDED = {"source": SideVersions(8_000, 8_010, "1@1", "x").as_state(),
            "target": SideVersions(6_000, 6_010, "2@1", "y", (6_500,)).as_state()}


def fake_run(trust: bool = True):
    return SimpleNamespace(options=SimpleNamespace(trust_row_versions=trust))


@pytest.mark.parametrize(("progress", "baseline"), [
    ({}, False),                                                   # first pass
    ({"status": "done"}, False),                                   # recorded before row versions
    ({"status": "done", "versions": RECORDED}, True),
])
def test_a_new_pass_takes_the_current_horizons_and_compares_since_the_last_done_pass(progress, baseline):
    versions = pg_run.plan_pass_versions(fake_run(), SCHEMA, progress, NOW)
    assert (versions.source, versions.target) == NOW
    assert (versions.baseline is not None) is baseline
    if baseline:
        assert versions.baseline[1].own == (6_500,)


def test_a_resumed_pass_keeps_the_horizons_and_baseline_of_its_first_attempt():
    began = {"source": SideVersions(8_900, 8_905, "1@1", "x").as_state(),
             "target": SideVersions(6_900, 6_905, "2@1", "y", (6_950,)).as_state()}
    progress = {"status": "in_progress", "versions": began, "baseline": RECORDED}
    versions = pg_run.plan_pass_versions(fake_run(), SCHEMA, progress, NOW)
    assert versions.source.xmin == 8_900 and versions.target.own == (6_950,)
    assert versions.baseline[0].xmin == 8_000
    # A pass that began without row versions records none: its first chunks came before any horizon.
    assert pg_run.plan_pass_versions(fake_run(), SCHEMA, {"status": "in_progress"}, NOW) is None


def test_no_row_versions_when_off_keyless_or_a_server_too_old():
    assert pg_run.plan_pass_versions(fake_run(trust=False), SCHEMA, {}, NOW) is None
    assert pg_run.plan_pass_versions(fake_run(), SCHEMA, {}, (None, NOW[1])) is None
    keyless = TableSchema(name="public.k", columns=SCHEMA.columns, key=(), key_kind="none")
    assert pg_run.plan_pass_versions(fake_run(), keyless, {}, NOW) is None


def test_a_baseline_from_a_changed_table_is_not_used():
    changed = (NOW[0], SideVersions(7_000, 7_004, "2@1", "other layout"))
    versions = pg_run.plan_pass_versions(fake_run(), SCHEMA, {"status": "done", "versions": RECORDED}, changed)
    assert versions.baseline is None and versions.target.layout == "other layout"


def test_each_chunk_records_the_target_transaction_that_commits_it():
    progress = pg_run.PassProgress("public.t", "2026-01-01T00:00:00+00:00",
                                   pg_run.PassVersions(NOW[0], NOW[1], (NOW[0], NOW[1])))
    [(_table, _item, first)] = progress.entries((10,), False, 7_100)
    [(_table, _item, last)] = progress.entries(None, True, 7_101)
    first_value, last_value = pg_run.loads(first), pg_run.loads(last)
    assert first_value["status"] == "in_progress" and first_value["versions"]["target"]["own"] == [7_100]
    assert "baseline" in first_value                               # a resumed pass needs it
    assert last_value["status"] == "done" and last_value["versions"]["target"]["own"] == [7_100, 7_101]
    assert "baseline" not in last_value


def test_lone_keys_name_the_one_key_a_bucket_differs_by():
    # Buckets of 10 keys above 1000: bucket 2 holds 1021..1030.
    buckets = Buckets(count=8, start=1000, width=10)
    source = {(0, 10, 0x51, 1000), (2, 9, 0x1234, 0x0F0F), (3, 10, 7, 99), (4, 1, -77, 1041), (5, 10, 5, 5)}
    target = {(0, 10, 0x51, 1000), (2, 10, 0x1234 ^ -0x7AB, 0x0F0F ^ 1025), (3, 8, 9, 99), (5, 10, 6, 5),
              (6, 1, 33, 1063)}
    found = lone_keys(source, target, [2, 3, 4, 5, 6], buckets)
    # 2: the target holds 1025 more (its hash XORs in as -0x7AB); 4: only the source's 1041;
    # 6: only the target's 1063; 3 differs by two rows, 5 by content of the same count: listed.
    assert found == {2: LoneKey(1025, 1, -0x7AB), 4: LoneKey(1041, 0, -77), 6: LoneKey(1063, 1, 33)}
    # A key XOR outside the bucket cannot be the one key: the bucket is listed.
    assert lone_keys({(2, 9, 1, 5)}, {(2, 10, 2, 5 ^ 3)}, [2], buckets) == {}
    # Hashed buckets (no key XOR in the entries) are never taken.
    assert lone_keys({(2, 9, 1)}, {(2, 10, 2)}, [2], Buckets(count=8)) == {}
