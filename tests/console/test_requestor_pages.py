"""Export Config, Import Config and Schedule, and their buttons, as an administrator uses them."""

from unittest import mock

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from directory.factories import ContainerFactory, OrganizationFactory
from directory.models import Recipient
from requestor import schedule
from requestor.constants import RunStatus, Trigger
from requestor.cycle import run_cycle
from requestor.models import ExportedContainer, RequestorConfig, Run
from transport.inbox import pump


def export_data(config: RequestorConfig, **changes) -> dict:
    """The Export Config form as the page posts it, with `changes` applied."""
    rows = list(config.exported_containers.order_by("pk"))
    data = {
        "enabled": "on",
        "address": config.address,
        "dn": config.dn,
        "append_display_name": config.append_display_name,
        "modify_smtp_domain": config.modify_smtp_domain,
        "max_message_size": config.max_message_size,
        "trust_level": config.trust_level,
        "exported-TOTAL_FORMS": len(rows) + 1,
        "exported-INITIAL_FORMS": len(rows),
        "exported-MIN_NUM_FORMS": 0,
        "exported-MAX_NUM_FORMS": 1000,
    }
    for i, row in enumerate(rows):
        data.update(
            {
                f"exported-{i}-id": row.pk,
                f"exported-{i}-config": config.pk,
                f"exported-{i}-container": row.container_id,
                f"exported-{i}-mailboxes": "on" if row.mailboxes else "",
                f"exported-{i}-distribution_lists": "on" if row.distribution_lists else "",
            }
        )
    # The empty extra row, as the browser posts it (the model's default kinds checked).
    extra = len(rows)
    data[f"exported-{extra}-mailboxes"] = "on"
    data[f"exported-{extra}-distribution_lists"] = "on"
    data.update(changes)
    return {key: value for key, value in data.items() if value != ""}


def import_data(config: RequestorConfig, **changes) -> dict:
    data = {
        "master_address": config.master_address,
        "master_address_type": config.master_address_type,
        "master_public_key": config.master_public_key,
        "import_container": config.import_container_id or "",
        "import_all_domains": "on",
        "import_domains": "",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value != ""}


def org_url(world, name: str) -> str:
    return reverse(name, kwargs={"org": world.org2.name})


def test_it_shows_both_usns_on_export_config(world, operator_client):
    RequestorConfig.objects.filter(pk=world.org2.config.pk).update(requestor_usn=41, master_usn=17)
    response = operator_client.get(org_url(world, "console:export-config"))
    assert b'id="requestor-usn">41<' in response.content
    assert b'id="master-usn">17<' in response.content
    # Operators see the options, disabled, and no button that changes anything.
    assert b"disabled" in response.content
    assert b"Import All Recipients" not in response.content


def test_it_saves_an_export_config_option(world, admin_client_):
    config = world.org2.config
    RequestorConfig.objects.filter(pk=config.pk).update(requestor_usn=9, master_usn=4)
    response = admin_client_.post(
        org_url(world, "console:export-config"),
        export_data(config, append_display_name=" (Fabrikam)"),
    )
    assert response.status_code == 302
    config.refresh_from_db()
    assert config.append_display_name == " (Fabrikam)"
    # The next export restates what the new suffix changes; nothing is reset.
    assert (config.requestor_usn, config.master_usn) == (9, 4)


def test_it_adds_an_exported_container_with_its_kinds(world, admin_client_):
    config = world.org2.config
    contractors = ContainerFactory(site=world.org2.recipients.site, name="Contractors")
    response = admin_client_.post(
        org_url(world, "console:export-config"),
        export_data(
            config,
            **{
                "exported-1-container": contractors.pk,
                "exported-1-custom_recipients": "on",
                "exported-1-mailboxes": "",
                "exported-1-distribution_lists": "",
            },
        ),
    )
    assert response.status_code == 302
    row = ExportedContainer.objects.get(config=config, container=contractors)
    assert row.kinds() == {"custom_recipient"}


def test_it_refuses_to_export_the_import_container(world, admin_client_):
    config = world.org2.config
    response = admin_client_.post(
        org_url(world, "console:export-config"),
        export_data(config, **{"exported-1-container": world.org2.imported.pk}),
    )
    assert response.status_code == 200
    assert "imported contacts would be exported again" in response.content.decode()
    assert config.exported_containers.count() == 1


