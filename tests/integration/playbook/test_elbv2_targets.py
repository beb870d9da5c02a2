"""cutover.migration.elbv2_targets against the lab's moto: put hosts into and out of service, from real state."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from playbook_lab import account_session, target_group_members

from ansible_collections.cutover.migration.plugins.module_utils.elbv2_targets import manage_targets

pytestmark = pytest.mark.timeout(300)

WRITE_CALLS = {"RegisterTargets", "DeregisterTargets", "ModifyTargetGroup", "DeleteTargetGroup"}


@pytest.fixture
def web_group(lab):
    """A new account's load balancer forwarding to an empty ``ip`` target group, under unique names."""
    session = account_session(lab["LAB_ACCOUNT_NEW"])
    ec2, elbv2 = session.client("ec2"), session.client("elbv2")
    name = f"tg-{uuid.uuid4().hex[:10]}"
    vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.30.{n}.0/24", AvailabilityZone=f"us-east-1{zone}")["Subnet"]["SubnetId"]
               for n, zone in ((1, "a"), (2, "b"))]
    balancer = elbv2.create_load_balancer(Name=name, Subnets=subnets, Type="application", Scheme="internet-facing")["LoadBalancers"][0]
    group = elbv2.create_target_group(Name=name, Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="ip",
                                      HealthCheckPath="/health")["TargetGroups"][0]
    elbv2.create_listener(LoadBalancerArn=balancer["LoadBalancerArn"], Protocol="HTTP", Port=80,
                          DefaultActions=[{"Type": "forward", "TargetGroupArn": group["TargetGroupArn"]}])
    yield {"name": name, "arn": group["TargetGroupArn"], "balancer": balancer,
           "account": {"role_arn": f"arn:aws:iam::{lab['LAB_ACCOUNT_NEW']}:role/elbv2-test"}, "account_id": lab["LAB_ACCOUNT_NEW"]}
    elbv2.delete_load_balancer(LoadBalancerArn=balancer["LoadBalancerArn"])
    elbv2.delete_target_group(TargetGroupArn=group["TargetGroupArn"])


def counting_client(account_id: str):
    """An elbv2 client of the account and a Counter of the API operations it sends."""
    client = account_session(account_id).client("elbv2")
    calls: Counter[str] = Counter()
    client.meta.events.register("before-call.*", lambda model, **unused: calls.update([model.name]))
    return client, calls


def test_registers_the_new_hosts_and_reports_the_load_balancer_for_the_alias(web_group, ansible_module):
    result = ansible_module("elbv2_targets", {"account": web_group["account"], "target_group_name": web_group["name"],
                                              "targets": [{"id": "127.0.59.1"}, {"id": "127.0.59.2", "port": 8081}]})

    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True
    assert sorted(result["registered"]) == ["127.0.59.1:8080", "127.0.59.2:8081"]
    assert target_group_members(web_group["account_id"], web_group["name"]) == {"127.0.59.1:8080", "127.0.59.2:8081"}
    assert result["load_balancers"] == [{"name": web_group["name"], "arn": web_group["balancer"]["LoadBalancerArn"],
                                         "dns_name": web_group["balancer"]["DNSName"],
                                         "canonical_hosted_zone_id": web_group["balancer"]["CanonicalHostedZoneId"]}]


def test_second_run_changes_nothing_and_makes_no_write_call(web_group, ansible_module):
    args = {"account": web_group["account"], "target_group_name": web_group["name"], "targets": [{"id": "127.0.59.3", "port": 8080}]}
    assert ansible_module("elbv2_targets", args)["changed"] is True

    again = ansible_module("elbv2_targets", args)
    assert again["changed"] is False and again["registered"] == [] and again["unchanged"] == ["127.0.59.3:8080"]

    client, calls = counting_client(web_group["account_id"])
    core = manage_targets(client, {"target_group_name": web_group["name"], "targets": [{"id": "127.0.59.3", "port": 8080}]})
    assert core["changed"] is False
    assert not WRITE_CALLS & set(calls), calls


