"""Server Type and Master Configuration (the requestor allowlist with addresses and keys)."""

from django.db.models import Max
from django.test import Client
from django.urls import reverse

from console.constants import ConsoleRole
from console.forms import AllowedRequestorForm
from console.models import OrganizationRole
from directory.constants import Role
from directory.factories import RecipientFactory
from master.models import AllowedRequestor, GlobalEntry, LedgerEntry, MasterConfig
from requestor.cycle import sync_all
from tests.console.conftest import make_user
from transport.signing import active_key


def master_client(world, role=ConsoleRole.ADMINISTRATOR) -> Client:
    user = make_user(f"hub-{role}", {world.org1.organization: role})
    client = Client()
    client.force_login(user)
    return client


def allowlist_data(master: MasterConfig, **changes) -> dict:
    rows = list(master.requestors.order_by("pk"))
    data = {
        "enabled": "on",
        "address": master.address,
        "dn": master.dn,
        "max_attachment_size": master.max_attachment_size,
        "tombstone_lifetime_days": master.tombstone_lifetime_days,
        "requestors-TOTAL_FORMS": len(rows) + 1,
        "requestors-INITIAL_FORMS": len(rows),
        "requestors-MIN_NUM_FORMS": 0,
        "requestors-MAX_NUM_FORMS": 1000,
        f"requestors-{len(rows)}-enabled": "on",
    }
    for i, row in enumerate(rows):
        data.update(
            {
                f"requestors-{i}-id": row.pk,
                f"requestors-{i}-master": master.pk,
                f"requestors-{i}-address": row.address,
                f"requestors-{i}-organization_name": row.organization_name,
                f"requestors-{i}-enabled": "on" if row.enabled else "",
            }
        )
    data.update(changes)
    return {key: value for key, value in data.items() if value != ""}


def test_it_changes_the_server_type(world, admin_client_):
    url = reverse("console:server-type", kwargs={"org": "ORG2"})
    response = admin_client_.post(
        url, {"display_name": "Fabrikam", "mail_domain": "org2.example", "role": "both"}
    )
    assert response.status_code == 302
    world.org2.organization.refresh_from_db()
    assert world.org2.organization.role == Role.BOTH
    assert b"Master Configuration" in admin_client_.get(url).content


def test_it_adds_a_requestor_with_its_key(world):
    client = master_client(world)
    key = active_key(world.org3.organization.pk).public_key
    AllowedRequestor.objects.filter(organization_name="ORG3").delete()
    n = world.master.requestors.count()
    response = client.post(
        reverse("console:master-config", kwargs={"org": "ORG1"}),
        allowlist_data(
            world.master,
            **{
                f"requestors-{n}-address": "requestor@org3.example",
                f"requestors-{n}-organization_name": "ORG3",
                f"requestors-{n}-public_key": key,
                "max_attachment_size": 65536,
            },
        ),
    )
    assert response.status_code == 302
    added = AllowedRequestor.objects.get(organization_name="ORG3")
    assert (added.address, added.public_key) == ("requestor@org3.example", key)
    world.master.refresh_from_db()
    assert world.master.max_attachment_size == 65536


def test_it_explains_a_bad_public_key(world):
    response = master_client(world).post(
        reverse("console:master-config", kwargs={"org": "ORG1"}),
        allowlist_data(world.master, **{"requestors-0-public_key": "not a key"}),
    )
    assert response.status_code == 200
    assert b'class="error"' in response.content


def test_it_refuses_to_remove_a_requestor_the_master_holds_entries_of(world):
    sync_all(max_rounds=1)
    org2 = AllowedRequestor.objects.get(organization_name="ORG2")
    assert GlobalEntry.objects.filter(requestor=org2).exists()
    index = list(world.master.requestors.order_by("pk")).index(org2)
    response = master_client(world).post(
        reverse("console:master-config", kwargs={"org": "ORG1"}),
        allowlist_data(world.master, **{f"requestors-{index}-DELETE": "on"}),
    )
    assert response.status_code == 200
    assert "Uncheck Enabled to stop accepting its exports instead" in response.content.decode()
    assert AllowedRequestor.objects.filter(pk=org2.pk).exists()


def test_it_creates_a_master_for_an_organization_without_one(world, admin_client_):
    world.org2.organization.role = Role.BOTH
    world.org2.organization.save()
    response = admin_client_.post(
        reverse("console:master-config", kwargs={"org": "ORG2"}),
        {
            "enabled": "on",
            "address": "master@org2.example",
            "dn": "/o=ORG2/ou=Site2/cn=Recipients/cn=MASTER",
            "max_attachment_size": 2097152,
            "tombstone_lifetime_days": 60,
            "requestors-TOTAL_FORMS": 1,
            "requestors-INITIAL_FORMS": 0,
            "requestors-MIN_NUM_FORMS": 0,
            "requestors-MAX_NUM_FORMS": 1000,
            "requestors-0-address": "requestor@branch.example",
            "requestors-0-organization_name": "BRANCH",
            "requestors-0-enabled": "on",
        },
    )
    assert response.status_code == 302
    master = MasterConfig.objects.get(organization=world.org2.organization)
    assert list(master.requestors.values_list("organization_name", flat=True)) == ["BRANCH"]


