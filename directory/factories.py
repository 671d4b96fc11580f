"""Test data for the directory: one organization, site, container or recipient per call."""

import factory
from factory.django import DjangoModelFactory

from directory import changes
from directory.constants import Kind, Role
from directory.models import Container, Organization, Recipient, Site


class OrganizationFactory(DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"ORG{n + 1}")
    display_name = factory.LazyAttribute(lambda o: f"Organization {o.name}")
    role = Role.REQUESTOR
    mail_domain = factory.LazyAttribute(lambda o: f"{o.name.lower()}.example")


class SiteFactory(DjangoModelFactory):
    class Meta:
        model = Site

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Site{n + 1}")


class ContainerFactory(DjangoModelFactory):
    class Meta:
        model = Container

    site = factory.SubFactory(SiteFactory)
    name = factory.Sequence(lambda n: f"Recipients{n + 1}")


class RecipientFactory(DjangoModelFactory):
    """A mailbox; pass kind=Kind.DISTRIBUTION_LIST and members=[...] for a list."""

    class Meta:
        model = Recipient
        # Saving again after setting members would spend a second USN.
        skip_postgeneration_save = True

    container = factory.SubFactory(ContainerFactory)
    kind = Kind.MAILBOX
    first_name = "Pat"
    last_name = factory.Sequence(lambda n: f"Example{n + 1}")
    display_name = factory.LazyAttribute(lambda o: f"{o.first_name} {o.last_name}")
    alias = factory.Sequence(lambda n: f"user{n + 1}")
    primary_smtp = factory.LazyAttribute(
        lambda o: f"{o.alias}@{o.container.site.organization.mail_domain or 'example.com'}"
    )

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        # Through the one path that gives a recipient its USN and counts it in the digests.
        return changes.save_recipient(model_class(*args, **kwargs))

    @factory.post_generation
    def members(self, create, extracted, **kwargs) -> None:
        if create and extracted:
            self.members.set(extracted)
