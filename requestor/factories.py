"""Test data for the requestor: its configuration and exported containers."""

import factory
from factory.django import DjangoModelFactory

from directory.factories import ContainerFactory, OrganizationFactory
from requestor.models import ExportedContainer, RequestorConfig


class RequestorConfigFactory(DjangoModelFactory):
    class Meta:
        model = RequestorConfig

    organization = factory.SubFactory(OrganizationFactory)
    address = factory.LazyAttribute(lambda o: f"requestor@{o.organization.name.lower()}.example")
    dn = factory.LazyAttribute(
        lambda o: f"/o={o.organization.name}/ou=Site1/cn=Recipients/cn=REQUESTOR"
    )
    master_address = "master@hub.example"


class ExportedContainerFactory(DjangoModelFactory):
    class Meta:
        model = ExportedContainer

    config = factory.SubFactory(RequestorConfigFactory)
    # A container of the config's own organization: a site's parent is the container factory,
    # whose parent is this one.
    container = factory.SubFactory(
        ContainerFactory, site__organization=factory.SelfAttribute("...config.organization")
    )
