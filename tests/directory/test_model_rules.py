"""The directory models' own rules, each refusal word for word with the field it names.

The console, the API and the admin show these messages as they are, so their words are part of
the behaviour: a form error that named another field, or a message cut short, would leave an
administrator guessing. Also: the General and custom attributes' limits (the wire's), a save of
some fields writing those only, and the LDAP settings' checks of the base DN, the units and
StartTLS.
"""

import sys

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from directory import changes
from directory.constants import (
    CUSTOM_ATTRIBUTE_COUNT,
    CUSTOM_ATTRIBUTE_MAX_LENGTH,
    GENERAL_ATTRIBUTES,
    Kind,
)
from directory.factories import ContainerFactory, RecipientFactory, SiteFactory
from directory.models import (
    Container,
    DirectChange,
    LdapDirectory,
    Recipient,
    Site,
    allocate_usns,
    unit_dns_problem,
)

pytestmark = pytest.mark.django_db

WRITTEN_AROUND = (
    ": recipients change only through directory.changes (save_recipient, delete_recipients, "
    "insert_recipients), which give the change a local USN and keep the organization's digests."
)


def errors_of(instance, **kwargs) -> dict:
    with pytest.raises(ValidationError) as exc:
        instance.full_clean(**kwargs)
    return exc.value.message_dict


# Writing around directory.changes


def test_a_recipient_saved_around_the_changes_module_is_refused_in_full(container):
    recipient = RecipientFactory.build(container=container)
    with pytest.raises(DirectChange) as exc:
        recipient.save()
    assert str(exc.value) == "Saving a recipient" + WRITTEN_AROUND
    assert not Recipient.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_usns_are_allocated_inside_a_transaction_only(org):
    with pytest.raises(RuntimeError) as exc:
        allocate_usns(org.pk, 3)
    assert str(exc.value) == "allocate_usns() must run inside transaction.atomic()."
    org.refresh_from_db()
    assert org.usn == 0
    with transaction.atomic():
        assert allocate_usns(org.pk, 3) == 1
    org.refresh_from_db()
    assert (org.usn, org.own_usn) == (3, 3)


def test_a_site_with_containers_is_renamed_by_the_changes_module_only(container):
    site = container.site
    site.name = "Elsewhere"
    with pytest.raises(DirectChange) as exc:
        site.save()
    assert str(exc.value) == (
        "A site with containers is renamed by directory.changes.rename_site(), "
        "which renames their DNs with it."
    )
    assert Site.objects.get(pk=site.pk).name == "Site1"


def test_a_container_with_containers_inside_is_moved_by_the_changes_module_only(container):
    inner = ContainerFactory(site=container.site, parent=container, name="Sales")
    container.name = "People"
    with pytest.raises(DirectChange) as exc:
        container.save()
    assert str(exc.value) == (
        "A container with containers inside it is moved or renamed by "
        "directory.changes.move_container(), which renames their DNs with it."
    )
    inner.refresh_from_db()
    assert inner.dn == "/o=ORG1/ou=Site1/cn=Recipients/cn=Sales"


# Staying in one's organization


def test_a_container_moved_to_another_organizations_site_is_refused(container, other_container):
    container.site = other_container.site
    assert errors_of(container) == {
        "site": ["A container stays in its organization (ORG1): choose one of its sites."]
    }
    with pytest.raises(ValueError) as exc:
        container.save()
    assert str(exc.value) == "A container cannot move to another organization's site."
    assert Container.objects.get(pk=container.pk).site_id != other_container.site_id


def test_a_container_put_inside_another_organizations_container_is_refused(
    container, other_container
):
    container.parent = other_container
    assert errors_of(container) == {
        "parent": ["A container stays in its organization (ORG1): choose one of its containers."]
    }


def test_a_recipient_moved_to_another_organizations_container_is_refused(
    container, other_container
):
    recipient = RecipientFactory(container=container)
    recipient.container = other_container
    assert errors_of(recipient) == {
        "container": ["A recipient cannot move to another organization's container."]
    }
    with pytest.raises(ValueError) as exc:
        changes.save_recipient(recipient)
    assert str(exc.value) == "A recipient cannot move to another organization's container."
    assert Recipient.objects.get(pk=recipient.pk).container_id == container.pk


