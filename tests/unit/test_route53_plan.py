"""route53_plan: normalisation, diff, ordering and batching, without a server."""

from __future__ import annotations

import pytest

from ansible_collections.cutover.migration.plugins.module_utils.route53_plan import (
    Alias,
    Change,
    CloneOptions,
    RecordSet,
    Route53PlanError,
    batches_within_limits,
    dedupe_record_sets,
    desired_target_records,
    normalise_name,
    normalise_txt,
    plan_declared_records,
    plan_record_changes,
)


def a(name, *values, ttl=300, **kwargs):
    return RecordSet.build(name, "A", ttl=ttl, values=values, **kwargs)


def test_names_are_lower_case_with_trailing_dot_and_wildcards_decoded():
    assert normalise_name("\\052.Apps.Example.COM") == "*.apps.example.com."
    assert normalise_name("www.example.com.") == "www.example.com."


def test_txt_longer_than_255_characters_is_split_the_way_route53_stores_it():
    value = "v=DKIM1; k=rsa; p=" + "A" * 400
    stored = normalise_txt(value)
    assert stored == '"' + value[:255] + '" "' + value[255:] + '"'
    assert normalise_txt(stored) == stored
    assert normalise_txt('"a \\"quoted\\" word"') == '"a \\"quoted\\" word"'


def test_record_read_back_from_route53_equals_the_one_written():
    written = RecordSet.build("*.Example.com", "MX", ttl=300, values=["20 mx2.example.com", "10 MX1.example.com."])
    api = written.to_api()
    api["Name"] = "\\052.example.com."
    api["ResourceRecords"].reverse()
    assert RecordSet.from_api(api) == written


def test_alias_never_carries_a_ttl():
    alias = Alias("my-alb-1.us-east-1.elb.amazonaws.com.", "Z35SXDOTRQ7X7K", True)
    record = RecordSet.from_api({"Name": "www.example.com.", "Type": "A", "TTL": 0, "AliasTarget": alias.to_api()})
    assert record.ttl is None
    assert "TTL" not in record.to_api()


def test_pages_repeating_a_group_with_set_identifiers_are_deduplicated():
    page = [{"Name": "api.example.com.", "Type": "A", "SetIdentifier": str(n), "Weight": n, "TTL": 60,
             "ResourceRecords": [{"Value": f"192.0.2.{n}"}]} for n in range(3)]
    assert len(dedupe_record_sets([page, page[1:]])) == 3


def test_rerun_keeps_a_flipped_record_by_default():
    source = [a("www.example.com", "192.0.2.1")]
    target = [a("www.example.com", "198.51.100.7")]
    plan = plan_record_changes(source, target, zone_name="example.com")
    assert plan.changes == ()
    assert plan.conflicts == ("www.example.com. A",)


def test_on_conflict_overwrite_upserts_and_fail_raises_before_any_change():
    source = [a("www.example.com", "192.0.2.1")]
    target = [a("www.example.com", "198.51.100.7")]
    plan = plan_record_changes(source, target, zone_name="example.com", on_conflict="overwrite")
    assert [change.action for change in plan.changes] == ["UPSERT"]
    with pytest.raises(Route53PlanError, match="on_conflict"):
        plan_record_changes(source, target, zone_name="example.com", on_conflict="fail")


def test_purge_never_deletes_the_apex_ns_and_soa():
    target = [RecordSet.build("example.com", "NS", ttl=172800, values=["ns-1.example.net"]),
              RecordSet.build("example.com", "SOA", ttl=900, values=["ns-1.example.net. h. 1 2 3 4 5"]),
              a("old.example.com", "192.0.2.9")]
    plan = plan_record_changes([], target, zone_name="example.com", purge=True)
    assert plan.deleted == ("old.example.com. A",)


def test_same_zone_aliases_are_rewritten_and_come_after_their_targets():
    source = [
        RecordSet.build("cdn.example.com", "A", alias=Alias("www.example.com.", "ZOLD")),
        RecordSet.build("www.example.com", "A", alias=Alias("example.com.", "ZOLD")),
        RecordSet.build("example.com", "A", alias=Alias("alb-1.us-east-1.elb.amazonaws.com.", "Z35SXDOTRQ7X7K")),
    ]
    desired, *_unused = desired_target_records(source, source_zone_name="example.com", source_zone_id="ZOLD",
                                               target_zone_name="example.com", target_zone_id="ZNEW", options=CloneOptions(),
                                               health_check_ids={})
    plan = plan_record_changes(desired, [], zone_name="example.com")
    assert [change.record.name for change in plan.changes] == ["example.com.", "www.example.com.", "cdn.example.com."]
    assert plan.changes[0].record.alias.hosted_zone_id == "Z35SXDOTRQ7X7K"
    assert plan.changes[2].record.alias.hosted_zone_id == "ZNEW"


