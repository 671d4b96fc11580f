"""Provable convergence, as a property: whatever happens to three organizations and their mail,
after a quiet period each holds exactly what an independent oracle says, and the digests agree.

A hypothesis state machine drives random sequences of directory changes (adds, renames,
readdresses, deletes, container moves, trust levels, export options, addresses that collide and
stop colliding), of mail trouble (messages lost, duplicated, reordered, delayed), of Import All
and Export All, and of a master restored from an earlier backup. Then everything is delivered
and every organization syncs until quiet, and the state is checked against an oracle that reads
only the organizations' own directories and Export Config, never the engine's tables.

`make test` runs a bounded number of examples; `make test-property` runs 200, and
INTERORG_PROPERTY_EXAMPLES (and INTERORG_PROPERTY_STEPS) any number:
`INTERORG_PROPERTY_EXAMPLES=1000 make test-property`.
"""

import os
import random
from collections import defaultdict

import pytest
from django.core import serializers
from django.core.exceptions import ValidationError
from django.db import transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from directory import changes
from directory.constants import Kind
from directory.models import Container, Recipient
from master.models import AllowedRequestor, GlobalEntry, LedgerEntry, MasterConfig, ReceivedBatch
from requestor.cycle import run_cycle, sync_all
from requestor.models import Conflict, ExportedContainer, RequestorConfig, Verification
from tests.engine.conftest import build_scenario
from tests.engine.helpers import (
    assert_digests_agree,
    duplicate,
    exported_people,
    exported_view,
    inbound,
    queued,
    refresh,
)
from transport.inbox import process_pending
from transport.outbox import deliver_locally

EXAMPLES = int(os.environ.get("INTERORG_PROPERTY_EXAMPLES", "8"))
STEPS = int(os.environ.get("INTERORG_PROPERTY_STEPS", "25"))
ORGS = ["ORG1", "ORG2", "ORG3"]
MASTER_TABLES = [MasterConfig, AllowedRequestor, GlobalEntry, LedgerEntry, ReceivedBatch]

organizations = st.sampled_from(ORGS)
picks = st.integers(min_value=0, max_value=10_000)
# A small pool, so that organizations pick the same addresses: conflicts come and go.
pool_addresses = st.sampled_from([f"p{n}@pool.example" for n in range(3)])


