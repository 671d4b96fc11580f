"""Fixtures of the directory and admin tests: two organizations with a container each."""

import pytest

from directory.factories import ContainerFactory, OrganizationFactory


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    # The admin login and the demo's superuser would otherwise spend most of the run hashing.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def org():
    return OrganizationFactory(name="ORG1")


@pytest.fixture
def other_org():
    return OrganizationFactory(name="ORG2")


@pytest.fixture
def container(org):
    return ContainerFactory(site__organization=org, site__name="Site1", name="Recipients")


@pytest.fixture
def other_container(other_org):
    return ContainerFactory(site__organization=other_org, site__name="Site2", name="Recipients")
