import pytest

from katsched.testing import FakeClock
from tests.world import World, memory_world


@pytest.fixture
def world(clock: FakeClock) -> World:
    """The planners on the store in memory: a planner unit test needs no database (the store contract suite,
    tests/contract/test_store_contract.py, proves the SQL store behaves alike)."""
    return memory_world(clock)