def test_deregister_removes_only_the_listed_hosts_and_is_idempotent(web_group, ansible_module):
    base = {"account": web_group["account"], "target_group_name": web_group["name"]}
    ansible_module("elbv2_targets", {**base, "targets": [{"id": "127.0.59.4"}, {"id": "127.0.59.5"}]})

    removed = ansible_module("elbv2_targets", {**base, "targets": [{"id": "127.0.59.4"}], "state": "absent"})
    assert removed["changed"] is True and removed["deregistered"] == ["127.0.59.4:8080"]
    assert target_group_members(web_group["account_id"], web_group["name"]) == {"127.0.59.5:8080"}

    client, calls = counting_client(web_group["account_id"])
    again = manage_targets(client, {"target_group_name": web_group["name"], "targets": [{"id": "127.0.59.4"}], "state": "absent"})
    assert again["changed"] is False and again["deregistered"] == []
    assert not WRITE_CALLS & set(calls), calls


def test_rerun_after_a_partial_registration_adds_only_what_is_missing(web_group, ansible_module):
    # As if a first run died after registering one of two hosts.
    account_session(web_group["account_id"]).client("elbv2").register_targets(
        TargetGroupArn=web_group["arn"], Targets=[{"Id": "127.0.59.6", "Port": 8080}])

    result = ansible_module("elbv2_targets", {"account": web_group["account"], "target_group_arn": web_group["arn"],
                                              "targets": [{"id": "127.0.59.6"}, {"id": "127.0.59.7"}]})

    assert result["registered"] == ["127.0.59.7:8080"] and result["unchanged"] == ["127.0.59.6:8080"]
    assert target_group_members(web_group["account_id"], web_group["name"]) == {"127.0.59.6:8080", "127.0.59.7:8080"}


def test_purge_deregisters_every_host_not_listed(web_group, ansible_module):
    base = {"account": web_group["account"], "target_group_name": web_group["name"]}
    ansible_module("elbv2_targets", {**base, "targets": [{"id": "127.0.59.8"}, {"id": "127.0.59.9"}]})

    result = ansible_module("elbv2_targets", {**base, "targets": [{"id": "127.0.59.9"}], "purge": True})

    assert result["deregistered"] == ["127.0.59.8:8080"]
    assert target_group_members(web_group["account_id"], web_group["name"]) == {"127.0.59.9:8080"}


def test_check_mode_reports_the_plan_and_diff_and_writes_nothing(web_group, ansible_module):
    base = {"account": web_group["account"], "target_group_name": web_group["name"]}
    ansible_module("elbv2_targets", {**base, "targets": [{"id": "127.0.59.10"}]})

    planned = ansible_module("elbv2_targets", {**base, "targets": [{"id": "127.0.59.11"}], "purge": True}, check=True, diff=True)

    assert planned["changed"] is True
    assert planned["registered"] == ["127.0.59.11:8080"] and planned["deregistered"] == ["127.0.59.10:8080"]
    assert planned["diff"] == {"before": {"targets": ["127.0.59.10:8080"]}, "after": {"targets": ["127.0.59.11:8080"]}}
    assert target_group_members(web_group["account_id"], web_group["name"]) == {"127.0.59.10:8080"}


def test_missing_target_group_fails_naming_the_option_and_writes_nothing(web_group, ansible_module):
    result = ansible_module("elbv2_targets", {"account": web_group["account"], "target_group_name": f"{web_group['name']}-typo",
                                              "targets": [{"id": "127.0.59.12"}]})

    assert result["failed"] is True
    assert result["option"] == "target_group_name" and result["side"] == "account"
    assert f"target group {web_group['name']}-typo does not exist in this account" in result["msg"]
    assert "fix target_group_name in the inventory" in result["msg"]
    assert target_group_members(web_group["account_id"], web_group["name"]) == set()


def test_empty_target_id_fails_naming_the_option_and_writes_nothing(web_group, ansible_module):
    result = ansible_module("elbv2_targets", {"account": web_group["account"], "target_group_name": web_group["name"],
                                              "targets": [{"id": "127.0.59.13"}, {"id": " "}]})

    assert result["failed"] is True and result["option"] == "targets"
    assert "targets[1].id is empty" in result["msg"]
    assert target_group_members(web_group["account_id"], web_group["name"]) == set()


def test_name_and_arn_together_are_refused_before_any_call(web_group, ansible_module):
    result = ansible_module("elbv2_targets", {"account": web_group["account"], "target_group_name": web_group["name"],
                                              "target_group_arn": web_group["arn"], "targets": [{"id": "127.0.59.14"}]})

    assert result["failed"] is True
    assert "target_group_name|target_group_arn" in result["msg"]
    assert target_group_members(web_group["account_id"], web_group["name"]) == set()
