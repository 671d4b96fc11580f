import pytest

from tests.engine.conftest import build_scenario


@pytest.fixture
def scenario(db):
    """The three organizations, with two people each."""
    return build_scenario(people_per_org=2)
