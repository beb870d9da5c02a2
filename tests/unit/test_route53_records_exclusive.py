"""route53_records' exclusive option: a simple record set becomes weighted sets (and back) in one batch."""

from __future__ import annotations

import pytest

from ansible_collections.cutover.migration.plugins.module_utils.route53_plan import (
    Alias,
    RecordSet,
    Route53PlanError,
    describe_record_set,
    plan_declared_records,
)

OLD = {"dns_name": "old-1.us-east-1.elb.amazonaws.com", "hosted_zone_id": "ZELB"}
NEW = {"dns_name": "new-1.us-east-1.elb.amazonaws.com", "hosted_zone_id": "ZELB"}


def alias_set(target, **kwargs):
    return RecordSet.build("www.example.com", "A", alias=Alias(target["dns_name"] + ".", target["hosted_zone_id"]), **kwargs)


def weighted(new_weight):
    return [{"name": "www", "type": "A", "set_identifier": "new", "weight": new_weight, "alias": NEW},
            {"name": "www", "type": "A", "set_identifier": "old", "weight": 100 - new_weight, "alias": OLD}]


def test_simple_alias_to_weighted_sets_deletes_the_simple_set_first_in_the_same_batch():
    actual = [alias_set(OLD), RecordSet.build("api.example.com", "A", ttl=60, values=["192.0.2.1"])]
    plan = plan_declared_records(weighted(10), actual, zone_name="example.com", zone_id="Z1", exclusive=True)
    assert [(change.action, change.record.set_identifier) for change in plan.changes] == [
        ("DELETE", None), ("CREATE", "new"), ("CREATE", "old")]
    assert plan.changes[1].describe()["weight"] == 10 and plan.changes[2].describe()["weight"] == 90
    # Nothing of another name is touched.
    assert all(change.record.name == "www.example.com." for change in plan.changes)


def test_without_exclusive_a_mixed_routing_batch_is_refused_before_any_write():
    with pytest.raises(Route53PlanError, match="exclusive: true") as error:
        plan_declared_records(weighted(10), [alias_set(OLD)], zone_name="example.com", zone_id="Z1")
    assert error.value.option == "exclusive" and error.value.records == ["www.example.com. A"]


def test_next_step_only_upserts_the_weights_and_a_rerun_plans_nothing():
    actual = [alias_set(NEW, set_identifier="new", routing={"Weight": 10}),
              alias_set(OLD, set_identifier="old", routing={"Weight": 90})]
    plan = plan_declared_records(weighted(50), actual, zone_name="example.com", zone_id="Z1", exclusive=True)
    assert [(change.action, change.record.set_identifier) for change in plan.changes] == [("UPSERT", "new"), ("UPSERT", "old")]
    done = [alias_set(NEW, set_identifier="new", routing={"Weight": 50}),
            alias_set(OLD, set_identifier="old", routing={"Weight": 50})]
    assert plan_declared_records(weighted(50), done, zone_name="example.com", zone_id="Z1", exclusive=True).changes == ()


def test_final_step_back_to_one_simple_alias_deletes_both_weighted_sets():
    actual = [alias_set(NEW, set_identifier="new", routing={"Weight": 50}),
              alias_set(OLD, set_identifier="old", routing={"Weight": 50})]
    declared = [{"name": "www", "type": "A", "alias": NEW}]
    plan = plan_declared_records(declared, actual, zone_name="example.com", zone_id="Z1", exclusive=True)
    assert [(change.action, change.record.set_identifier) for change in plan.changes] == [
        ("DELETE", "new"), ("DELETE", "old"), ("CREATE", None)]
    with pytest.raises(Route53PlanError, match="www.example.com. A new"):
        plan_declared_records(declared, actual, zone_name="example.com", zone_id="Z1")


def test_exclusive_deletes_other_set_identifiers_of_the_same_name_and_type_only():
    actual = [alias_set(NEW, set_identifier="new", routing={"Weight": 50}),
              alias_set(OLD, set_identifier="old", routing={"Weight": 50}),
              alias_set(OLD, set_identifier="canary", routing={"Weight": 5}),
              RecordSet.build("www.example.com", "AAAA", ttl=60, values=["2001:db8::1"])]
    plan = plan_declared_records(weighted(100), actual, zone_name="example.com", zone_id="Z1", exclusive=True)
    assert [(change.action, change.record.set_identifier) for change in plan.changes] == [
        ("DELETE", "canary"), ("UPSERT", "new"), ("UPSERT", "old")]


def test_record_sets_are_described_in_the_shape_of_the_records_option():
    described = describe_record_set(alias_set(NEW, set_identifier="new", routing={"Weight": 10}))
    assert described == {"name": "www.example.com.", "type": "A", "set_identifier": "new", "weight": 10,
                         "alias": {"dns_name": "new-1.us-east-1.elb.amazonaws.com.", "hosted_zone_id": "ZELB",
                                   "evaluate_target_health": False}}
