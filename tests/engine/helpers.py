"""Shared helpers of the engine scenario tests: cycles, delivery tricks, an independent oracle.

The oracle (`expected_contacts`) recomputes from the organizations' own directories and Export
Config what every other organization should hold, without using the engine's export code.
"""

import hashlib
import threading
from collections import Counter
from contextlib import contextmanager

import pytest
from django.db import connections, transaction

from directory import changes
from directory.constants import Kind
from directory.models import Container, Organization, Recipient, allocate_usns
from master.models import AllowedRequestor, GlobalEntry, MasterConfig
from requestor import verify
from requestor.cycle import run_cycle, sync_all
from requestor.models import Conflict, FilteredEntry, RequestorConfig, Run
from tests.engine.conftest import Org, Scenario, build_scenario
from transport import signing, wire
from transport.constants import AddressType, Direction, Status
from transport.digest import Tally
from transport.inbox import process_pending, pump
from transport.models import Message
from transport.outbox import deliver_locally, receive


def in_thread(target, *args) -> threading.Thread:
    """Run `target(*args)` in a thread of its own (its own database connection), started."""

    def run():
        try:
            target(*args)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def cycle(org) -> Run:
    """One requestor cycle of `org` with everything delivered and processed; the finished run."""
    run = run_cycle(org.config.pk)
    pump()
    org.refresh()
    return Run.objects.get(pk=run.pk)


def refresh(scenario):
    """Reload every organization and requestor configuration the test holds in memory.

    Saving a stale RequestorConfig would write back old USNs, epoch and sequence.
    """
    for org in scenario.orgs.values():
        org.refresh().organization.refresh_from_db()
    scenario.master.refresh_from_db()
    return scenario


def synced(scenario):
    """The scenario after its initial sync, checked, with fresh objects."""
    # Two rounds carry everything (the third of sync_all would only confirm it); checked below.
    sync_all(max_rounds=2)
    assert_converged(scenario)
    return refresh(scenario)


def load_scenario() -> Scenario:
    """The scenario's objects as the database holds them now."""
    orgs = {}
    for organization in Organization.objects.filter(name__in=["ORG1", "ORG2", "ORG3"]):
        containers = {
            container.name: container
            for container in Container.objects.filter(organization=organization, parent=None)
        }
        people = Recipient.objects.filter(organization=organization, global_key__isnull=True)
        orgs[organization.name] = Org(
            organization,
            containers["Recipients"],
            containers["Contractors"],
            containers["InterOrg"],
            RequestorConfig.objects.get(organization=organization),
            list(people.order_by("pk")),
        )
    return Scenario(MasterConfig.objects.get(organization__name="ORG1"), orgs)


def synced_fixtures(scope: str = "module", prepare=None):
    """Two fixtures for a test module: the scenario after its initial sync, built and checked
    once per `scope` inside a transaction rolled back after it, and, per test, fresh objects
    of it inside the test's own savepoint (the `db` fixture). Assign both:

        synced_base, synced = synced_fixtures()

    `prepare(scenario)` adds to the scenario before the sync. A module using these must not
    use the `scenario` fixture too: both would create ORG1, ORG2 and ORG3.
    """

    @pytest.fixture(scope=scope)
    def synced_base(django_db_setup, django_db_blocker):
        with django_db_blocker.unblock(), transaction.atomic():
            scenario = build_scenario()
            if prepare is not None:
                prepare(scenario)
            synced(scenario)
            yield
            transaction.set_rollback(True)

    @pytest.fixture
    def synced_scenario(synced_base, db) -> Scenario:
        return load_scenario()

    return synced_base, synced_scenario


def queue_cycle(org) -> Run:
    """One requestor cycle of `org` whose export stays queued (not delivered yet)."""
    run = run_cycle(org.config.pk)
    org.refresh()
    return run


def outbound(**filters):
    return Message.objects.filter(direction=Direction.OUTBOUND, **filters).order_by("id")


def inbound(**filters):
    return Message.objects.filter(direction=Direction.INBOUND, **filters).order_by("id")


def queued(**filters):
    return outbound(status=Status.QUEUED, **filters)


def drop_queued(**filters) -> int:
    """Lose every queued outbound message (matching `filters`) in the mail system."""
    count, _ = queued(**filters).delete()
    return count


def exported_people(config: RequestorConfig) -> list[Recipient]:
    """The organization's own recipients its Export Config puts in scope (the oracle's view)."""
    tops = [(row.container, row.kinds()) for row in config.exported_containers.all()]
    people = []
    for person in Recipient.objects.filter(
        organization_id=config.organization_id, global_key__isnull=True
    ).select_related("container"):
        if person.trust_level > config.trust_level or person.hidden_from_others:
            continue
        if any(person.container.is_within(top) and person.kind in kinds for top, kinds in tops):
            people.append(person)
    return people