def test_max_ttl_caps_and_reports():
    desired, _unused, capped, _unused_2 = desired_target_records(
        [a("www.example.com", "192.0.2.1", ttl=86400), a("api.example.com", "192.0.2.2", ttl=30)],
        source_zone_name="example.com", source_zone_id="Z1", target_zone_name="example.com", target_zone_id="Z2",
        options=CloneOptions(max_ttl=60), health_check_ids={})
    assert {record.name: record.ttl for record in desired} == {"api.example.com.": 30, "www.example.com.": 60}
    assert capped == ["www.example.com. A (86400 -> 60)"]


def test_target_zone_of_another_name_rejects_records_that_do_not_fit():
    with pytest.raises(Route53PlanError, match="target.zone") as error:
        desired_target_records([a("www.example.com", "192.0.2.1")], source_zone_name="example.com",
                               source_zone_id="Z1", target_zone_name="example.org", target_zone_id=None,
                               options=CloneOptions(), health_check_ids={})
    assert error.value.side == "target"


def test_health_checks_fail_names_the_record():
    record = a("api.example.com", "192.0.2.1", set_identifier="p", routing={"Failover": "PRIMARY"},
               health_check_id="hc-1")
    with pytest.raises(Route53PlanError, match="api.example.com. A p"):
        desired_target_records([record], source_zone_name="example.com", source_zone_id="Z1",
                               target_zone_name="example.com", target_zone_id="Z2",
                               options=CloneOptions(health_checks="fail"), health_check_ids={})


def test_ten_thousand_single_value_records_fit_in_ten_requests():
    changes = [Change("CREATE", a(f"host-{n}.example.com", f"10.0.{n // 250}.{n % 250}")) for n in range(10000)]
    batches = batches_within_limits(changes)
    assert len(batches) == 10
    assert [change for batch in batches for change in batch] == changes


def test_upsert_counts_twice_and_characters_limit_batches():
    upserts = [Change("UPSERT", a(f"h{n}.example.com", "10.0.0.1", "10.0.0.2")) for n in range(500)]
    assert [len(batch) for batch in batches_within_limits(upserts)] == [250, 250]
    long_txt = [Change("CREATE", RecordSet.build(f"t{n}.example.com", "TXT", ttl=60, values=["x" * 3000]))
                for n in range(20)]
    assert all(sum(change.character_count() for change in batch) <= 32000 for batch in batches_within_limits(long_txt))


def test_records_ttl_only_keeps_values_and_requires_existing_sets():
    actual = [a("www.example.com", "192.0.2.1", ttl=3600)]
    plan = plan_declared_records([{"name": "www", "type": "A", "ttl": 60}], actual, zone_name="example.com",
                                 zone_id="Z1", ttl_only=True)
    assert plan.changes[0].record == a("www.example.com", "192.0.2.1", ttl=60)
    with pytest.raises(Route53PlanError, match="ttl_only"):
        plan_declared_records([{"name": "api", "type": "A", "ttl": 60}], actual, zone_name="example.com",
                              zone_id="Z1", ttl_only=True)


def test_records_absent_deletes_with_current_values():
    actual = [a("www.example.com", "192.0.2.1")]
    plan = plan_declared_records([{"name": "www.example.com", "type": "A"}], actual, zone_name="example.com",
                                 zone_id="Z1", state="absent")
    assert plan.changes[0].to_api()["ResourceRecordSet"]["ResourceRecords"] == [{"Value": "192.0.2.1"}]


def test_a_simple_source_set_against_weighted_target_sets_is_a_conflict_not_a_create():
    """A weighted shift under way in the target: Route53 would refuse a simple set beside it."""
    simple = RecordSet.build("www.example.com.", "A", ttl=60, values=["192.0.2.1"])
    weighted = [RecordSet.build("www.example.com.", "A", set_identifier=side, routing={"Weight": weight}, ttl=60,
                                values=[address])
                for side, weight, address in (("old", 50, "192.0.2.1"), ("new", 50, "192.0.2.2"))]

    kept = plan_record_changes([simple], weighted, zone_name="example.com.", on_conflict="keep")
    assert kept.changes == () and kept.conflicts == ("www.example.com. A",)

    with pytest.raises(Route53PlanError, match="on_conflict"):
        plan_record_changes([simple], weighted, zone_name="example.com.", on_conflict="fail")

    overwritten = plan_record_changes([simple], weighted, zone_name="example.com.", on_conflict="overwrite", purge=True)
    assert [(change.action, change.record.set_identifier) for change in overwritten.changes] == [
        ("DELETE", "new"), ("DELETE", "old"), ("CREATE", None)]

    back = plan_record_changes(weighted, [simple], zone_name="example.com.", on_conflict="keep")
    assert back.changes == () and len(back.conflicts) == 2
