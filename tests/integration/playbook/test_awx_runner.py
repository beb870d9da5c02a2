"""playbooks/migrate.yml as AWX runs it: ansible-runner over a private data dir laid out as AWX lays it out.

AWX writes ``env/extravars`` (survey answers and what a custom credential injects, here the DB
passwords), ``env/envvars`` (what the Amazon Web Services credential injects: AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SECURITY_TOKEN), ``env/cmdline`` (``--check`` for a check job),
``inventory/`` (a synced inventory source as a script printing JSON) and ``project/`` (the SCM
checkout), then runs ``ansible-runner`` in it and stores the job events. A test here does the same,
for one freshly seeded lab environment, and reads the events the way AWX shows them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import ansible_runner
import pytest
import yaml
from playbook_lab import (
    MYSQL_NEW,
    MYSQL_OLD,
    REPO_ROOT,
    World,
    assert_migrated,
    assert_untouched,
    ensure_collection_link,
    mysql,
)

pytestmark = pytest.mark.timeout(900)

STAGE_ROLES = {"preflight", "zone_prepare", "data_prestage", "web_stage", "internal_api_stage", "dns_stage", "db_stage"}


@pytest.fixture
def migration_db_account(lab):
    """The migration's own DB account on both servers, with a password nothing else knows."""
    user, password = f"awx_{uuid.uuid4().hex[:8]}", f"db-{secrets.token_hex(16)}"
    for host in (MYSQL_OLD, MYSQL_NEW):
        with mysql(host) as connection, connection.cursor() as cursor:
            cursor.execute(f"CREATE USER `{user}`@'%%' IDENTIFIED BY %s", (password,))
            # SUPER-level: the DB stage sets read_only and reads the binary log.
            cursor.execute(f"GRANT ALL PRIVILEGES ON *.* TO `{user}`@'%'")
    try:
        yield user, password
    finally:
        for host in (MYSQL_OLD, MYSQL_NEW):
            with mysql(host) as connection, connection.cursor() as cursor:
                cursor.execute(f"DROP USER IF EXISTS `{user}`@'%'")