def exported_view(person: Recipient, config: RequestorConfig) -> tuple[str, str]:
    """(display name, primary SMTP) of a recipient as the other organizations should see it."""
    smtp = person.primary_smtp
    if config.modify_smtp_domain:
        smtp = f"{smtp.rsplit('@', 1)[0]}@{config.modify_smtp_domain}"
    return person.display_name + config.append_display_name, smtp


def _words(text: str) -> set[str]:
    return {word.lower() for word in text.replace(",", " ").replace(";", " ").split()}


def imports(config: RequestorConfig, origin: str, smtp: str) -> bool:
    """Whether the Import Config lets in an entry of `origin` with address `smtp` (the oracle's
    reading of the domains to import and the exclusions)."""
    if origin.lower() in _words(config.excluded_organizations):
        return False
    if smtp.lower() in _words(config.excluded_addresses):
        return False
    return config.import_all_domains or smtp.rpartition("@")[2].lower() in _words(
        config.import_domains
    )


def expected_contacts(scenario, name: str) -> set[tuple[str, str, str]]:
    """(origin, display name, primary SMTP) of every contact organization `name` should hold."""
    expected = set()
    receiving = RequestorConfig.objects.get(organization__name=name)
    for other in scenario.others(name):
        config = RequestorConfig.objects.get(pk=other.config.pk)
        if not config.enabled:
            continue
        for person in exported_people(config):
            view = exported_view(person, config)
            if imports(receiving, other.name, view[1]):
                expected.add((other.name, *view))
    return expected


def contact_set(org) -> set[tuple[str, str, str]]:
    return set(org.contacts().values_list("origin_organization", "display_name", "primary_smtp"))


def snapshot() -> set[tuple[str, str, str, str]]:
    """(organization, global key, display name, primary SMTP) of every contact of every org."""
    return set(
        Recipient.objects.filter(global_key__isnull=False, hidden_at=None).values_list(
            "organization__name", "global_key", "display_name", "primary_smtp"
        )
    )


def assert_no_duplicates() -> None:
    """No organization holds two contacts for one global key or one address."""
    rows = list(
        Recipient.objects.filter(global_key__isnull=False, hidden_at=None).values_list(
            "organization_id", "global_key", "primary_smtp"
        )
    )
    keys = Counter((org, key) for org, key, _ in rows)
    addresses = Counter((org, smtp.lower()) for org, _, smtp in rows)
    assert [k for k, n in keys.items() if n > 1] == []
    assert [a for a, n in addresses.items() if n > 1] == []


def assert_digests_agree(scenario, master_only: bool = False) -> None:
    """The digests kept as changes are written equal the same digests counted from the tables,
    and each organization's side equals its master's: what verification checks every cycle.
    `master_only`: the master's digests alone (the organizations have not synced since)."""
    master = MasterConfig.objects.get(pk=scenario.master.pk)
    live = GlobalEntry.objects.filter(master=master, deleted=False, usn__gt=0)
    everyone = Tally()
    for key, usn in live.values_list("global_key", "usn"):
        everyone.add(key, usn)
    assert (master.reply_digest, master.reply_count) == (everyone.hex, everyone.count)
    for requestor in AllowedRequestor.objects.filter(master=master):
        mine, exported = Tally(), Tally()
        for key, usn, object_id, source_usn in live.filter(requestor=requestor).values_list(
            "global_key", "usn", "object_id", "source_usn"
        ):
            mine.add(key, usn)
            exported.add(str(object_id), source_usn)
        assert (requestor.reply_digest, requestor.reply_count) == (mine.hex, mine.count)
        assert (requestor.export_digest, requestor.export_count) == (exported.hex, exported.count)
        config = RequestorConfig.objects.get(organization__name=requestor.organization_name)
        if master_only or not config.enabled:
            continue
        name = requestor.organization_name
        holdings = Tally()
        contacts = Recipient.objects.filter(organization=config.organization_id)
        shown = contacts.exclude(global_key=None).filter(hidden_at=None)
        for key, usn in shown.values_list("global_key", "master_usn"):
            holdings.add(key, usn)
        for model in (Conflict, FilteredEntry):
            for key, usn in model.objects.filter(config=config).values_list(
                "global_key", "master_usn"
            ):
                holdings.add(key, usn)
        assert verify.holdings(config).hex == holdings.hex, f"{name}: cells drifted"
        assert holdings.hex == everyone.without(mine).hex, f"{name} holds other entries"
        scope = Tally()
        for person in exported_people(config):
            scope.add(str(person.guid), person.usn)
        assert verify.exports(config).hex == scope.hex, f"{name}: cells drifted"
        assert scope.hex == exported.hex, f"the master holds other entries of {name}"


