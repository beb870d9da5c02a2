"""``ansible-playbook playbooks/migrate.yml --check`` on a fresh environment: every stage plans, nothing changes.

What an operator runs the day before (or an AWX check job): it must get through every stage,
including those whose target does not exist yet (the zone is cloned, the schema loaded, only by a
real run), and leave the real state exactly as it was.
"""

from __future__ import annotations

import pytest
from playbook_lab import assert_untouched

# No MySQL DB stage: tests/run runs it beside the tests that freeze the lab MariaDB servers.
pytestmark = [pytest.mark.timeout(600), pytest.mark.mariadb_never_frozen]


def test_check_mode_on_a_fresh_environment_plans_every_stage_and_changes_nothing(world, lab):
    run = world.playbook("playbooks/migrate.yml", "--check")

    assert run.returncode == 0, run.stdout[-6000:]
    assert all(counts["failed"] == 0 and counts["unreachable"] == 0 for counts in run.recap.values()), run.recap
    # The plan is shown as changes: the zone clone, the bucket copy, the registrations, the flips.
    assert run.recap[f"{world.environment}-control"]["changed"] > 0
    assert f"Check mode: {world.domain} does not exist in the target account yet" in " ".join(run.stdout.split())
    for play in ("Prepare", "Prestage", "Web stage", "Internal API stage", "DNS stage", "DB stage"):
        assert f"PLAY [{play}" in run.stdout
    assert_untouched(world, lab)