def inventory_for(world: World) -> dict:
    """The lab inventory reduced to the world's environment, with its names and ports, as an AWX inventory source."""
    completed = subprocess.run([str(Path(sys.executable).with_name("ansible-inventory")), "-i", "inventories/lab", "--list", "--export"],
                               cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    full = json.loads(completed.stdout)
    environment = world.environment
    members = set(full[environment]["hosts"])
    inventory: dict = {
        "all": {"children": ["migration_control", "web_new", "api_new", environment], "vars": full["all"]["vars"]},
        environment: {"hosts": sorted(members),
                      "vars": {**full[environment].get("vars", {}), "lab_world": world.name, "lab_port_base": world.port_base}},
        "_meta": {"hostvars": {host: values for host, values in full["_meta"]["hostvars"].items() if host in members}},
    }
    for group in ("migration_control", "web_new", "api_new"):
        inventory[group] = {"hosts": sorted(set(full[group]["hosts"]) & members)}
    return inventory


def awx_private_data_dir(root: Path, world: World, lab: dict, job_secrets: dict[str, str], db_user: str,
                         check: bool) -> Path:
    ensure_collection_link()
    private = root / ("check-job" if check else "run-job")
    (private / "env").mkdir(parents=True)
    (private / "inventory").mkdir()
    (private / "project").symlink_to(REPO_ROOT)
    (private / "env" / "extravars").write_text(yaml.safe_dump({
        "lab_mysql_user": db_user,
        "vault_source_db_password": job_secrets["source_db_password"],
        "vault_target_db_password": job_secrets["target_db_password"],
        "lab_app_db_password": job_secrets["app_db_password"],
        "cutover_wait_timeout": 300,
    }))
    (private / "env" / "envvars").write_text(yaml.safe_dump({
        "AWS_ACCESS_KEY_ID": lab["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": job_secrets["aws_secret_access_key"],
        "AWS_SECURITY_TOKEN": job_secrets["aws_security_token"],
        "AWS_ENDPOINT_URL": lab["AWS_ENDPOINT_URL"],
        "AWS_DEFAULT_REGION": lab["AWS_DEFAULT_REGION"],
        "AWS_REGION": lab["AWS_REGION"],
        "LAB_ROOT": str(private / "project"),
        "ANSIBLE_NOCOLOR": "1",
    }))
    if check:
        (private / "env" / "cmdline").write_text("--check")
    script = private / "inventory" / "hosts"
    script.write_text(f"#!{sys.executable}\n"
                      "import json, sys\n"
                      f"INVENTORY = {json.dumps(inventory_for(world))!r}\n"
                      "print(json.dumps({}) if '--host' in sys.argv else INVENTORY)\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return private


@contextlib.contextmanager
def awx_job_environment():
    """Only what an execution environment has: no AWS or LAB variable of the test process, no collection path."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith(("AWS_", "LAB_", "ANSIBLE_")):
            del os.environ[name]
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{saved.get('PATH', '')}"
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_job(private: Path, environment: str) -> tuple[ansible_runner.Runner, list[dict]]:
    with awx_job_environment():
        runner = ansible_runner.run(private_data_dir=str(private), playbook="playbooks/migrate.yml", limit=environment,
                                    quiet=True, timeout=600)
    return runner, list(runner.events)


def roles_ok(events: list[dict]) -> set[str]:
    return {event["event_data"]["role"].split(".")[-1] for event in events
            if event["event"] == "runner_on_ok" and event.get("event_data", {}).get("role")}


def assert_job_succeeded(runner: ansible_runner.Runner, events: list[dict]) -> dict:
    failures = [event for event in events if event["event"] == "runner_on_failed" and not event["event_data"].get("ignore_errors")]
    assert not failures, [event.get("stdout") for event in failures]
    assert runner.status == "successful" and runner.rc == 0, (runner.status, runner.rc, runner.stdout.read()[-4000:])
    stats = [event for event in events if event["event"] == "playbook_on_stats"]
    assert len(stats) == 1
    assert not stats[0]["event_data"]["failures"] and not stats[0]["event_data"]["dark"]
    assert roles_ok(events) >= STAGE_ROLES, roles_ok(events)
    return stats[0]["event_data"]


def assert_no_secret_in(events: list[dict], runner: ansible_runner.Runner, job_secrets: dict[str, str]) -> None:
    assert events
    for event in events:
        text = json.dumps(event)
        leaked = [name for name, value in job_secrets.items() if value in text]
        assert not leaked, f"{leaked} in event {event['event']} ({event.get('event_data', {}).get('task')})"
    stdout = Path(runner.config.artifact_dir, "stdout").read_text()
    assert not [name for name, value in job_secrets.items() if value in stdout]


def new_job_secrets(world: World, db_password: str) -> dict[str, str]:
    return {"aws_secret_access_key": f"awx-secret-{secrets.token_hex(16)}", "aws_security_token": f"awx-token-{secrets.token_hex(24)}",
            "source_db_password": db_password, "target_db_password": db_password, "app_db_password": world.app_password}


def test_awx_check_job_plans_every_stage_writes_nothing_and_shows_no_secret(world, lab, tmp_path, migration_db_account):
    db_user, db_password = migration_db_account
    job_secrets = new_job_secrets(world, db_password)
    private = awx_private_data_dir(tmp_path, world, lab, job_secrets, db_user, check=True)

    runner, events = run_job(private, world.environment)

    stats = assert_job_succeeded(runner, events)
    assert stats["changed"].get(f"{world.environment}-control", 0) > 0  # the plan: what a real job would change
    assert_no_secret_in(events, runner, job_secrets)
    assert_untouched(world, lab)


def test_awx_job_migrates_the_environment_a_later_check_job_finds_nothing_to_do_and_no_secret_shows(world, lab, tmp_path, migration_db_account):
    db_user, db_password = migration_db_account
    job_secrets = new_job_secrets(world, db_password)
    private = awx_private_data_dir(tmp_path, world, lab, job_secrets, db_user, check=False)

    runner, events = run_job(private, world.environment)

    assert_job_succeeded(runner, events)
    assert_no_secret_in(events, runner, job_secrets)
    assert_migrated(world, lab)
    # Every DB task's result reached the events, with the passwords masked: the final delta ran and was verified.
    final_delta = [event["event_data"]["res"] for event in events if event["event"] == "runner_on_ok"
                   and event["event_data"].get("task") == "Freeze the source, apply the final delta, verify, fix AUTO_INCREMENT"]
    assert len(final_delta) == 1 and final_delta[0]["source_frozen_at"]
    assert final_delta[0]["invocation"]["module_args"]["source"]["password"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"

    # A check job launched after the migration finds nothing left to do.
    check_after = awx_private_data_dir(tmp_path / "after", world, lab, job_secrets, db_user, check=True)
    runner, events = run_job(check_after, world.environment)
    stats = assert_job_succeeded(runner, events)
    assert not any(stats["changed"].values()), stats["changed"]
    assert_no_secret_in(events, runner, job_secrets)