class Convergence(RuleBasedStateMachine):
    @initialize()
    def build(self):
        self.atomic = transaction.atomic()
        self.atomic.__enter__()
        self.scenario = build_scenario(people_per_org=2)
        self.teams = {}
        for name, org in self.scenario.orgs.items():
            team = Container.objects.create(
                site=org.recipients.site, parent=org.recipients, name="Team"
            )
            self.teams[name] = team
            org.add(container=team, display_name=f"{name} Team Lead")
        # Addresses that collide from the start: two organizations export p0 and p1, and each
        # organization keeps a desk of its own (not exported) on one of them.
        self.scenario["ORG1"].add(alias="org1p0", primary_smtp="p0@pool.example")
        self.scenario["ORG2"].add(alias="org2p0", primary_smtp="p0@pool.example")
        self.scenario["ORG2"].add(alias="org2p1", primary_smtp="p1@pool.example")
        for name, address in (("ORG1", "p1"), ("ORG2", "p2"), ("ORG3", "p0")):
            self.take_address(name, f"{address}@pool.example")
        self.backup = None
        self.serial = 0

    def teardown(self):
        if not hasattr(self, "atomic"):
            return
        try:
            self.settle_and_check()
        finally:
            transaction.set_rollback(True)
            self.atomic.__exit__(None, None, None)

    # --- directory changes -------------------------------------------------------------------

    def own(self, name: str) -> list[Recipient]:
        org = self.scenario[name]
        return list(
            Recipient.objects.exportable().filter(organization=org.organization).order_by("pk")
        )

    def person(self, name: str, pick: int) -> Recipient | None:
        people = self.own(name)
        return people[pick % len(people)] if people else None

    def saved(self, recipient: Recipient) -> None:
        """Save if the directory's own checks allow it (a taken address is refused there)."""
        try:
            recipient.full_clean()
        except ValidationError:
            return
        changes.save_recipient(recipient)

    @rule(
        name=organizations,
        where=st.sampled_from(["recipients", "contractors", "team"]),
        kind=st.sampled_from([Kind.MAILBOX, Kind.MAILBOX, Kind.DISTRIBUTION_LIST]),
        address=st.none() | pool_addresses | pool_addresses,
    )
    def add(self, name, where, kind, address):
        org = self.scenario[name]
        self.serial += 1
        alias = f"{name.lower()}p{self.serial}"
        container = self.teams[name] if where == "team" else getattr(org, where)
        recipient = Recipient(
            container=container,
            kind=kind,
            alias=alias,
            display_name=f"{name} Person {self.serial}",
            primary_smtp=address or f"{alias}@{org.organization.mail_domain}",
        )
        self.saved(recipient)

    @rule(name=organizations, address=pool_addresses)
    def take_address(self, name, address):
        """A custom recipient of the organization's own, not exported, takes an address an
        entry of another organization may have: that entry is set aside while it lasts."""
        org = self.scenario[name]
        desk = Recipient.objects.filter(organization=org.organization, alias=f"{name}desk").first()
        desk = desk or Recipient(container=org.contractors, alias=f"{name}desk")
        desk.kind, desk.display_name = Kind.CUSTOM_RECIPIENT, f"{name} Desk"
        desk.primary_smtp = desk.target_address = address
        self.saved(desk)

    @rule(name=organizations)
    def release_address(self, name):
        org = self.scenario[name]
        desks = Recipient.objects.filter(organization=org.organization, alias=f"{name}desk")
        changes.delete_recipients(desks)

    @rule(name=organizations, pick=picks)
    def rename(self, name, pick):
        recipient = self.person(name, pick)
        if recipient is not None:
            self.serial += 1
            recipient.display_name = f"{recipient.display_name.split(' #')[0]} #{self.serial}"
            self.saved(recipient)

    @rule(name=organizations, pick=picks, address=pool_addresses)
    def readdress(self, name, pick, address):
        recipient = self.person(name, pick)
        if recipient is not None:
            recipient.primary_smtp = address
            self.saved(recipient)

    @rule(name=organizations, pick=picks)
    def delete(self, name, pick):
        recipient = self.person(name, pick)
        if recipient is not None:
            changes.delete_recipients([recipient])

    @rule(name=organizations, pick=picks, level=st.sampled_from([0, 10, 20, 60]))
    def set_trust_level(self, name, pick, level):
        recipient = self.person(name, pick)
        if recipient is not None:
            recipient.trust_level = level
            self.saved(recipient)

    @rule(name=organizations, pick=picks, hidden=st.booleans())
    def hide_from_others(self, name, pick, hidden):
        recipient = self.person(name, pick)
        if recipient is not None:
            recipient.hidden_from_others = hidden
            self.saved(recipient)

    @rule(name=organizations)
    def move_the_team(self, name):
        team = Container.objects.get(pk=self.teams[name].pk)
        inside = team.parent_id is not None
        changes.move_container(team, parent=None if inside else self.scenario[name].recipients)

    @rule(name=organizations, threshold=st.sampled_from([0, 10, 50]))
    def set_trust_threshold(self, name, threshold):
        # Around the console, as a script might: the next export notices all the same.
        RequestorConfig.objects.filter(organization__name=name).update(trust_level=threshold)

    @rule(name=organizations, suffix=st.sampled_from(["", " (X)", " [Y]"]))
    def set_display_name_suffix(self, name, suffix):
        RequestorConfig.objects.filter(organization__name=name).update(append_display_name=suffix)

    @rule(name=organizations, lists=st.booleans())
    def export_lists_or_not(self, name, lists):
        ExportedContainer.objects.filter(config__organization__name=name).update(
            distribution_lists=lists
        )

    # --- the sync, and what happens to its mail ------------------------------------------------

    @rule(name=organizations)
    def cycle(self, name):
        run_cycle(RequestorConfig.objects.get(organization__name=name).pk)

    @rule(
        how=st.sampled_from(["in order", "reversed", "shuffled", "lose one", "repeat one"]),
        seed=picks,
    )
    def mail(self, how, seed):
        messages = list(queued())
        rng = random.Random(seed)
        if how == "reversed":
            messages.reverse()
        elif how == "shuffled":
            rng.shuffle(messages)
        elif how == "lose one" and messages:
            rng.choice(messages).delete()
            return
        elif how == "repeat one":
            received = list(inbound())
            if received:
                duplicate(rng.choice(received))
            return
        # Delayed: some stay in the queue for a later delivery.
        for message in messages[: rng.randint(0, len(messages))]:
            deliver_locally(message.pk)

    @rule()
    def process(self):
        process_pending()

    @rule(name=organizations)
    def import_all(self, name):
        RequestorConfig.objects.get(organization__name=name).import_all_recipients()

    @rule(name=organizations)
    def export_all(self, name):
        RequestorConfig.objects.get(organization__name=name).export_all_recipients()

    @rule()
    def back_up_the_master(self):
        objects = [obj for model in MASTER_TABLES for obj in model.objects.all()]
        self.backup = serializers.serialize("json", objects)

    @precondition(lambda self: self.backup is not None)
    @rule()
    def restore_the_master(self):
        """The master's database put back as it was at the backup, on its own: the
        organizations keep everything they have since."""
        ReceivedBatch.objects.all().delete()
        LedgerEntry.objects.all().delete()
        GlobalEntry.objects.all().delete()
        for restored in serializers.deserialize("json", self.backup):
            restored.save()
        self.backup = None

    @rule()
    def quiet_period(self):
        """Mail flows and every organization syncs until nothing is left: checked now, and the
        conflicts this made may clear in the steps that follow."""
        self.settle_and_check()

    # --- the check ---------------------------------------------------------------------------

    def settle_and_check(self):
        for _ in range(3):
            rounds = sync_all(max_rounds=12)
            if rounds[-1].quiet:
                break
        sync_all(max_rounds=2)  # one more quiet round: its replies verify both sides
        scenario = refresh(self.scenario)
        for name in ORGS:
            check_against_oracle(scenario, name)
        assert_digests_agree(scenario)
        states = set(Verification.objects.values_list("side", "state"))
        assert states == {("import", "verified"), ("export", "verified")}, states


