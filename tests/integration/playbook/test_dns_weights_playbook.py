"""The DNS stage's gradual shift (cutover_dns_weights) against the lab: from the simple alias the seed
creates, through weighted steps, to one simple alias on the new load balancer; resume and rerun."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from playbook_lab import REPO_ROOT, account_session, assert_migrated, authoritative_answer, load_balancer_address, resolve

pytestmark = pytest.mark.timeout(1500)


def weights(*steps: int) -> str:
    return json.dumps({"cutover_dns_weights": list(steps)})


def www_record_sets(world, lab) -> dict:
    """The record sets of www in the new account's zone, by set identifier (None = simple)."""
    route53 = account_session(lab["LAB_ACCOUNT_NEW"]).client("route53")
    zone = next(zone for zone in route53.list_hosted_zones()["HostedZones"] if zone["Name"] == f"{world.domain}.")
    answer = route53.list_resource_record_sets(HostedZoneId=zone["Id"], StartRecordName=f"www.{world.domain}.",
                                               StartRecordType="A", MaxItems="10")["ResourceRecordSets"]
    return {item.get("SetIdentifier"): (item.get("Weight"), item["AliasTarget"]["DNSName"].rstrip(".").lower())
            for item in answer if item["Name"] == f"www.{world.domain}." and item["Type"] == "A"}


def load_balancer_dns_name(world, lab, side: str) -> str:
    account = lab["LAB_ACCOUNT_OLD"] if side == "old" else lab["LAB_ACCOUNT_NEW"]
    elbv2 = account_session(account).client("elbv2")
    return elbv2.describe_load_balancers(Names=[f"{world.lab_name}-{side}"])["LoadBalancers"][0]["DNSName"].lower()


def authoritative_answers(lab, name: str, times: int = 80) -> set[str]:
    """Every address the new account's authoritative server hands out over ``times`` queries (weighted: random)."""
    seen: set[str] = set()
    for _attempt in range(times):
        seen |= authoritative_answer(lab["LAB_DNS_NEW"], name)
    return seen


def test_weighted_shift_steps_resume_after_a_failed_health_check_and_end_on_one_simple_alias(world, lab):
    name = f"www.{world.domain}"
    old_lb, new_lb = load_balancer_dns_name(world, lab, "old"), load_balancer_dns_name(world, lab, "new")
    old_address, new_address = load_balancer_address(world, lab, "old"), load_balancer_address(world, lab, "new")

    # Step 10 from the seeded simple alias: two weighted sets, converted in one change batch.
    first = world.playbook("playbooks/migrate.yml", "-e", weights(10))
    assert first.returncode == 0, first.stdout[-6000:]
    assert www_record_sets(world, lab) == {"new": (10, new_lb), "old": (90, old_lb)}
    assert authoritative_answers(lab, name) == {old_address, new_address}
    assert resolve(lab["LAB_RESOLVER"], name) <= {old_address, new_address}
    assert "steps left: 10" in " ".join(first.stdout.split())

    # Step 50 in a later run: the shift continues from the 10 read in Route53.
    second = world.playbook("playbooks/migrate.yml", "--tags", "dns", "-e", weights(10, 50))
    assert second.returncode == 0, second.stdout[-6000:]
    assert "steps left: 50" in " ".join(second.stdout.split())
    assert second.changed_total == 1, second.recap
    assert www_record_sets(world, lab) == {"new": (50, new_lb), "old": (50, old_lb)}
    assert authoritative_answers(lab, name, 40) == {old_address, new_address}

    # The new side stops answering: the health check before the 100 step fails, nothing moves.
    subprocess.run([sys.executable, str(REPO_ROOT / "tests" / "lab" / "labapp.py"), "stop", "--instance",
                    f"{world.lab_name}-dev-web-new-1"], check=True, capture_output=True)
    failed = world.playbook("playbooks/migrate.yml", "--tags", "dns", "-e", weights(10, 50, 100),
                            "-e", '{"dns_stage_health_retries": 2, "dns_stage_health_delay": 1}')
    assert failed.returncode != 0
    assert "Health-check the new side through its load balancer before 100 %" in failed.stdout
    assert www_record_sets(world, lab) == {"new": (50, new_lb), "old": (50, old_lb)}

    # The whole playbook again: the web stage redeploys the host, the shift resumes at 100.
    resumed = world.playbook("playbooks/migrate.yml", "-e", weights(10, 50, 100))
    assert resumed.returncode == 0, resumed.stdout[-6000:]
    assert "steps left: 100" in " ".join(resumed.stdout.split())
    assert www_record_sets(world, lab) == {None: (None, new_lb)}
    assert authoritative_answers(lab, name, 10) == {new_address}
    assert_migrated(world, lab)

    rerun = world.playbook("playbooks/migrate.yml", "-v", "-e", weights(10, 50, 100))
    assert rerun.returncode == 0, rerun.stdout[-6000:]
    # The 100 step recorded when it went live: the rerun's wait counted the old TTL from then.
    assert rerun.stdout.count("cache_expiry_counted_from: changed_at") == 1
    assert rerun.changed_total == 0, {host: counts["changed"] for host, counts in rerun.recap.items()}
    assert "steps left: none" in " ".join(rerun.stdout.split())
    assert www_record_sets(world, lab) == {None: (None, new_lb)}
