"""The planning half of s3_cross_account_copy: options, shards, parts, what to copy/skip/delete. No server."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest

from ansible_collections.cutover.migration.plugins.module_utils.s3_copy import (
    GIB,
    MAX_PARTS,
    MIB,
    CopyOptions,
    ObjectState,
    S3CopyError,
    Shard,
    answer_proves_copy,
    build_options,
    copies_in_one_request,
    memory_slots,
    parse_metadata,
    parse_size,
    part_ranges,
    plan_copy,
    render_plan,
    shard_of,
    uses_multipart,
)


def options(**settings) -> CopyOptions:
    source = {"bucket": "models-prod", "prefix": settings.pop("source_prefix", "")}
    target = {"bucket": "models-prod-222222222222", "prefix": settings.pop("target_prefix", "")}
    return build_options(source, target, **settings)


def obj(key: str, size: int = 10, etag: str = '"aaa"') -> ObjectState:
    return ObjectState(relative_key=key, size=size, etag=etag)


# ---- options --------------------------------------------------------------------------------------

def test_same_bucket_with_overlapping_prefixes_is_refused_naming_target_bucket():
    with pytest.raises(S3CopyError) as error:
        build_options({"bucket": "models", "prefix": "v1/"}, {"bucket": "models", "prefix": "v1/copy/"})
    assert error.value.side == "target" and error.value.option == "bucket"
    assert "same bucket" in str(error.value) and "Set target.bucket" in str(error.value)


def test_same_bucket_with_both_prefixes_empty_is_refused():
    with pytest.raises(S3CopyError, match="overlapping"):
        build_options({"bucket": "models"}, {"bucket": "models"})


def test_same_bucket_with_disjoint_prefixes_is_allowed():
    assert build_options({"bucket": "models", "prefix": "old/"}, {"bucket": "models", "prefix": "new/"}).target_prefix == "new/"


@pytest.mark.parametrize("value, expected", [(5242880, 5 * MIB), ("64MiB", 64 * MIB), ("64M", 64 * MIB),
                                             ("5 GB", 5 * GIB), ("1.5GiB", int(1.5 * GIB)), ("8388608", 8 * MIB)])
def test_sizes_are_read_in_bytes_or_binary_units(value, expected):
    assert parse_size(value, "part_size") == expected


@pytest.mark.parametrize("value", ["lots", True, "64 parsecs"])
def test_a_size_that_is_not_one_names_the_option(value):
    with pytest.raises(S3CopyError, match="part_size"):
        parse_size(value, "part_size")


def test_part_size_below_the_s3_minimum_is_refused():
    with pytest.raises(S3CopyError, match="part_size: .* 5MiB to 5GiB"):
        options(part_size="4MiB")


def test_threshold_above_five_gib_is_refused():
    with pytest.raises(S3CopyError, match="multipart_threshold"):
        options(multipart_threshold="6GiB")


@pytest.mark.parametrize("shard", [{"index": 2, "count": 2}, {"index": -1, "count": 2}, {"index": 0, "count": 0},
                                   {"index": 0}])
def test_a_shard_outside_its_count_is_refused(shard):
    with pytest.raises(S3CopyError, match="shard"):
        options(shard=shard)


def test_unknown_method_and_metadata_names_are_refused():
    with pytest.raises(S3CopyError, match="method"):
        options(method="rsync")
    with pytest.raises(S3CopyError, match="metadata: 'acl'"):
        options(metadata=["acl"])


def test_metadata_defaults_to_everything_and_accepts_booleans_and_lists():
    assert parse_metadata(None) == parse_metadata(["all"]) == parse_metadata(True)
    assert parse_metadata(False) == parse_metadata("none") == frozenset()
    assert parse_metadata(["content_type", "tags"]) == {"content_type", "tags"}


def test_leading_slash_in_a_prefix_is_refused_with_the_fix():
    with pytest.raises(S3CopyError, match="'models/'"):
        build_options({"bucket": "a", "prefix": "/models/"}, {"bucket": "b"})


# ---- shards, parts --------------------------------------------------------------------------------

def test_shards_split_keys_into_disjoint_sets_that_cover_everything():
    keys = [f"models/v{number}/weights {number}.bin" for number in range(2000)]
    shards = [Shard(index, 3) for index in range(3)]
    chosen = [[key for key in keys if shard.holds(key)] for shard in shards]
    assert sorted(sum(chosen, [])) == sorted(keys)
    assert all(400 < len(part) < 900 for part in chosen)


def test_shard_of_a_key_is_stable_across_runs_and_hosts():
    # A fixed value (SHA-256 of the key): the shard must not depend on PYTHONHASHSEED or the Python version.
    assert shard_of("a", 1000) == int.from_bytes(bytes.fromhex("ca978112ca1bbdca"), "big") % 1000


def test_parts_cover_the_object_exactly():
    ranges = part_ranges(11 * MIB + 3, 5 * MIB)
    assert ranges == [(1, 0, 5 * MIB - 1), (2, 5 * MIB, 10 * MIB - 1), (3, 10 * MIB, 11 * MIB + 2)]


def test_an_object_too_big_for_10000_parts_gets_larger_parts():
    size = 5 * 1024 * GIB  # 5 TiB, the S3 maximum
    ranges = part_ranges(size, 64 * MIB)
    assert len(ranges) <= MAX_PARTS
    assert ranges[-1][2] == size - 1
    assert all((last - first + 1) % MIB == 0 for _unused, first, last in ranges[:-1])


def test_objects_over_five_gib_are_copied_in_parts_whatever_the_threshold():
    settings = options(multipart_threshold="5GiB")
    assert uses_multipart(5 * GIB + 1, settings, "server_side")
    assert not uses_multipart(5 * GIB, settings, "server_side")


def test_streamed_objects_go_whole_only_while_they_fit_the_memory_bound():
    # concurrency x part_size = 4 x 8 MiB: an object up to 32 MiB is held whole (one GET, one PUT).
    settings = options(part_size="8MiB", multipart_threshold="256MiB", concurrency=4)
    assert not uses_multipart(8 * MIB + 1, settings, "stream")
    assert memory_slots(8 * MIB + 1, settings) == 2
    assert not uses_multipart(32 * MIB, settings, "stream") and memory_slots(32 * MIB, settings) == 4
    assert uses_multipart(32 * MIB + 1, settings, "stream")
    assert not uses_multipart(32 * MIB + 1, settings, "server_side")
    # Over the threshold both methods go in parts, whatever the memory bound.
    wide = options(part_size="8MiB", multipart_threshold="16MiB", concurrency=16)
    assert uses_multipart(16 * MIB + 1, wide, "stream") and uses_multipart(16 * MIB + 1, wide, "server_side")
    assert memory_slots(0, wide) == 1


def test_one_copy_request_only_where_the_target_etag_will_equal_the_source_etag():
    settings = options(part_size="8MiB", multipart_threshold="16MiB")
    single = obj("a.bin", 64 * 1024, '"9e107d9d372bb6826bd81d3542a419d6"')
    assert copies_in_one_request(single, settings)
    # A multipart source: CopyObject would give the target an MD5 ETag, so the source ETag is recorded.
    assert not copies_in_one_request(obj("a.bin", 64 * 1024, '"9e107d9d372bb6826bd81d3542a419d6-2"'), settings)
    # Copied in parts: the target ETag depends on the part size.
    assert not copies_in_one_request(obj("a.bin", 16 * MIB + 1, '"9e107d9d372bb6826bd81d3542a419d6"'), settings)
    # SSE-KMS ETags are no MD5.
    assert not copies_in_one_request(single, dataclasses.replace(options(), kms_key_id="alias/migration"))
    # MetadataDirective COPY copies every header: narrowing what is kept needs REPLACE.
    assert not copies_in_one_request(single, options(metadata=["content_type", "user", "tags"]))
    assert copies_in_one_request(single, options(metadata=["content_type", "cache_control", "content_encoding",
                                                           "content_disposition", "content_language", "expires",
                                                           "user"]))


def test_a_write_answered_with_the_source_etag_proves_the_copy():
    source = obj("a.bin", 10, '"9e107d9d372bb6826bd81d3542a419d6"')
    assert answer_proves_copy(source, "9e107d9d372bb6826bd81d3542a419d6")
    assert answer_proves_copy(source, '"9e107d9d372bb6826bd81d3542a419d6"')
    assert not answer_proves_copy(source, '"0cc175b9c0f1b6a831c399e269772661"')
    assert not answer_proves_copy(source, None)


# ---- the plan -------------------------------------------------------------------------------------

def test_missing_objects_are_copied_and_same_etag_and_size_are_skipped():
    plan = plan_copy(options(), [obj("a"), obj("b"), obj("c", 0, '"d41d8cd98f00b204e9800998ecf8427e"')],
                     [obj("a")])
    assert [item.relative_key for item in plan.copies] == ["b", "c"]
    assert plan.skipped == ("a",) and plan.bytes_to_copy == 10 and plan.bytes_to_skip == 10


def test_a_different_multipart_etag_with_the_recorded_source_etag_is_skipped():
    source = [obj("weights.bin", 11 * MIB, '"aaa-2"')]
    target = [obj("weights.bin", 11 * MIB, '"bbb-3"')]
    first = plan_copy(options(), source, target)
    assert first.needs_source_etag == ("weights.bin",)
    final = plan_copy(options(), source, target, {"weights.bin": "aaa-2"})
    assert final.skipped == ("weights.bin",) and final.copies == ()


def test_an_object_changed_at_the_source_is_copied_again():
    plan = plan_copy(options(), [obj("a", 10, '"new"'), obj("b", 11)], [obj("a", 10, '"old"'), obj("b", 10)],
                     {"a": "old"})
    assert [(item.relative_key, item.reason) for item in plan.copies] == [("a", "changed"), ("b", "changed")]


def test_include_exclude_and_shard_select_keys_below_the_prefix():
    settings = options(include=["models/*"], exclude=["*.tmp"], shard={"index": 0, "count": 1})
    plan = plan_copy(settings, [obj("models/a.bin"), obj("models/b.tmp"), obj("logs/c")], [])
    assert [item.relative_key for item in plan.copies] == ["models/a.bin"]
    assert plan.source_count == 1


def test_delete_extra_deletes_only_selected_target_objects():
    settings = options(include=["models/*"], delete_extra=True)
    plan = plan_copy(settings, [obj("models/a")], [obj("models/a"), obj("models/gone"), obj("logs/keep")])
    assert plan.deletes == ("models/gone",)
    assert plan_copy(options(), [obj("a")], [obj("b")]).deletes == ()


def test_a_missing_target_bucket_is_planned_for_creation():
    plan = plan_copy(options(), [obj("a")], [], bucket_exists=False)
    assert plan.create_bucket and plan.changes and plan.summary()["copy"] == 1


def test_the_rendered_plan_names_source_and_target_keys():
    settings = options(source_prefix="v1/", target_prefix="models/v1/", delete_extra=True)
    plan = plan_copy(settings, [obj("weights.bin")], [obj("old.bin")])
    diff = render_plan(plan, settings)
    assert "copy s3://models-prod/v1/weights.bin -> s3://models-prod-222222222222/models/v1/weights.bin" in diff["after"]
    assert "delete s3://models-prod-222222222222/models/v1/old.bin" in diff["after"]


# ---- the lab's bucket-policy rule (tests/lab/moto_patches/s3_cross_account.py), pure part --------

def _lab_patch():
    path = Path(__file__).resolve().parents[1] / "lab" / "moto_patches" / "s3_cross_account.py"
    spec = importlib.util.spec_from_file_location("lab_s3_cross_account", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ROLE = "arn:aws:iam::222222222222:role/migration"
PRINCIPALS = {"222222222222", "arn:aws:iam::222222222222:root", ROLE,
              "arn:aws:sts::222222222222:assumed-role/migration/run-1"}
CONTEXT = {"aws:securetransport": "false", "aws:principalaccount": "222222222222", "aws:principalarn": ROLE}


def _statement(**fields):
    return {"Effect": "Allow", "Principal": {"AWS": "222222222222"}, "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::src/*", **fields}


@pytest.mark.parametrize("statements, allowed", [
    ([], False),
    ([_statement()], True),
    ([_statement(Principal={"AWS": ROLE})], True),
    ([_statement(Principal={"AWS": "arn:aws:iam::222222222222:role/other"})], False),
    ([_statement(Principal="*")], True),
    ([_statement(Action="s3:Get*")], True),
    ([_statement(Action="s3:PutObject")], False),
    ([_statement(Resource="arn:aws:s3:::src/private/*")], False),
    ([_statement(), _statement(Effect="Deny", Principal="*")], False),
    ([_statement(Condition={"StringEquals": {"aws:PrincipalAccount": "222222222222"}})], True),
    ([_statement(Condition={"StringEquals": {"aws:SourceVpce": "vpce-1"}})], False),
])
def test_lab_cross_account_rule_follows_the_bucket_policy(statements, allowed):
    import json

    document = json.dumps({"Statement": statements}) if statements else None
    assert _lab_patch().policy_allows(document, "s3:GetObject", "arn:aws:s3:::src/models/w.bin", PRINCIPALS,
                                      CONTEXT) is allowed
