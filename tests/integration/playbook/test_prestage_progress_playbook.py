"""data_prestage shows the async bucket copy's progress (objects, bytes, rate, ETA) while it polls."""

from __future__ import annotations

import json
import re

import pytest
from playbook_lab import account_session

# No MySQL DB stage: tests/run runs it beside the tests that freeze the lab MariaDB servers.
pytestmark = [pytest.mark.timeout(900), pytest.mark.mariadb_never_frozen]

PROGRESS = re.compile(r"progress (\S+) -> (\S+): (\w+) objects (\d+)/(\d+) \((\d+) failed\), ([\d.]+)/([\d.]+) MiB, "
                      r"([\d.]+) MiB/s, ETA (\S+) s, elapsed ([\d.]+) s")


def test_prestage_shows_the_copy_progress_after_each_poll_and_the_rerun_copies_nothing(world, lab, tmp_path):
    # Poll every second, a progress line after every poll.
    options = json.dumps({"data_prestage_poll_delay": 1, "data_prestage_progress_polls": 1,
                          "data_prestage_progress_dir": str(tmp_path)})
    run = world.playbook("playbooks/migrate.yml", "--tags", "prepare,prestage", "-e", options)
    assert run.returncode == 0, run.stdout[-6000:]
    text = " ".join(run.stdout.split())
    lines = PROGRESS.findall(text)
    assert lines, run.stdout[-6000:]
    source_bucket, target_bucket = f"{world.lab_name}-models", f"{world.lab_name}-models-{lab['LAB_ACCOUNT_NEW']}"
    assert {(line[0], line[1]) for line in lines} == {(source_bucket, target_bucket)}
    # The figures are the objects and bytes really copied: the target bucket holds them.
    new_s3 = account_session(lab["LAB_ACCOUNT_NEW"]).client("s3")
    objects = new_s3.list_objects_v2(Bucket=target_bucket)["Contents"]
    copied = sum(item["Size"] for item in objects)
    final = lines[-1]
    assert final[2] == "done" and final[3] == final[4] == str(len(objects)) and final[5] == "0"
    assert final[7] == f"{copied / 1048576:.1f}"
    # The progress file is the one the lines were read from.
    last = json.loads((tmp_path / f"cutover-s3-dev-{source_bucket}.jsonl").read_text().splitlines()[-1])
    assert last["objects_done"] == len(objects) and last["bytes_done"] == copied

    rerun = world.playbook("playbooks/migrate.yml", "--tags", "prepare,prestage", "-e", options)
    assert rerun.returncode == 0, rerun.stdout[-6000:]
    assert rerun.changed_total == 0, rerun.recap
    again = PROGRESS.findall(" ".join(rerun.stdout.split()))
    assert again and again[-1][3] == "0" and again[-1][4] == "0"  # nothing left to copy
