"""playbooks/migrate.yml end to end against the lab: the staged cutover, its rerun, resume, rollback."""

from __future__ import annotations

import shutil

import pytest
from playbook_lab import REPO_ROOT, World, account_session, resolve, scalar, table_checksums

pytestmark = pytest.mark.timeout(1500)


def new_load_balancer_address(world: World, lab: dict) -> str:
    elbv2 = account_session(lab["LAB_ACCOUNT_NEW"]).client("elbv2")
    dns_name = elbv2.describe_load_balancers(Names=[f"{world.lab_name}-new"])["LoadBalancers"][0]["DNSName"]
    return next(iter(resolve(lab["LAB_RESOLVER"], dns_name)))


def assert_migrated(world: World, lab: dict) -> None:
    # Public name on the new load balancer, DB endpoint on the new server, through the resolver.
    assert resolve(lab["LAB_RESOLVER"], f"www.{world.domain}") == {new_load_balancer_address(world, lab)}
    assert resolve(lab["LAB_RESOLVER"], f"db.{world.domain}") == {"127.0.56.2"}
    assert resolve(lab["LAB_VPC_RESOLVER_NEW"], f"api.{world.lab_name}.internal") == {"127.0.58.111"}
    # Rows: users and products equal on both servers; orders: every source row plus the smoke-test writes.
    assert table_checksums("127.0.56.1", world.database, ["users", "products"]) == \
        table_checksums("127.0.56.2", world.database, ["users", "products"])
    source_orders = scalar("127.0.56.1", "SELECT COUNT(*) FROM orders", world.database)
    last_source_order = scalar("127.0.56.1", "SELECT MAX(id) FROM orders", world.database)
    assert scalar("127.0.56.2", f"SELECT COUNT(*) FROM orders WHERE id <= {last_source_order}", world.database) == source_orders
    assert scalar("127.0.56.2", f"SELECT COUNT(*) FROM orders WHERE id > {last_source_order}", world.database) >= 1  # smoke write
    assert scalar("127.0.56.2", "SELECT COUNT(*) - COUNT(DISTINCT id) FROM orders", world.database) == 0
    next_id = scalar("127.0.56.2", "SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
                                   "AND TABLE_NAME = 'orders'", world.database)
    assert next_id > scalar("127.0.56.2", "SELECT MAX(id) FROM orders", world.database)
    # Objects: every source key in the new bucket with the same size.
    old_s3 = account_session(lab["LAB_ACCOUNT_OLD"]).client("s3")
    new_s3 = account_session(lab["LAB_ACCOUNT_NEW"]).client("s3")
    source = {o["Key"]: o["Size"] for o in old_s3.list_objects_v2(Bucket=f"{world.lab_name}-models")["Contents"]}
    target = {o["Key"]: o["Size"] for o in new_s3.list_objects_v2(Bucket=f"{world.lab_name}-models-{lab['LAB_ACCOUNT_NEW']}")["Contents"]}
    assert target == source
    # The new web host is in service behind both load balancers.
    for account, group in ((lab["LAB_ACCOUNT_OLD"], f"{world.lab_name}-web-old"), (lab["LAB_ACCOUNT_NEW"], f"{world.lab_name}-web-new")):
        elbv2 = account_session(account).client("elbv2")
        arn = elbv2.describe_target_groups(Names=[group])["TargetGroups"][0]["TargetGroupArn"]
        targets = {t["Target"]["Id"] for t in elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]}
        assert "127.0.58.101" in targets


def test_migration_runs_every_stage_and_a_second_run_changes_nothing(world, lab):
    first = world.playbook("playbooks/migrate.yml")
    assert first.returncode == 0, first.stdout[-6000:]
    assert_migrated(world, lab)

    second = world.playbook("playbooks/migrate.yml")
    assert second.returncode == 0, second.stdout[-6000:]
    assert second.changed_total == 0, {host: counts["changed"] for host, counts in second.recap.items()}
    assert_migrated(world, lab)


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