def test_it_refuses_an_exported_container_without_kinds(world, admin_client_):
    contractors = ContainerFactory(site=world.org2.recipients.site, name="Contractors")
    data = export_data(world.org2.config, **{"exported-1-container": contractors.pk})
    del data["exported-1-mailboxes"], data["exported-1-distribution_lists"]
    response = admin_client_.post(org_url(world, "console:export-config"), data)
    assert "Check at least one kind" in response.content.decode()


def test_it_refuses_a_container_of_another_organization(world, admin_client_):
    data = export_data(world.org2.config, **{"exported-1-container": world.org3.recipients.pk})
    response = admin_client_.post(org_url(world, "console:export-config"), data)
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()


def test_it_refuses_an_import_container_inside_an_exported_one(world, admin_client_):
    config = world.org2.config
    inside = ContainerFactory(
        site=world.org2.recipients.site, parent=world.org2.recipients, name="Nested"
    )
    response = admin_client_.post(
        org_url(world, "console:import-config"), import_data(config, import_container=inside.pk)
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "lies inside, the exported container /o=ORG2/ou=Site2/cn=Recipients" in body
    config.refresh_from_db()
    assert config.import_container == world.org2.imported


def test_it_checks_the_master_address_type(world, admin_client_):
    response = admin_client_.post(
        org_url(world, "console:import-config"),
        import_data(world.org2.config, master_address_type="smtp"),
    )
    assert "choose the EX address type" in response.content.decode()
    response = admin_client_.post(
        org_url(world, "console:import-config"),
        import_data(
            world.org2.config, master_address="master@hub.example", master_address_type="ex"
        ),
    )
    assert "An EX address is the master&#x27;s distinguished name" in response.content.decode()


def test_it_saves_the_domains_to_import(world, admin_client_):
    config = world.org2.config
    RequestorConfig.objects.filter(pk=config.pk).update(master_usn=12)
    response = admin_client_.post(
        org_url(world, "console:import-config"),
        {
            **import_data(config, import_domains="org1.example, ORG3.example"),
            "import_all_domains": "",
        },
    )
    assert response.status_code == 302
    config.refresh_from_db()
    assert config.domains() == ["org1.example", "org3.example"]
    # The next cycle asks for the full reply that applies them; nothing is reset here.
    assert config.master_usn == 12


def test_it_saves_the_exclusions_and_the_import_guard(world, admin_client_):
    config = world.org2.config
    data = import_data(
        config,
        excluded_addresses="Boss@Org3.example\nceo@org1.example",
        excluded_organizations="ORG9",
        import_delete_limit=40,
        import_delete_percent=15,
        import_delete_floor=3,
    )
    response = admin_client_.post(org_url(world, "console:import-config"), data)
    assert response.status_code == 302
    config.refresh_from_db()
    assert config.excluded() == ({"boss@org3.example", "ceo@org1.example"}, {"org9"})
    assert (
        config.import_delete_limit,
        config.import_delete_percent,
        config.import_delete_floor,
    ) == (40, 15, 3)


def test_it_explains_bad_exclusions_and_thresholds(world, admin_client_):
    config = world.org2.config
    data = import_data(config, excluded_addresses="nobody", import_delete_percent=101)
    body = admin_client_.post(org_url(world, "console:import-config"), data).content.decode()
    assert "Not an SMTP address: nobody." in body
    assert "Ensure this value is less than or equal to 100." in body
    config.refresh_from_db()
    assert config.excluded_addresses == ""


def test_it_asks_for_the_domains_when_not_importing_all(world, admin_client_):
    data = import_data(world.org2.config)
    del data["import_all_domains"]
    response = admin_client_.post(org_url(world, "console:import-config"), data)
    assert "List the domains to import" in response.content.decode()


def cycle(org) -> Run:
    run = run_cycle(org.config.pk)
    pump()
    return run


def test_it_runs_execute_now_and_imports_the_other_organizations(world, admin_client_):
    cycle(world.org1)
    cycle(world.org3)
    response = admin_client_.post(org_url(world, "console:execute-now"), follow=True)
    run = Run.objects.filter(config=world.org2.config).get()
    assert (run.trigger, run.status, run.requested_by.username) == (
        Trigger.MANUAL,
        RunStatus.OK,
        "alice",
    )
    assert run.imported == 4
    assert f"Run {run.pk} of ORG2: Completed." in response.content.decode()
    contacts = Recipient.objects.filter(
        organization=world.org2.organization, global_key__isnull=False
    )
    assert set(contacts.values_list("origin_organization", flat=True)) == {"ORG1", "ORG3"}


def test_it_queues_execute_now_when_workers_run(
    world, admin_client_, settings, django_capture_on_commit_callbacks
):
    settings.INTERORG_DISPATCH_TASKS = True
    with (
        mock.patch("requestor.tasks.run_requestor_cycle.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = admin_client_.post(org_url(world, "console:execute-now"), follow=True)
    run = Run.objects.get()
    assert run.status == RunStatus.QUEUED
    delay.assert_called_once_with(
        world.org2.config.pk, "manual", response.context["user"].pk, "", run.pk
    )
    assert f"Run {run.pk} of ORG2 is queued for the workers." in response.content.decode()


def test_it_lets_an_operator_with_the_permission_execute_now(world, operator, operator_client):
    operator.user_permissions.add(Permission.objects.get(codename="execute_now"))
    response = operator_client.post(org_url(world, "console:execute-now"))
    assert response.status_code == 302
    assert Run.objects.filter(config=world.org2.config).count() == 1


def test_it_asks_before_import_all(world, admin_client_):
    RequestorConfig.objects.filter(pk=world.org2.config.pk).update(master_usn=30)
    response = admin_client_.get(org_url(world, "console:import-all"))
    assert b"resets the master USN to 0" in response.content
    world.org2.config.refresh_from_db()
    assert world.org2.config.master_usn == 30


@pytest.mark.parametrize(
    "action, field", [("console:import-all", "master_usn"), ("console:export-all", "requestor_usn")]
)
def test_it_resets_the_usn_and_queues_a_cycle(
    world, admin_client_, settings, django_capture_on_commit_callbacks, action, field
):
    settings.INTERORG_DISPATCH_TASKS = True
    RequestorConfig.objects.filter(pk=world.org2.config.pk).update(master_usn=30, requestor_usn=8)
    with (
        mock.patch("requestor.tasks.run_requestor_cycle.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = admin_client_.post(org_url(world, action), {"confirm": "yes"})
    assert response.status_code == 302
    delay.assert_called_once()
    world.org2.config.refresh_from_db()
    assert getattr(world.org2.config, field) == 0


def test_it_runs_export_all_inline_as_a_full_export(world, admin_client_):
    cycle(world.org2)
    admin_client_.post(org_url(world, "console:export-all"), {"confirm": "yes"})
    run = Run.objects.filter(config=world.org2.config).first()
    assert run.full_export and run.status == RunStatus.OK


def test_it_saves_a_schedule(world, admin_client_):
    url = org_url(world, "console:schedule")
    response = admin_client_.post(url, {"kind": "every", "minutes": 15})
    assert response.status_code == 302
    assert schedule.describe(world.org2.config) == "every 15 minutes"
    admin_client_.post(url, {"kind": "daily", "times": "14:30, 02:00"})
    assert schedule.describe(world.org2.config) == "daily at 02:00, 14:30"
    page = admin_client_.get(url).content.decode()
    assert "daily at 02:00, 14:30" in page and "next run" in page


def test_it_explains_a_bad_time_of_day(world, admin_client_):
    response = admin_client_.post(
        org_url(world, "console:schedule"), {"kind": "daily", "times": "25:00"}
    )
    assert "is not a time of day" in response.content.decode()
    assert schedule.describe(world.org2.config).startswith("never")


def test_it_sets_up_a_requestor(world, db, django_user_model):
    from console.models import OrganizationRole

    org = OrganizationFactory(name="ORG5", mail_domain="org5.example")
    user = django_user_model.objects.create_user("eve")
    OrganizationRole.objects.create(user=user, organization=org, role="administrator")
    from django.test import Client

    client = Client()
    client.force_login(user)
    assert b"Configure the requestor" in client.get("/o/ORG5/requestor/export/").content
    response = client.post(
        "/o/ORG5/requestor/setup/",
        {
            "enabled": "on",
            "address": "requestor@org5.example",
            "dn": "/o=ORG5/ou=Site5/cn=Recipients/cn=REQUESTOR",
            "master_address": "master@hub.example",
        },
    )
    assert response.status_code == 302
    assert RequestorConfig.objects.get(organization=org).master_address == "master@hub.example"
