"""The foreign keys checked by triggers instead of constraints (directory.references) keep what
a foreign key keeps, on PostgreSQL and on SQLite: a row naming a row that is not there is
refused, whether inserted alone, in bulk or by COPY, or changed to name it; Django's own deletes
do what on_delete says. On PostgreSQL, a row still named cannot be deleted behind Django's back
either, and a row inserted while another session deletes the row it names is refused once that
delete commits, as with a foreign key. (SQLite does not check deletes: see the module.)"""

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.apps import apps
from django.db import IntegrityError, connection, transaction
from django.db.models import ForeignKey, ProtectedError

from directory import changes
from directory.bulk import copy_insert
from directory.factories import ContainerFactory
from directory.models import Container, Recipient
from master.factories import AllowedRequestorFactory, MasterConfigFactory
from master.models import GlobalEntry, LedgerEntry, MasterConfig
from requestor.factories import RequestorConfigFactory
from requestor.models import ImportedChange, RequestorConfig, Run
from transport.constants import Direction, Status
from transport.models import Message

_count = iter(range(1, 1_000_000))


def recipient(container_id: int) -> Recipient:
    n = next(_count)
    organization_id = Container.objects.values_list("organization_id", flat=True).first()
    return Recipient(
        organization_id=organization_id,
        container_id=container_id,
        display_name=f"Someone {n}",
        alias=f"someone{n}",
        primary_smtp=f"someone{n}@example.org",
        usn=n,
    )


def global_entry(requestor_id: int) -> GlobalEntry:
    n = next(_count)
    master_id = MasterConfig.objects.values_list("pk", flat=True).first()
    return GlobalEntry(
        master_id=master_id,
        requestor_id=requestor_id,
        object_id=uuid.uuid4(),
        global_key=f"BRANCH:{n}",
        origin="BRANCH",
        kind="mailbox",
        source_usn=n,
    )


def ledger_entry(master_id: int | None = None, message_id: int | None = None) -> LedgerEntry:
    n = next(_count)
    if master_id is None:
        master_id = MasterConfig.objects.values_list("pk", flat=True).first()
    return LedgerEntry(
        master_id=master_id,
        usn=n,
        global_key=f"BRANCH:{n}",
        origin="BRANCH",
        op="add",
        message_id=message_id,
    )


def imported_change(run_id: int) -> ImportedChange:
    run = Run.objects.filter(pk=run_id).select_related("config").first()
    organization_id = (
        run.config.organization_id
        if run
        else RequestorConfig.objects.values_list("organization_id", flat=True).first()
    )
    return ImportedChange(
        organization_id=organization_id,
        global_key=f"BRANCH:{next(_count)}",
        origin="BRANCH",
        op="added",
        run_id=run_id,
    )


def message() -> Message:
    return Message.objects.create(
        direction=Direction.INBOUND,
        status=Status.PROCESSED,
        sender="a@example.org",
        recipient="b@example.org",
    )


@dataclass
class Reference:
    """A key checked by triggers: how to make the row it names, and a row naming a pk."""

    name: str
    parent: Callable[[], object]
    child: Callable[[int], object]
    # What Django does to the children when the parent is deleted.
    on_delete: str

    def __str__(self) -> str:
        return self.name


def _with_master(make):
    def made():
        MasterConfigFactory()
        return make()

    return made


REFERENCES = [
    Reference("Recipient.container", ContainerFactory, recipient, "protect"),
    Reference("GlobalEntry.requestor", AllowedRequestorFactory, global_entry, "protect"),
    Reference("LedgerEntry.master", MasterConfigFactory, ledger_entry, "cascade"),
    Reference(
        "LedgerEntry.message",
        _with_master(message),
        lambda pk: ledger_entry(message_id=pk),
        "set_null",
    ),
    Reference(
        "ImportedChange.run",
        lambda: Run.objects.create(config=RequestorConfigFactory(), trigger="manual"),
        imported_change,
        "set_null",
    ),
]


def saved_row(reference: Reference):
    """A parent row, and a row of `reference` naming it, saved."""
    parent = reference.parent()
    with changes.writing():
        row = reference.child(parent.pk)
        row.save()
    return parent, row


def model_and_field(reference: Reference):
    model_name, field_name = reference.name.split(".")
    model = next(m for m in apps.get_models() if m.__name__ == model_name)
    return model, model._meta.get_field(field_name)


def missing_pk(parent) -> int:
    return type(parent).objects.order_by("-pk").values_list("pk", flat=True).first() + 1000


def refused(write) -> None:
    """`write` fails as a foreign key would fail it, and leaves nothing behind."""
    with pytest.raises(IntegrityError), transaction.atomic(), changes.writing():
        write()


def test_every_key_without_a_constraint_is_covered_or_checked_by_triggers():
    """A new `db_constraint=False` must either be covered by another constraint (named here,
    with the reason in its model) or be checked by CheckReferences."""
    covered = {
        "Recipient.organization",  # the container's, and the container's organization
        "GlobalEntry.master",  # the requestor's, and the requestor's master
        "ImportedChange.organization",  # the run's, and the run's requestor
    }
    checked = {reference.name for reference in REFERENCES}
    unconstrained = {
        f"{model.__name__}.{field.name}"
        for model in apps.get_models()
        for field in model._meta.get_fields()
        if isinstance(field, ForeignKey) and not field.db_constraint
    }
    assert unconstrained == covered | checked


