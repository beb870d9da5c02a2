"""Fixtures for the postgresql_delta_apply lab tests: a fresh database pair per test."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from pg_delta_lab import create_database, drop_database, server_params, unique_name  # noqa: E402

PGLAB = Path(__file__).resolve().parents[2] / "lab" / "pglab"


@pytest.fixture(scope="session")
def pg_lab(lab):
    """The lab's variables with LAB_PG_OLD/LAB_PG_NEW (from `pglab env` until labctl prints them)."""
    env = dict(lab)
    if "LAB_PG_OLD" not in env:
        status = subprocess.run([str(PGLAB), "status"], capture_output=True, text=True, check=False)
        if status.returncode != 0:
            pytest.skip(f"the lab's PostgreSQL pair is not running (tests/lab/pglab up): {status.stdout.strip()}")
        for line in subprocess.run([str(PGLAB), "env"], capture_output=True, text=True, check=True).stdout.splitlines():
            name, _sep, value = line[len("export "):].partition("=")
            env[name] = shlex.split(value)[0]
    return env


@pytest.fixture
def pg_sides(pg_lab):
    """(old params, new params, source database, target database), with the full schema on both."""
    old, new = server_params(pg_lab["LAB_PG_OLD"]), server_params(pg_lab["LAB_PG_NEW"])
    source_db, target_db = unique_name("pgdelta_src"), unique_name("pgdelta_dst")
    create_database(old, source_db)
    create_database(new, target_db)
    yield old, new, source_db, target_db
    drop_database(old, source_db)
    drop_database(new, target_db)
