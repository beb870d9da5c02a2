"""playbooks/migrate.yml end to end against the lab: the staged cutover, its rerun, resume, rollback."""

from __future__ import annotations

import json
import shutil
import time

import pytest
from playbook_lab import REPO_ROOT, account_session, assert_migrated, dns_flip_record, new_load_balancer_address, resolve

pytestmark = pytest.mark.timeout(1500)


def test_migration_runs_every_stage_and_a_second_run_changes_nothing(world, lab):
    started = time.time()
    first = world.playbook("playbooks/migrate.yml")
    assert first.returncode == 0, first.stdout[-6000:]
    assert_migrated(world, lab)
    # The DNS stage recorded when its flip was in sync, to the new load balancer, on the control host.
    recorded = json.loads(dns_flip_record(world).read_text())
    assert started < recorded["flipped_at"] < time.time()
    assert recorded["names"] == [f"www.{world.domain}"]
    assert resolve(lab["LAB_RESOLVER"], recorded["target"]) == {new_load_balancer_address(world, lab)}

    second = world.playbook("playbooks/migrate.yml", "-v")
    assert second.returncode == 0, second.stdout[-6000:]
    assert second.changed_total == 0, {host: counts["changed"] for host, counts in second.recap.items()}
    assert_migrated(world, lab)
    # The rerun counted the old TTL from the recorded flip (long past) instead of waiting it again.
    # (ansible.cfg: callback_result_format = yaml; the one public name's wait; the API and DB names'
    # waits count from agreement, their TTLs being short)
    assert second.stdout.count("cache_expiry_counted_from: changed_at") == 1


def test_rerun_after_a_failure_in_the_web_stage_converges(world, lab, tmp_path):
    failing_hook = tmp_path / "failing_deploy.yml"
    failing_hook.write_text("- name: Deploy that dies half way\n  ansible.builtin.fail:\n    msg: injected failure in the web stage\n")
    interrupted = world.playbook("playbooks/migrate.yml", "-e", f"cutover_web_deploy_tasks={failing_hook}")
    assert interrupted.returncode != 0
    assert "injected failure in the web stage" in interrupted.stdout
    # Stopped inside the web stage: nothing of the later stages happened.
    assert resolve(lab["LAB_RESOLVER"], f"db.{world.domain}") == {"127.0.56.1"}
    assert not resolve(lab["LAB_RESOLVER"], f"www.{world.domain}") & {new_load_balancer_address(world, lab)}

    resumed = world.playbook("playbooks/migrate.yml")
    assert resumed.returncode == 0, resumed.stdout[-6000:]
    assert_migrated(world, lab)


def test_missing_variable_fails_in_preflight_naming_it(world, lab, tmp_path):
    inventory = tmp_path / "inventory"
    shutil.copytree(REPO_ROOT / "inventories" / "lab", inventory)
    group_vars = inventory / "group_vars" / "all.yml"
    text = group_vars.read_text()
    start = text.index("cutover_bucket_map:")
    end = text.index("cutover_s3_method:")
    group_vars.write_text(text[:start] + text[end:])

    run = world.playbook("playbooks/migrate.yml", inventory=str(inventory))

    assert run.returncode != 0
    assert "missing variable(s) cutover_bucket_map;" in " ".join(run.stdout.split())
    # Nothing was written: the zone was not cloned into the new account.
    route53 = account_session(lab["LAB_ACCOUNT_NEW"]).client("route53")
    zones = [zone["Name"] for zone in route53.list_hosted_zones()["HostedZones"]]
    assert f"{world.domain}." not in zones