def oracle(scenario, name: str) -> dict[str, tuple[str, str, str]]:
    """What organization `name` should hold, read from the others' own directories and Export
    Config alone: global key -> (origin, display name, primary SMTP address)."""
    expected = {}
    for other in scenario.others(name):
        config = RequestorConfig.objects.get(pk=other.config.pk)
        for person in exported_people(config):
            expected[f"{other.name}:{person.guid}"] = (other.name, *exported_view(person, config))
    return expected


def check_against_oracle(scenario, name: str) -> None:
    """Every entry the oracle expects is held as a contact with its attributes, or set aside
    because its address is taken: by the organization's own recipient, or by exactly one other
    entry with the same address that is held. Nothing else is held."""
    org = scenario[name]
    expected = oracle(scenario, name)
    held = {
        key: (origin, display, smtp)
        for key, origin, display, smtp in org.contacts().values_list(
            "global_key", "origin_organization", "display_name", "primary_smtp"
        )
    }
    aside = set(Conflict.objects.filter(config=org.config).values_list("global_key", flat=True))
    assert not set(held) & aside, name
    assert set(held) | aside == set(expected), name
    for key, view in held.items():
        assert view == expected[key], (name, key)
    local = {
        smtp.lower()
        for smtp in Recipient.objects.exportable()
        .filter(organization=org.organization)
        .values_list("primary_smtp", flat=True)
    }
    by_address = defaultdict(list)
    for key, (_origin, _display, smtp) in expected.items():
        by_address[smtp.lower()].append(key)
    for address, keys in by_address.items():
        holding = [key for key in keys if key in held]
        if address in local:
            assert holding == [], (name, address)
        else:
            assert len(holding) == 1, (name, address, keys)


@pytest.mark.django_db
def test_every_organization_converges_whatever_happens():
    run_state_machine_as_test(
        Convergence,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
