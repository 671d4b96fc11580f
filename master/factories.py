"""Test data for the master: its configuration and allowlisted requestors."""

import factory
from factory.django import DjangoModelFactory

from directory.constants import Role
from directory.factories import OrganizationFactory
from master.models import AllowedRequestor, MasterConfig


class MasterConfigFactory(DjangoModelFactory):
    class Meta:
        model = MasterConfig

    organization = factory.SubFactory(OrganizationFactory, role=Role.BOTH)
    address = factory.LazyAttribute(lambda o: f"master@{o.organization.name.lower()}.example")
    dn = factory.LazyAttribute(
        lambda o: f"/o={o.organization.name}/ou=Site1/cn=Recipients/cn=MASTER"
    )


class AllowedRequestorFactory(DjangoModelFactory):
    class Meta:
        model = AllowedRequestor

    master = factory.SubFactory(MasterConfigFactory)
    organization_name = factory.Sequence(lambda n: f"BRANCH{n + 1}")
    address = factory.LazyAttribute(lambda o: f"requestor@{o.organization_name.lower()}.example")
