from __future__ import annotations

import pytest
from playbook_lab import new_world


@pytest.fixture
def world(lab):
    """A freshly seeded old side of the inventory's dev environment, under a unique name.

    The teardown always unfreezes both lab MariaDB servers (read_only is server-wide, and the DB
    stage and the rollback set it on servers every other test shares), even when seeding failed.
    """
    seeded = new_world()
    try:
        seeded.seed()
        yield seeded
    finally:
        seeded.teardown()