def test_a_recipient_moved_within_its_organization_is_valid(container):
    recipient = RecipientFactory(container=container)
    recipient.container = ContainerFactory(site=SiteFactory(organization=container.organization))
    recipient.full_clean()
    changes.save_recipient(recipient)
    assert Recipient.objects.get(pk=recipient.pk).container_id == recipient.container_id


def test_only_a_custom_recipient_has_a_target_address(container):
    mailbox = RecipientFactory.build(container=container, target_address="elsewhere@example.com")
    assert errors_of(mailbox) == {
        "target_address": ["Only custom recipients have a target address."]
    }
    contact = RecipientFactory.build(
        container=container, kind=Kind.CUSTOM_RECIPIENT, target_address="elsewhere@example.com"
    )
    contact.full_clean()
    assert contact.target_address == "elsewhere@example.com"


# Uniqueness checks of the fields a form edits


def test_the_per_organization_checks_run_even_when_a_form_leaves_the_organization_out(
    container,
):
    first = RecipientFactory(container=container)
    twin = RecipientFactory.build(container=container, primary_smtp=first.primary_smtp.upper())
    twin.organization = container.organization
    for left_out in (["organization"], ["hidden_at"], ["organization", "hidden_at"]):
        assert "Another recipient of this organization has that" in str(
            errors_of(twin, exclude=left_out)
        )


def test_a_field_left_out_of_a_form_is_not_checked_for_uniqueness(container):
    first = RecipientFactory(container=container)
    twin = RecipientFactory.build(container=container, primary_smtp=first.primary_smtp.upper())
    twin.organization = container.organization
    twin.full_clean(exclude=["primary_smtp"])  # the form does not edit the address
    assert errors_of(twin) == {
        "__all__": ["Another recipient of this organization has that primary SMTP address."]
    }


# Saving some fields


def test_a_save_of_some_fields_writes_those_only(container):
    recipient = RecipientFactory(container=container, display_name="Ann", office="Paris")
    recipient.display_name = "Ann Lee"
    recipient.office = "Lyon"
    changes.save_recipient(recipient, update_fields=["display_name"])
    stored = Recipient.objects.get(pk=recipient.pk)
    assert (stored.display_name, stored.office) == ("Ann Lee", "Paris")
    assert stored.usn == recipient.usn > 1  # the USN is written with the fields named

    site = SiteFactory(organization=container.organization, name="Spare")
    site.name = "Renamed"
    site.save(update_fields=["organization"])
    assert Site.objects.get(pk=site.pk).name == "Spare"

    spare = ContainerFactory(site=site, name="Spare")
    spare.name = "Renamed"
    spare.save(update_fields=["site"])
    assert Container.objects.get(pk=spare.pk).name == "Spare"


# The attributes' limits


@pytest.mark.parametrize("name", sorted(GENERAL_ATTRIBUTES))
def test_each_general_attribute_holds_what_the_wire_allows(container, name):
    limit = GENERAL_ATTRIBUTES[name]
    recipient = RecipientFactory.build(container=container)
    if name not in ("display_name", "alias", "primary_smtp"):
        setattr(recipient, name, "")
        recipient.full_clean()  # may be left empty
        setattr(recipient, name, "x" * limit)
        recipient.full_clean()
    setattr(recipient, name, "x" * (limit + 1))
    assert name in errors_of(recipient)


@pytest.mark.parametrize("number", range(1, CUSTOM_ATTRIBUTE_COUNT + 1))
def test_each_custom_attribute_is_named_and_holds_its_limit(container, number):
    name = f"custom_attribute_{number}"
    field = Recipient._meta.get_field(name)
    assert field.verbose_name == f"custom attribute {number}"
    recipient = RecipientFactory.build(container=container, **{name: ""})
    recipient.full_clean()
    setattr(recipient, name, "x" * CUSTOM_ATTRIBUTE_MAX_LENGTH)
    recipient.full_clean()
    setattr(recipient, name, "x" * (CUSTOM_ATTRIBUTE_MAX_LENGTH + 1))
    assert errors_of(recipient) == {
        name: [
            f"Ensure this value has at most {CUSTOM_ATTRIBUTE_MAX_LENGTH} characters "
            f"(it has {CUSTOM_ATTRIBUTE_MAX_LENGTH + 1})."
        ]
    }


