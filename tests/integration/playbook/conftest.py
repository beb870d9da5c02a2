from __future__ import annotations

import pytest
from playbook_lab import new_world


@pytest.fixture
def world(lab, request):
    """A freshly seeded old side of the inventory's dev environment, under a unique name.

    The teardown unfreezes both lab MariaDB servers (read_only is server-wide, and the DB stage
    and the rollback set it on servers every other test shares), even when seeding failed; not
    for a test marked ``mariadb_never_frozen`` (no MySQL DB stage or rollback), which tests/run
    runs beside the tests that freeze: lifting their freeze would break them.
    """
    seeded = new_world()
    try:
        seeded.seed()
        yield seeded
    finally:
        seeded.teardown(unfreeze=request.node.get_closest_marker("mariadb_never_frozen") is None)
