"""Fixtures for the mysql_delta_apply lab tests: a fresh database pair per test."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from mysql_delta_lab import create_database, drop_database, server_params, unique_name  # noqa: E402


@pytest.fixture
def mysql_sides(lab):
    """(old params, new params, source database, target database), with the full schema on both."""
    old, new = server_params(lab["LAB_MYSQL_OLD"]), server_params(lab["LAB_MYSQL_NEW"])
    source_db, target_db = unique_name("delta_src"), unique_name("delta_dst")
    create_database(old, source_db)
    create_database(new, target_db)
    yield old, new, source_db, target_db
    drop_database(old, source_db)
    drop_database(new, target_db)
