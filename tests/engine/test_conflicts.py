"""A conflict that clears heals by itself: the entry set aside is imported within the next cycle,
with no Import All (the Conflicts page's promise)."""

from directory import changes
from directory.constants import Kind
from requestor.models import Conflict, Verification
from tests.engine.helpers import assert_converged, assert_digests_agree, cycle, synced_fixtures

synced_base, synced = synced_fixtures()


def desk(org, address: str):
    """A custom recipient of the organization's own that holds a partner's address."""
    return org.add(
        alias="desk",
        display_name="Partner Desk",
        kind=Kind.CUSTOM_RECIPIENT,
        primary_smtp=address,
        container=org.contractors,
    )


def with_a_conflict(synced):
    org1, org2 = synced["ORG1"], synced["ORG2"]
    mine = desk(org1, "newhire@org2.example")
    org2.add(alias="newhire", display_name="New Hire")
    cycle(org2)
    cycle(org1)
    cycle(synced["ORG3"])
    assert Conflict.objects.filter(config=org1.config).count() == 1
    assert "New Hire (ORG2)" not in org1.contact_names()
    # A conflict is an entry knowingly set aside: the copy still verifies.
    assert Verification.objects.get(config=org1.config, side="import").state == "verified"
    assert_digests_agree(synced)
    return org1, mine


def test_it_imports_the_entry_once_the_local_recipient_is_deleted(synced):
    org1, mine = with_a_conflict(synced)

    changes.delete_recipients([mine])
    run = cycle(org1)
    cycle(synced["ORG3"])

    assert "New Hire (ORG2)" in org1.contact_names()
    assert run.imported == 1
    assert not Conflict.objects.filter(config=org1.config).exists()
    assert_converged(synced)


def test_it_imports_the_entry_once_the_local_recipient_takes_another_address(synced):
    org1, mine = with_a_conflict(synced)

    mine.primary_smtp = mine.target_address = "desk@partner.example"
    changes.save_recipient(mine)
    cycle(org1)
    cycle(synced["ORG3"])

    assert org1.contacts().get(primary_smtp="newhire@org2.example").display_name == (
        "New Hire (ORG2)"
    )
    assert not Conflict.objects.filter(config=org1.config).exists()
    assert_digests_agree(synced)


def test_it_imports_the_loser_once_the_contact_that_won_the_address_goes(synced):
    org1, org2, org3 = synced["ORG1"], synced["ORG2"], synced["ORG3"]
    winner = org1.add(
        alias="shared", display_name="First Claim", primary_smtp="desk@shared.example"
    )
    cycle(org1)
    cycle(org3)
    org2.add(alias="shared", display_name="Second Claim", primary_smtp="desk@shared.example")
    cycle(org2)
    cycle(org3)
    assert Conflict.objects.get(config=org3.config).display_name == "Second Claim (ORG2)"

    changes.delete_recipients([winner])
    cycle(org1)
    cycle(org3)

    held = org3.contacts().get(primary_smtp="desk@shared.example")
    assert held.display_name == "Second Claim (ORG2)"
    assert not Conflict.objects.filter(config=org3.config).exists()
    cycle(org1)
    cycle(org2)
    assert_converged(synced)


def test_it_imports_two_contacts_that_swap_addresses_in_one_reply(synced):
    org1, org2 = synced["ORG1"], synced["ORG2"]
    first, second = org2.people[0], org2.people[1]
    first.primary_smtp, second.primary_smtp = second.primary_smtp, "swapping@org2.example"
    changes.save_recipient(second)
    changes.save_recipient(first)
    second.primary_smtp = "org2user1@org2.example"
    changes.save_recipient(second)
    cycle(org2)

    run = cycle(org1)
    cycle(synced["ORG3"])

    assert (run.conflicts, run.updated) == (0, 2)
    assert not Conflict.objects.filter(config=org1.config).exists()
    addresses = dict(org1.contacts().values_list("display_name", "primary_smtp"))
    assert addresses["ORG2 User 1 (ORG2)"] == "org2user2@org2.example"
    assert addresses["ORG2 User 2 (ORG2)"] == "org2user1@org2.example"
    assert_converged(synced)
