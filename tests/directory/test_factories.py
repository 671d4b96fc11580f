"""The factories make valid rows that belong together."""

import pytest

from directory.constants import Kind
from directory.factories import RecipientFactory
from master.factories import AllowedRequestorFactory
from requestor.factories import ExportedContainerFactory

pytestmark = pytest.mark.django_db


def test_it_makes_valid_unique_recipients():
    first, second = RecipientFactory.create_batch(2)
    for recipient in (first, second):
        recipient.full_clean()
    assert first.alias != second.alias
    assert first.primary_smtp.endswith(f"@{first.organization.mail_domain}")


def test_it_spends_one_usn_on_a_list_with_members(container):
    people = RecipientFactory.create_batch(2, container=container)
    dl = RecipientFactory(container=container, kind=Kind.DISTRIBUTION_LIST, members=people)
    dl.refresh_from_db()
    assert dl.usn == 3
    assert dl.members.count() == 2


def test_it_exports_a_container_of_the_requestors_own_organization():
    exported = ExportedContainerFactory()
    exported.full_clean()
    assert exported.container.organization == exported.config.organization
    exported.config.full_clean()


def test_it_allowlists_a_requestor_on_a_valid_master():
    requestor = AllowedRequestorFactory()
    requestor.full_clean()
    requestor.master.full_clean()
    assert requestor.master.organization.runs_master