def assert_converged(scenario) -> None:
    """Every organization holds exactly what the oracle says, once, with consistent provenance,
    and the digests prove it."""
    assert_no_duplicates()
    assert_digests_agree(scenario)
    entries = {
        key: (origin, usn)
        for key, origin, usn in GlobalEntry.objects.filter(deleted=False).values_list(
            "global_key", "origin", "usn"
        )
    }
    for name, org in scenario.orgs.items():
        assert contact_set(org) == expected_contacts(scenario, name), name
        container = RequestorConfig.objects.get(pk=org.config.pk).import_container_id
        for contact in org.contacts():
            assert contact.kind == Kind.CUSTOM_RECIPIENT
            assert contact.container_id == container
            # A live entry of the master, as of the master USN the contact was written at.
            assert entries[contact.global_key] == (contact.origin_organization, contact.master_usn)


def decoded_outbound() -> list[tuple[Message, wire.Document]]:
    return [(message, wire.decode(bytes(message.payload))) for message in outbound()]


def messages_for(org, **filters):
    """Inbound messages addressed to `org`'s requestor."""
    return inbound(recipient=org.config.dn, **filters)


def deliver(messages) -> None:
    """Deliver the given queued outbound messages in exactly this order, then process them (in
    arrival order); whatever their processing queues stays queued."""
    pks = [message.pk for message in messages]
    for pk in pks:
        assert deliver_locally(pk), pk
    process_pending()


def deliver_reversed(**filters) -> int:
    """Deliver every queued message (matching `filters`), newest first."""
    messages = list(queued(**filters))
    deliver(reversed(messages))
    return len(messages)


def duplicate(message: Message) -> Message:
    """The mail system delivers a copy of an already received message once more."""
    return receive(
        message.sender,
        message.recipient,
        bytes(message.payload),
        message.address_type,
        signature=message.signature,
        key_fingerprint=message.key_fingerprint,
    )


def send_signed(organization, sender: str, recipient: str, document: dict) -> Message:
    """A hand-made document arriving at `recipient`, signed with `organization`'s key."""
    payload = wire.encode(document)
    signature, key_fingerprint = signing.sign(organization.pk, recipient, payload)
    return receive(
        sender,
        recipient,
        payload,
        AddressType.EX,
        signature=signature,
        key_fingerprint=key_fingerprint,
    )


def person(alias: str) -> Recipient:
    """One of the organization's own recipients (not a contact) by alias."""
    return Recipient.objects.get(alias=alias, global_key__isnull=True)


def rename(alias: str, name: str) -> Recipient:
    recipient = person(alias)
    recipient.display_name = name
    return changes.save_recipient(recipient)


def add_many(org, count: int, prefix: str = "bulk") -> None:
    """`count` mailboxes with long General attributes (so that they fill message parts), in the
    organization's exported container, written in bulk with fresh local USNs."""
    with transaction.atomic():
        first = allocate_usns(org.organization.pk, count)
        people = [
            {
                "organization_id": org.organization.pk,
                "container_id": org.recipients.pk,
                "kind": Kind.MAILBOX,
                "alias": f"{prefix}{number}",
                "primary_smtp": f"{prefix}{number}@{org.organization.mail_domain}",
                "display_name": f"{org.name} {prefix.title()} Person {number:04d}",
                "first_name": f"Firstname{number}",
                "last_name": f"Lastname{number}",
                "title": f"Senior Principal Engineer of Things {number}",
                "department": f"Department of Very Long Department Names {number % 17}",
                "office": f"Building {number % 7}, Floor {number % 5}, Room {number}",
                "address": _noise(number, 300),
                "city": "Springfield",
                "company": f"{org.organization.display_name} Incorporated",
                "phone": f"+1 555 {number:04d}",
                "custom_attribute_1": f"secret-{prefix}{number}",
                "usn": first + number,
            }
            for number in range(count)
        ]
        changes.insert_recipients(
            org.organization.pk, list(people[0]), [list(p.values()) for p in people]
        )


def _noise(seed: int, length: int) -> str:
    """Text that compresses about as badly as real addresses of many different people."""
    text = ""
    while len(text) < length:
        text += hashlib.sha256(f"{seed}-{len(text)}".encode()).hexdigest() + " "
    return text[:length]


@contextmanager
def held(messages):
    """Keep queued messages in the mail system (out of pump's reach) until the block ends."""
    pks = [message.pk for message in messages]
    Message.objects.filter(pk__in=pks, status=Status.QUEUED).update(status=Status.FAILED)
    try:
        yield pks
    finally:
        Message.objects.filter(pk__in=pks).update(status=Status.QUEUED)
