"""An installation upgraded from the version before verification: the migrations count the
digests of what it holds, and its next cycles restate and recount what the old version could not
know, so that it verifies in sync."""

import uuid

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from transport.digest import Tally

BEFORE = [
    ("directory", "0003_ldap_directories"),
    ("master", "0003_public_key_validator"),
    ("requestor", "0006_unstripped_suffix"),
    ("transport", "0003_sender_sequence_index"),
]
AFTER = [
    ("directory", "0006_own_usn"),
    ("master", "0005_count_digests_and_chain"),
    ("requestor", "0008_after_upgrade"),
    ("transport", "0004_inbound_mail_once"),
]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def latest_schema_after():
    """The tests after this one (same process) need every migration applied again."""
    yield
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("latest_schema_after")
def test_the_migrations_count_what_an_old_installation_holds():
    old = migrate(BEFORE)
    Organization = old.get_model("directory", "Organization")
    Site = old.get_model("directory", "Site")
    Container = old.get_model("directory", "Container")
    Recipient = old.get_model("directory", "Recipient")
    org = Organization.objects.create(name="ORG2", display_name="Two", usn=3)
    site = Site.objects.create(organization=org, name="Site")
    people = Container.objects.create(organization=org, site=site, name="People", dn="/o=ORG2/x")
    own = Recipient.objects.create(
        organization=org,
        container=people,
        alias="ada",
        display_name="Ada",
        usn=2,
        primary_smtp="ada@org2.example",
    )
    contact = Recipient.objects.create(
        organization=org,
        container=people,
        alias="alan",
        display_name="Alan",
        usn=3,
        primary_smtp="alan@org3.example",
        global_key="ORG3:1",
        master_usn=7,
    )
    MasterConfig = old.get_model("master", "MasterConfig")
    AllowedRequestor = old.get_model("master", "AllowedRequestor")
    GlobalEntry = old.get_model("master", "GlobalEntry")
    LedgerEntry = old.get_model("master", "LedgerEntry")
    master = MasterConfig.objects.create(organization=org, address="m@org2.example", dn="/o=M")
    requestor = AllowedRequestor.objects.create(
        master=master, address="r@org2.example", organization_name="ORG2"
    )
    # An old full export stamped Ada with its snapshot USN 9, not her own USN 2.
    entry_id = uuid.uuid4()
    GlobalEntry.objects.create(
        master=master,
        requestor=requestor,
        object_id=entry_id,
        global_key=f"ORG2:{entry_id}",
        origin="ORG2",
        kind="mailbox",
        source_usn=9,
        usn=1,
    )
    LedgerEntry.objects.create(
        master=master,
        usn=1,
        global_key=f"ORG2:{entry_id}",
        origin="ORG2",
        op="upsert",
        source_usn=9,
    )
    RequestorConfig = old.get_model("requestor", "RequestorConfig")
    config = RequestorConfig.objects.create(
        organization=org,
        address="r@org2.example",
        dn="/o=ORG2/r",
        master_address="/o=M",
        requestor_usn=9,
        master_usn=7,
    )
    old.get_model("requestor", "Conflict").objects.create(
        config=config,
        global_key="ORG3:2",
        origin="ORG3",
        display_name="Grace",
        address="ada@org2.example",
        reason="taken",
    )

    new = migrate(AFTER)

    cells = new.get_model("directory", "DigestCell").objects.filter(organization_id=org.pk)
    by_kind = {cell.imported: (cell.digest, cell.count) for cell in cells}
    ada, alan = Tally(), Tally()
    ada.add(str(own.guid), 2)
    alan.add(contact.global_key, 7)
    assert by_kind == {False: (ada.hex, 1), True: (alan.hex, 1)}
    requestor = new.get_model("master", "AllowedRequestor").objects.get()
    exported = Tally()
    exported.add(str(entry_id), 9)
    assert (requestor.export_digest, requestor.export_count) == (exported.hex, 1)
    ledger = new.get_model("master", "LedgerEntry").objects.get()
    assert len(ledger.chain) == 32
    assert new.get_model("master", "MasterConfig").objects.get().history == ledger.chain
    config = new.get_model("requestor", "RequestorConfig").objects.get()
    assert config.full_reply_pending and config.exported_scope == {"unknown": True}
    conflicts = Tally()
    conflicts.add("ORG3:2", 0)
    assert (config.set_aside_digest, config.set_aside_count) == (conflicts.hex, 1)