# The LDAP settings


def ldap_settings(org, **fields) -> LdapDirectory:
    values = {"uri": "ldap://ldap.org1.example", "base_dn": "dc=org1,dc=example"} | fields
    return LdapDirectory(organization=org, **values)


def test_good_ldap_settings_are_valid(org):
    ldap_settings(
        org, unit_dns="ou=People,dc=org1,dc=example\n\n ou=Staff,DC=Org1,DC=Example "
    ).full_clean()
    ldap_settings(org, start_tls=True).full_clean()
    ldap_settings(org, uri="ldaps://ldap.org1.example").full_clean()
    ldap_settings(org, unit_dns="ou=People,dc=org1,dc=example").full_clean()


def test_a_base_dn_that_is_not_a_dn_is_refused(org):
    assert errors_of(ldap_settings(org, base_dn="example.org")) == {
        "base_dn": [
            "'example.org' is not a distinguished name: write it as attribute=value pairs "
            "separated by commas, such as dc=example,dc=org or ou=People,o=Example."
        ]
    }


def test_starttls_over_ldaps_is_refused(org):
    settings = ldap_settings(org, uri="ldaps://ldap.org1.example:636", start_tls=True)
    assert errors_of(settings) == {
        "start_tls": [
            "An ldaps:// connection is TLS from the start: uncheck StartTLS, or use ldap://."
        ]
    }


def test_every_problem_of_the_ldap_settings_is_reported_at_once(org):
    settings = ldap_settings(
        org, uri="ldaps://ldap.org1.example", start_tls=True, unit_dns="ou=People,dc=elsewhere"
    )
    assert sorted(errors_of(settings)) == ["start_tls", "unit_dns"]
    assert errors_of(settings)["unit_dns"] == [
        "ou=People,dc=elsewhere is not under the base DN dc=org1,dc=example."
    ]


BASE = "DC=Org1,DC=Example"


@pytest.mark.parametrize(
    ("units", "base", "problem"),
    [
        ("", BASE, ""),
        (" \n\t\n", BASE, ""),
        ("OU=Staff,DC=Org1,DC=Example", BASE, ""),
        ("ou=staff,dc=org1,dc=example", BASE, ""),  # names and values in any case
        ("OU=Staff,DC=ORG1,DC=EXAMPLE\nCN=Users,dc=org1,dc=example", BASE, ""),
        ("OU=Sales,OU=Staff,DC=Org1,DC=Example", BASE, ""),
        # The base DN itself is not a unit under it.
        ("DC=Org1,DC=Example", BASE, "DC=Org1,DC=Example is not under the base DN " + BASE + "."),
        ("DC=Example", BASE, "DC=Example is not under the base DN " + BASE + "."),
        (
            "OU=Staff,DC=Org2,DC=Example",
            BASE,
            "OU=Staff,DC=Org2,DC=Example is not under the base DN " + BASE + ".",
        ),
        # The first line that is wrong is named.
        (
            "OU=Staff,DC=Org1,DC=Example\nOU=Sales,DC=Org9,DC=Example\nnonsense",
            BASE,
            "OU=Sales,DC=Org9,DC=Example is not under the base DN " + BASE + ".",
        ),
        ("Staff", BASE, "'Staff' is not a DN (such as OU=Staff,DC=Org1,DC=Example)."),
        ("Staff", "", "'Staff' is not a DN (such as OU=Staff,DC=example,DC=org)."),
        # A base DN that is not one has its own error: the units are not judged against it.
        ("OU=Staff,DC=Org1,DC=Example", "nonsense", ""),
    ],
)
def test_units_must_be_dns_under_the_base_dn(units, base, problem):
    assert unit_dns_problem(units, base) == problem


def test_without_python_ldap_the_dns_are_left_unjudged(org, monkeypatch):
    # python-ldap is optional (the `ldap` extra); without it LDAP cannot be used anyway.
    monkeypatch.setitem(sys.modules, "ldap.dn", None)
    assert unit_dns_problem("nonsense", BASE) == ""
    ldap_settings(org, base_dn="nonsense", unit_dns="nonsense").full_clean()
