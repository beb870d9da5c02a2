from __future__ import annotations

import pytest
from playbook_lab import new_world


@pytest.fixture
def world(lab):
    """A freshly seeded old side of the inventory's dev environment, under a unique name."""
    seeded = new_world()
    seeded.seed()
    yield seeded
    seeded.teardown()