def test_it_shows_the_public_key_and_never_the_private_one(world):
    key = active_key(world.org1.organization.pk)
    body = master_client(world, ConsoleRole.OPERATOR).get("/o/ORG1/master/").content.decode()
    assert key.public_key in body and key.fingerprint in body
    assert key.private_key not in body


def test_it_shows_the_masters_view_of_its_requestors(world):
    sync_all(max_rounds=2)
    body = master_client(world, ConsoleRole.OPERATOR).get("/o/ORG1/").content.decode()
    assert "Requestors of this master" in body
    assert "/o=ORG3/ou=Site3/cn=Recipients/cn=REQUESTOR" in body
    assert OrganizationRole.objects.count() == 1


def test_it_refuses_a_tombstone_lifetime_shorter_than_a_delayed_message(world):
    response = master_client(world).post(
        reverse("console:master-config", kwargs={"org": "ORG1"}),
        allowlist_data(world.master, tombstone_lifetime_days=3),
    )

    assert response.status_code == 200
    assert "Keep tombstones at least 12 days" in response.content.decode()
    assert MasterConfig.objects.get(pk=world.master.pk).tombstone_lifetime_days == 60


def test_it_refuses_a_short_tombstone_lifetime_in_the_admin(world, admin_client):
    master = world.master
    url = reverse("admin:master_masterconfig_change", args=[master.pk])
    data = {
        "enabled": "on",
        "address": master.address,
        "dn": master.dn,
        "max_attachment_size": master.max_attachment_size,
        "tombstone_lifetime_days": 3,
        "requestors-TOTAL_FORMS": 0,
        "requestors-INITIAL_FORMS": 0,
        "requestors-MIN_NUM_FORMS": 0,
        "requestors-MAX_NUM_FORMS": 1000,
    }

    response = admin_client.post(url, data)

    assert response.status_code == 200
    assert "Keep tombstones at least 12 days" in response.content.decode()
    assert MasterConfig.objects.get(pk=master.pk).tombstone_lifetime_days == 60


SYNC_STATE = ("usn", "epoch", "sequence", "history", "reply_digest", "reply_count")
REQUESTOR_STATE = ("acked_usn", "reported_master_usn", "sent_master_usn", "last_sequence")
REQUESTOR_STATE += ("reply_digest", "reply_count", "export_digest", "export_count")


def test_saving_the_page_never_writes_back_the_sync_state_it_read(world, monkeypatch):
    """A worker applies an export while the page is being saved, after the page read the master
    and its requestors: the save writes the settings only. Written back from the copy it read,
    the master's USN would step back and the next export would reuse USNs the requestors
    already hold (they would never receive those entries), and the digests would lie."""
    sync_all()
    RecipientFactory(container=world.org2.recipients, display_name="Applied meanwhile")
    client = master_client(world)
    data = allowlist_data(world.master, tombstone_lifetime_days=90)
    meanwhile = {}
    clean = AllowedRequestorForm.clean

    def export_applied_meanwhile(form):
        if not meanwhile:
            sync_all()
            meanwhile["master"] = MasterConfig.objects.values(*SYNC_STATE).get()
            meanwhile["requestors"] = list(
                AllowedRequestor.objects.order_by("pk").values(*REQUESTOR_STATE)
            )
        return clean(form)

    monkeypatch.setattr(AllowedRequestorForm, "clean", export_applied_meanwhile)
    response = client.post(reverse("console:master-config", kwargs={"org": "ORG1"}), data)

    assert response.status_code == 302
    master = MasterConfig.objects.get()
    assert master.tombstone_lifetime_days == 90
    assert MasterConfig.objects.values(*SYNC_STATE).get() == meanwhile["master"]
    requestors = AllowedRequestor.objects.order_by("pk").values(*REQUESTOR_STATE)
    assert list(requestors) == meanwhile["requestors"]
    assert master.usn == LedgerEntry.objects.aggregate(Max("usn"))["usn__max"]


def test_a_copy_read_before_an_export_and_saved_after_it_writes_the_settings_only(world):
    """The same for every other path that saves a copy it read (the admin, a script, a
    command): the settings are written, the protocol's state is left as the export made it."""
    sync_all()
    master = MasterConfig.objects.get()
    requestor = AllowedRequestor.objects.get(organization_name="ORG2")
    RecipientFactory(container=world.org2.recipients, display_name="Applied meanwhile")
    sync_all()
    state = MasterConfig.objects.values(*SYNC_STATE).get()
    requestors = list(AllowedRequestor.objects.order_by("pk").values(*REQUESTOR_STATE))
    assert state["usn"] > master.usn

    master.tombstone_lifetime_days = 90
    master.save()
    requestor.delete_limit = 7
    requestor.save()

    assert MasterConfig.objects.get().tombstone_lifetime_days == 90
    assert AllowedRequestor.objects.get(pk=requestor.pk).delete_limit == 7
    assert MasterConfig.objects.values(*SYNC_STATE).get() == state
    assert list(AllowedRequestor.objects.order_by("pk").values(*REQUESTOR_STATE)) == requestors
