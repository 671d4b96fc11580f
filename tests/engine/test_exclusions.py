"""Import exclusions: addresses and whole origin organizations a requestor never imports.
Contacts already imported go at the next cycle; each left-out entry is recorded with its reason
and still counts in verification; lifting the exclusion brings them back."""

from requestor.models import FilteredEntry, RequestorConfig
from tests.engine.helpers import assert_converged, cycle, synced_fixtures

synced_base, synced = synced_fixtures()


def exclude(org, **values) -> RequestorConfig:
    config = RequestorConfig.objects.get(pk=org.config.pk)
    for name, value in values.items():
        setattr(config, name, value)
    config.full_clean()
    config.save()
    return config


def origins(org) -> set[str]:
    return set(org.contacts().values_list("origin_organization", flat=True))


def test_an_excluded_address_is_removed_at_the_next_cycle_and_recorded(synced):
    org3 = synced["ORG3"]
    contact = org3.contacts().filter(origin_organization="ORG2").first()
    exclude(org3, excluded_addresses=f"nobody@else.example\n{contact.primary_smtp.upper()}")

    run = cycle(org3)

    assert run.deleted == 1
    assert not org3.contacts().filter(pk=contact.pk).exists()
    filtered = FilteredEntry.objects.get(config=org3.config)
    assert (filtered.address.lower(), filtered.reason) == (
        contact.primary_smtp.lower(),
        FilteredEntry.Reason.ADDRESS,
    )
    assert_converged(synced)


def test_an_excluded_organization_is_removed_whole_and_comes_back_when_lifted(synced):
    org3 = synced["ORG3"]
    assert origins(org3) == {"ORG1", "ORG2"}
    exclude(org3, excluded_organizations="org2")

    cycle(org3)

    assert origins(org3) == {"ORG1"}
    reasons = set(FilteredEntry.objects.filter(config=org3.config).values_list("reason", "origin"))
    assert reasons == {(FilteredEntry.Reason.ORGANIZATION, "ORG2")}
    assert_converged(synced)

    exclude(org3, excluded_organizations="")
    cycle(org3)

    assert origins(org3) == {"ORG1", "ORG2"}
    assert not FilteredEntry.objects.filter(config=org3.config).exists()
    assert_converged(synced)


def test_an_entry_added_later_by_an_excluded_organization_never_arrives(synced):
    org1, org2 = synced["ORG1"], synced["ORG2"]
    exclude(org1, excluded_organizations="ORG2, ORG9")
    cycle(org1)
    org2.add(display_name="Late Arrival")

    cycle(org2)
    cycle(org1)

    assert not any(name.startswith("Late Arrival") for name in org1.contact_names())
    assert any(name.startswith("Late Arrival") for name in synced["ORG3"].contact_names()) is False
    cycle(synced["ORG3"])
    assert any(name.startswith("Late Arrival") for name in synced["ORG3"].contact_names())
    assert_converged(synced)
