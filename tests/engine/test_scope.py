"""The export scope changes in ways no recipient notices: containers move, exported containers
and their kinds change, the trust threshold and the transforms change, by any path. Every export
compares the scope the master holds the entries under with the current one and restates the
difference (requestor.scope)."""

from directory import changes
from directory.models import Container, Recipient
from requestor.models import ExportedContainer, RequestorConfig
from requestor.scope import UNKNOWN_SCOPE, Scope, restate_scope_changes
from tests.engine.helpers import assert_converged, cycle, synced_fixtures


def with_a_sales_team(scenario):
    org2 = scenario["ORG2"]
    sales = Container.objects.create(
        site=org2.recipients.site, parent=org2.recipients, name="Sales"
    )
    europe = Container.objects.create(site=sales.site, parent=sales, name="Europe")
    org2.add(container=sales, alias="sam", display_name="Sam Sales")
    org2.add(container=europe, alias="eve", display_name="Eve Europe")


synced_base, synced = synced_fixtures(prepare=with_a_sales_team)
TEAM = {"Sam Sales (ORG2)", "Eve Europe (ORG2)"}


def propagate(scenario, source: str = "ORG2"):
    runs = {source: cycle(scenario[source])}
    for org in scenario.others(source):
        runs[org.name] = cycle(org)
    return runs


def held_by_others(scenario) -> list[set[str]]:
    return [org.contact_names() & TEAM for org in scenario.others("ORG2")]


def test_it_deletes_everywhere_what_a_moved_container_takes_out_of_the_scope(synced):
    sales = Container.objects.get(name="Sales")
    assert held_by_others(synced) == [TEAM, TEAM]

    changes.move_container(sales, parent=None)
    runs = propagate(synced)

    # Two deletes, restated with fresh USNs: an incremental export, not a full one.
    assert (runs["ORG2"].full_export, runs["ORG2"].exported) == (False, 2)
    assert held_by_others(synced) == [set(), set()]
    assert_converged(synced)

    changes.move_container(sales, parent=synced["ORG2"].recipients)
    runs = propagate(synced)

    assert (runs["ORG2"].full_export, runs["ORG2"].exported) == (False, 2)
    assert held_by_others(synced) == [TEAM, TEAM]
    assert_converged(synced)


def test_it_follows_a_container_moved_around_the_domain_functions(synced):
    # A container without containers inside may be saved directly; nothing else notices.
    europe = Container.objects.get(name="Europe")
    europe.parent = None
    europe.save()

    propagate(synced)

    assert held_by_others(synced) == [{"Sam Sales (ORG2)"}, {"Sam Sales (ORG2)"}]
    assert_converged(synced)


def test_it_follows_export_options_changed_behind_the_console(synced):
    config = synced["ORG2"].config
    ExportedContainer.objects.filter(config=config).update(mailboxes=False)

    propagate(synced)

    assert held_by_others(synced) == [set(), set()]
    assert_converged(synced)

    ExportedContainer.objects.filter(config=config).update(mailboxes=True)
    RequestorConfig.objects.filter(pk=config.pk).update(append_display_name=" [Two]")
    runs = propagate(synced)

    assert runs["ORG2"].exported == 5  # every exported recipient, once, with the new suffix
    assert "Sam Sales [Two]" in synced["ORG1"].contact_names()
    assert_converged(synced)


def test_it_exports_nothing_again_when_the_scope_is_unchanged(synced):
    sales = Container.objects.get(name="Sales")
    changes.move_container(sales, name="Sales Team")

    runs = propagate(synced)

    assert runs["ORG2"].exported == 0
    assert held_by_others(synced) == [TEAM, TEAM]


def test_a_recipient_hidden_from_others_leaves_their_address_books_and_comes_back(synced):
    sam = synced["ORG2"].organization.recipients.get(alias="sam")
    sam.hidden_from_others = True
    changes.save_recipient(sam)

    runs = propagate(synced)

    assert (runs["ORG2"].full_export, runs["ORG2"].exported) == (False, 1)
    assert held_by_others(synced) == [{"Eve Europe (ORG2)"}, {"Eve Europe (ORG2)"}]
    assert_converged(synced)

    sam.hidden_from_others = False
    changes.save_recipient(sam)
    propagate(synced)

    assert held_by_others(synced) == [TEAM, TEAM]
    assert_converged(synced)


def test_a_hidden_recipient_stays_out_of_a_full_export(synced):
    sam = synced["ORG2"].organization.recipients.get(alias="sam")
    sam.hidden_from_others = True
    changes.save_recipient(sam)
    synced["ORG2"].config.request_full_export()

    runs = propagate(synced)

    assert runs["ORG2"].full_export
    assert held_by_others(synced) == [{"Eve Europe (ORG2)"}, {"Eve Europe (ORG2)"}]
    assert_converged(synced)


def own_usns(org) -> dict[str, int]:
    own = Recipient.objects.filter(organization=org.organization, global_key__isnull=True)
    return dict(own.values_list("alias", "usn"))


def test_after_an_upgrade_the_next_export_restates_everything_in_scope_once(synced):
    # The master may hold the entries of an installation upgraded from full exports stamped
    # with one snapshot USN at other USNs than the recipients' own (migration 0008).
    org2 = synced["ORG2"]
    outside = Container.objects.create(site=org2.recipients.site, name="Not Exported")
    org2.add(container=outside, alias="olga", display_name="Olga Outside")
    propagate(synced)
    RequestorConfig.objects.filter(pk=org2.config.pk).update(exported_scope=UNKNOWN_SCOPE)
    before = own_usns(org2)

    runs = propagate(synced)

    # Everything in scope once, with fresh USNs above all the others, in an incremental export;
    # the recipient outside the scope and the contacts keep theirs.
    assert (runs["ORG2"].full_export, runs["ORG2"].exported) == (False, 5)
    after = own_usns(org2)
    restated = {alias for alias in after if after[alias] != before[alias]}
    assert restated == set(before) - {"olga"}
    assert min(after[alias] for alias in restated) > max(before.values())
    assert org2.refresh().config.exported_scope == Scope.of(org2.config).definition()
    assert held_by_others(synced) == [TEAM, TEAM]
    assert_converged(synced)
    assert propagate(synced)["ORG2"].exported == 0


def test_restating_says_how_many_recipients_it_gave_fresh_usns(synced):
    config = synced["ORG2"].refresh().config
    scope = Scope.of(config)

    assert restate_scope_changes(config, scope) == 0  # the scope the master holds them under

    config.exported_scope = UNKNOWN_SCOPE
    assert restate_scope_changes(config, scope) == 5
    assert config.exported_scope == scope.definition()

    config.exported_scope = Scope(
        scope.trust_level, {}, *scope.transforms
    ).definition()  # nothing exported
    assert restate_scope_changes(config, scope) == 5