@pytest.mark.django_db
@pytest.mark.parametrize("reference", REFERENCES, ids=str)
def test_a_row_naming_a_row_that_is_not_there_is_refused(reference):
    parent = reference.parent()
    model, _ = model_and_field(reference)
    before = model.objects.count()
    good, bad = reference.child(parent.pk), reference.child(missing_pk(parent))

    refused(lambda: model.objects.bulk_create([good, bad]))
    refused(lambda: model.objects.bulk_create([reference.child(missing_pk(parent))]))
    assert model.objects.count() == before

    with changes.writing():
        reference.child(parent.pk).save()
    assert model.objects.count() == before + 1


@pytest.mark.django_db
@pytest.mark.parametrize("reference", REFERENCES, ids=str)
def test_a_copy_naming_a_row_that_is_not_there_is_refused(reference):
    parent = reference.parent()
    model, field = model_and_field(reference)
    rows = [reference.child(parent.pk), reference.child(missing_pk(parent))]
    fields = [
        f.attname
        for f in model._meta.concrete_fields
        if not (f.primary_key or getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False))
    ]
    values = [tuple(getattr(row, name) for name in fields) for row in rows]
    before = model.objects.count()

    refused(lambda: copy_insert(model, fields, values))

    assert model.objects.count() == before
    assert copy_insert(model, fields, values[:1]) == 1


@pytest.mark.django_db
@pytest.mark.parametrize("reference", REFERENCES, ids=str)
def test_a_row_changed_to_name_a_row_that_is_not_there_is_refused(reference):
    parent, row = saved_row(reference)
    model, field = model_and_field(reference)
    rows = model.objects.filter(pk=row.pk)

    refused(lambda: rows.update(**{field.attname: missing_pk(parent)}))

    assert rows.values_list(field.attname, flat=True).get() == parent.pk
    other = reference.parent()
    with changes.writing():
        rows.update(**{field.attname: other.pk})  # another row that is there: fine
    if field.null:
        rows.update(**{field.attname: None})
        assert rows.values_list(field.attname, flat=True).get() is None


@pytest.mark.django_db
@pytest.mark.parametrize("reference", REFERENCES, ids=str)
def test_django_deletes_what_on_delete_says(reference):
    parent, row = saved_row(reference)
    model, field = model_and_field(reference)

    if reference.on_delete == "protect":
        with pytest.raises(ProtectedError):
            parent.delete()
        assert model.objects.filter(pk=row.pk).exists()
        return
    parent.delete()
    assert not type(parent).objects.filter(pk=parent.pk).exists()
    if reference.on_delete == "cascade":
        assert not model.objects.filter(pk=row.pk).exists()
    else:
        assert model.objects.filter(pk=row.pk).values_list(field.attname, flat=True).get() is None


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize("reference", REFERENCES, ids=str)
def test_a_row_still_named_is_not_deleted_behind_djangos_back(reference):
    parent = reference.parent()
    with changes.writing():
        reference.child(parent.pk).save()
    table = connection.ops.quote_name(type(parent)._meta.db_table)

    def delete_in_sql():
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {table} WHERE id = %s", [parent.pk])

    refused(delete_in_sql)
    assert type(parent).objects.filter(pk=parent.pk).exists()


def waiting_on_a_lock(query_start: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query LIKE %s",
            [query_start + "%"],
        )
        return cursor.fetchone()[0] > 0


def elsewhere(work, waits_on: str) -> tuple[threading.Thread, dict]:
    """Run `work` in another session, and return once it waits on a lock in a statement that
    starts with `waits_on`; the outcome says whether it ended ("done") or raised ("error")."""
    outcome: dict = {}

    def run():
        try:
            with transaction.atomic(), changes.writing():
                work()
            outcome["done"] = True
        except Exception as exc:  # reported by the test
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 30
    while not waiting_on_a_lock(waits_on):
        assert time.monotonic() < deadline, outcome
        time.sleep(0.02)
    return thread, outcome


def delete_container(pk: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM directory_container WHERE id = %s", [pk])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_row_inserted_while_another_session_deletes_the_row_it_names_is_refused():
    """The inserting statement share-locks the rows it names, as a foreign key does: it waits
    for the delete, and is refused once it commits."""
    container = ContainerFactory()
    row = recipient(container.pk)

    with transaction.atomic():
        delete_container(container.pk)
        other, outcome = elsewhere(
            lambda: Recipient.objects.bulk_create([row]), 'INSERT INTO "directory_recipient"'
        )
    other.join(30)

    assert isinstance(outcome.get("error"), IntegrityError), outcome
    assert not Recipient.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_row_deleted_while_another_session_inserts_a_row_naming_it_is_refused():
    """The other way round: the delete waits for the insert's lock, then sees its row."""
    container = ContainerFactory()

    with transaction.atomic(), changes.writing():
        Recipient.objects.bulk_create([recipient(container.pk)])
        other, outcome = elsewhere(
            lambda: delete_container(container.pk), "DELETE FROM directory_container"
        )
    other.join(30)

    assert isinstance(outcome.get("error"), IntegrityError), outcome
    assert Recipient.objects.filter(container=container).count() == 1
