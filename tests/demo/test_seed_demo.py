"""The demo seed: three believable organizations, ready to sync, created once."""

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db.models import Count

from demo.plan import IMPORTED, ORGANIZATIONS, plan_recipients
from directory import changes
from directory.constants import Kind
from directory.factories import OrganizationFactory
from directory.models import Container, Organization, Recipient, Site, Tombstone
from master.models import AllowedRequestor, MasterConfig
from requestor.models import ExportedContainer, RequestorConfig

pytestmark = pytest.mark.django_db

LOGIN = re.compile(r"Log in at http://127\.0\.0\.1:8000/ as admin / (\S+)")


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    return tmp_path


def seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def state() -> dict:
    """Everything a second run must leave as it was."""
    models = (Organization, Site, Container, Recipient, Tombstone, MasterConfig)
    models += (AllowedRequestor, RequestorConfig, ExportedContainer, get_user_model())
    return {
        "counts": {m.__name__: m.objects.count() for m in models},
        "members": Recipient.members.through.objects.count(),
        "org_usns": list(Organization.objects.values_list("name", "usn")),
        "recipients": list(Recipient.objects.values_list("pk", "usn", "changed_at")),
        "requestors": list(RequestorConfig.objects.order_by("pk").values()),
        "users": list(get_user_model().objects.values_list("pk", "password", "last_login")),
    }


def test_it_seeds_three_organizations_ready_to_sync():
    seed()

    assert list(Organization.objects.values_list("name", "display_name", "role")) == [
        ("ORG1", "Contoso Holding", "both"),
        ("ORG2", "Fabrikam", "requestor"),
        ("ORG3", "Northwind Traders", "requestor"),
    ]
    master = MasterConfig.objects.get()
    assert (master.organization.name, master.address) == ("ORG1", "master@org1.example")
    assert master.dn == "/o=ORG1/ou=Site1/cn=Recipients/cn=MASTER"
    for config in RequestorConfig.objects.select_related("organization", "import_container"):
        config.full_clean()
        assert config.master_address == master.dn
        assert config.import_container.name == IMPORTED
        assert master.requestors.get(organization_name=config.organization.name).address == (
            config.dn
        )
        for exported in config.exported_containers.all():
            exported.full_clean()
    fabrikam = RequestorConfig.objects.get(organization__name="ORG2")
    assert (fabrikam.append_display_name, fabrikam.modify_smtp_domain) == (
        " (Fabrikam)",
        "fabrikam.example",
    )


def test_it_fills_every_organization_with_valid_recipients_of_every_kind():
    seed()

    for org in Organization.objects.all():
        recipients = Recipient.objects.filter(organization=org)
        assert 200 <= recipients.count() <= 300
        assert set(recipients.values_list("kind", flat=True)) == set(Kind.values)
        assert list(recipients.order_by("usn").values_list("usn", flat=True)) == list(
            range(1, org.usn + 1)
        )
    for recipient in Recipient.objects.select_related("container"):
        recipient.full_clean()
    lists = Recipient.objects.filter(kind=Kind.DISTRIBUTION_LIST).annotate(n=Count("members"))
    assert all(dl.n > 0 for dl in lists)
    assert not Recipient.objects.filter(kind=Kind.CUSTOM_RECIPIENT, target_address="").exists()
    assert not Recipient.objects.filter(kind=Kind.MAILBOX, custom_attribute_1="").exists()
    levels = set(Recipient.objects.values_list("trust_level", flat=True))
    assert {0, 60} <= levels and max(levels) >= 90
    assert not Recipient.objects.filter(container__name=IMPORTED).exists()


def test_it_changes_nothing_when_run_again():
    seed()
    before = state()

    output = seed()

    assert state() == before
    assert output.count("(0 added)") == len(ORGANIZATIONS)


def test_it_prints_the_login_and_keeps_the_password(var_dir):
    first = LOGIN.search(seed())
    password_file = var_dir / "demo-admin-password"

    assert first is not None
    assert password_file.read_text().strip() == first.group(1)
    assert password_file.stat().st_mode & 0o777 == 0o600
    assert get_user_model().objects.get(username="admin").check_password(first.group(1))
    assert LOGIN.search(seed()).group(1) == first.group(1)


def test_it_says_so_when_the_admin_password_was_changed():
    seed()
    admin = get_user_model().objects.get(username="admin")
    admin.set_password("changed by the operator")
    admin.save()

    output = seed()

    assert LOGIN.search(output) is None
    assert "changepassword admin" in output


def test_it_only_prints_the_login_if_organizations_exist():
    OrganizationFactory()

    output = seed("--if-empty")

    assert "nothing seeded" in output
    assert LOGIN.search(output)
    assert Organization.objects.count() == 1
    assert not Recipient.objects.exists()


def test_it_seeds_an_empty_database_even_with_if_empty():
    seed("--if-empty")
    assert Organization.objects.count() == len(ORGANIZATIONS)


def test_it_adds_only_what_is_missing():
    seed()
    victim = Recipient.objects.get(organization__name="ORG3", alias="dl-all-staff")
    changes.delete_recipients([victim])
    usn = Organization.objects.get(name="ORG3").usn
    others = list(Organization.objects.exclude(name="ORG3").values_list("usn", flat=True))

    output = seed()

    restored = Recipient.objects.get(organization__name="ORG3", alias="dl-all-staff")
    assert restored.usn == usn + 1
    assert restored.members.count() == len(
        [p for p in plan_recipients(ORGANIZATIONS[2]) if p.alias == "dl-all-staff"][0].members
    )
    assert "ORG3 Northwind Traders: 217 recipients (1 added)." in output
    assert list(Organization.objects.exclude(name="ORG3").values_list("usn", flat=True)) == others


@pytest.mark.parametrize("spec", ORGANIZATIONS, ids=lambda spec: spec.name)
def test_it_plans_the_same_unique_recipients_every_time(spec):
    planned = plan_recipients(spec)

    assert planned == plan_recipients(spec)
    for name in ("alias", "primary_smtp"):
        values = [p.fields[name].lower() for p in planned]
        assert len(set(values)) == len(values)
    aliases = {p.alias for p in planned}
    assert all(set(p.members) <= aliases for p in planned)
