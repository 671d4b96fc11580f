"""Containers: their DNs, nesting, renames and the checks on where a container may go."""

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from directory import changes
from directory.factories import ContainerFactory, RecipientFactory, SiteFactory
from directory.models import Container, DirectChange

pytestmark = pytest.mark.django_db


@pytest.fixture
def tree(container):
    """Recipients > Sales > Europe, and a sibling whose name starts like the first."""
    sales = ContainerFactory(site=container.site, parent=container, name="Sales")
    europe = ContainerFactory(site=container.site, parent=sales, name="Europe")
    lookalike = ContainerFactory(site=container.site, name="Recipients2")
    return container, sales, europe, lookalike


def test_it_names_containers_by_dn(tree):
    top, sales, europe, lookalike = tree
    assert top.dn == "/o=ORG1/ou=Site1/cn=Recipients"
    assert sales.dn == "/o=ORG1/ou=Site1/cn=Recipients/cn=Sales"
    assert europe.dn == "/o=ORG1/ou=Site1/cn=Recipients/cn=Sales/cn=Europe"
    assert europe.organization == top.organization


def test_it_renames_everything_inside_a_renamed_container(tree):
    top, sales, europe, _ = tree
    person = RecipientFactory(container=europe, alias="jdoe")
    changes.move_container(top, name="People")
    europe.refresh_from_db()
    sales.refresh_from_db()
    assert sales.dn == "/o=ORG1/ou=Site1/cn=People/cn=Sales"
    assert europe.dn == "/o=ORG1/ou=Site1/cn=People/cn=Sales/cn=Europe"
    assert Container.objects.get(pk=person.container_id).dn.endswith(
        "/cn=People/cn=Sales/cn=Europe"
    )


def test_it_renames_the_containers_of_a_renamed_site(tree):
    top, _, europe, lookalike = tree
    changes.rename_site(top.site, "Headquarters")
    europe.refresh_from_db()
    lookalike.refresh_from_db()
    assert europe.dn == "/o=ORG1/ou=Headquarters/cn=Recipients/cn=Sales/cn=Europe"
    assert lookalike.dn == "/o=ORG1/ou=Headquarters/cn=Recipients2"


def test_it_knows_which_containers_lie_within_another(tree):
    top, sales, europe, lookalike = tree
    assert top.is_within(top)
    assert sales.is_within(top)
    assert europe.is_within(top)
    assert not top.is_within(sales)
    assert not lookalike.is_within(top)
    assert not top.is_within(lookalike)
    assert sorted(top.subtree_ids()) == sorted([top.pk, sales.pk, europe.pk])


def test_it_rejects_a_parent_in_another_site(container):
    elsewhere = ContainerFactory(site=SiteFactory(organization=container.organization))
    child = Container(site=elsewhere.site, parent=container, name="Stray")
    with pytest.raises(ValidationError) as exc:
        child.full_clean()
    assert exc.value.message_dict == {"parent": ["The parent container must be in the same site."]}


def test_it_rejects_a_container_inside_itself(tree):
    top, _, europe, _ = tree
    top.parent = europe
    with pytest.raises(ValidationError) as exc:
        top.full_clean()
    assert exc.value.message_dict == {"parent": ["A container cannot lie inside itself."]}


def test_it_rejects_a_duplicate_name_in_the_same_place_ignoring_case(tree):
    top, sales, _, _ = tree
    for twin in (
        Container(site=top.site, name="RECIPIENTS"),
        Container(site=top.site, parent=top, name="sales"),
    ):
        with pytest.raises(ValidationError, match="already exists"):
            twin.full_clean()
        with pytest.raises(IntegrityError), transaction.atomic():
            twin.save()


def test_it_allows_the_same_name_under_different_parents(tree):
    top, _, _, lookalike = tree
    for parent in (top, lookalike):
        twin = Container(site=top.site, parent=parent, name="Europe")
        twin.full_clean()
        twin.save()


@pytest.mark.parametrize("name", ["", "a/b", "cn=x", "tab\there", "x" * 65])
def test_it_rejects_a_name_that_would_break_the_dn(container, name):
    with pytest.raises(ValidationError) as exc:
        Container(site=container.site, name=name).full_clean()
    assert "name" in exc.value.message_dict


def test_it_moves_a_subtree_in_one_statement(tree):
    top, sales, europe, lookalike = tree
    for n in range(20):
        ContainerFactory(site=top.site, parent=europe, name=f"Office{n}")

    with CaptureQueriesContext(connection) as queries:
        changes.move_container(sales, parent=lookalike)

    updates = [q for q in queries if q["sql"].startswith("UPDATE")]
    assert len(updates) == 2  # the container itself, then every DN inside it at once
    assert Container.objects.get(name="Office7").dn == (
        "/o=ORG1/ou=Site1/cn=Recipients2/cn=Sales/cn=Europe/cn=Office7"
    )
    assert not Container.objects.filter(dn__startswith=top.dn + "/").exists()


def test_it_refuses_a_move_that_leaves_the_dns_inside_behind(tree):
    top, sales, _, lookalike = tree
    sales.parent = lookalike
    with pytest.raises(DirectChange, match="move_container"):
        sales.save()
    site = top.site
    site.name = "Elsewhere"
    with pytest.raises(DirectChange, match="rename_site"):
        site.save()


def test_it_refuses_to_move_a_container_inside_itself(tree):
    top, _, europe, _ = tree
    with pytest.raises(ValidationError, match="cannot lie inside itself"):
        changes.move_container(top, parent=europe)


def test_it_moves_a_subtree_to_another_site_of_its_organization(tree):
    top, sales, europe, lookalike = tree
    other = SiteFactory(organization=top.organization, name="Branch")
    elsewhere = ContainerFactory(site=other, name="Offices")

    changes.move_container(sales, parent=None, site=other)
    sales.refresh_from_db()
    europe.refresh_from_db()
    assert (sales.site, sales.parent, sales.dn) == (other, None, "/o=ORG1/ou=Branch/cn=Sales")
    assert (europe.site, europe.dn) == (other, "/o=ORG1/ou=Branch/cn=Sales/cn=Europe")

    # Under a container of another site, it takes that container's site.
    changes.move_container(lookalike, parent=elsewhere)
    lookalike.refresh_from_db()
    assert (lookalike.site, lookalike.dn) == (other, "/o=ORG1/ou=Branch/cn=Offices/cn=Recipients2")
    # And back under a container of its first site.
    changes.move_container(lookalike, parent=top)
    lookalike.refresh_from_db()
    assert (lookalike.site, lookalike.dn) == (
        top.site,
        "/o=ORG1/ou=Site1/cn=Recipients/cn=Recipients2",
    )


def test_a_site_with_containers_saves_as_long_as_its_name_stays(tree):
    top, _, europe, _ = tree
    site = top.site
    site.save()
    site.save(update_fields=["name"])
    site.name = "Elsewhere"
    with pytest.raises(DirectChange, match="rename_site"):
        site.save()
    europe.refresh_from_db()
    assert europe.dn == "/o=ORG1/ou=Site1/cn=Recipients/cn=Sales/cn=Europe"


def test_a_container_saved_where_it_is_rewrites_nothing_inside(tree):
    top, sales, europe, _ = tree
    with CaptureQueriesContext(connection) as queries:
        changes.move_container(top)
    updates = [q["sql"] for q in queries if q["sql"].startswith("UPDATE")]
    assert len(updates) == 1, updates  # its own row only
    europe.refresh_from_db()
    assert europe.dn == "/o=ORG1/ou=Site1/cn=Recipients/cn=Sales/cn=Europe"
