"""Export and Import Config: validation that prevents loops, and option changes that resync."""

import pytest
from django.core.exceptions import ValidationError

from directory.models import Container
from requestor.models import ExportedContainer


def errors_of(instance) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        instance.full_clean()
    return caught.value.message_dict


def test_it_refuses_an_import_container_that_is_exported(scenario):
    config = scenario["ORG2"].config
    config.import_container = scenario["ORG2"].recipients

    errors = errors_of(config)

    assert errors["import_container"] == [
        "/o=ORG2/ou=Site2/cn=Recipients is, or lies inside, the exported container "
        "/o=ORG2/ou=Site2/cn=Recipients; imported contacts would be exported again. Choose a "
        "container outside every exported one."
    ]


def test_it_refuses_an_import_container_inside_an_exported_one(scenario):
    org2 = scenario["ORG2"]
    inner = Container.objects.create(
        site=org2.recipients.site, parent=org2.recipients, name="Partners"
    )
    org2.config.import_container = inner

    errors = errors_of(org2.config)

    assert (
        "/o=ORG2/ou=Site2/cn=Recipients/cn=Partners is, or lies inside, the exported"
        in (errors["import_container"][0])
    )


def test_it_refuses_to_export_a_container_holding_the_import_container(scenario):
    org2 = scenario["ORG2"]
    outer = Container.objects.create(site=org2.recipients.site, name="Everything")
    org2.imported.parent = outer
    org2.imported.save()
    org2.config.refresh_from_db()
    exported = ExportedContainer(config=org2.config, container=outer)

    errors = errors_of(exported)

    assert errors["container"] == [
        "The import container /o=ORG2/ou=Site2/cn=Everything/cn=InterOrg lies inside "
        "/o=ORG2/ou=Site2/cn=Everything; imported contacts would be exported again."
    ]
    # The same container exported directly is refused too.
    errors = errors_of(ExportedContainer(config=org2.config, container=org2.imported))
    assert "lies inside" in errors["container"][0]


def test_it_accepts_the_scenario_configuration(scenario):
    for org in scenario.orgs.values():
        org.config.full_clean()
        for exported in org.config.exported_containers.all():
            exported.full_clean()


def test_it_refuses_a_container_of_another_organization(scenario):
    config = scenario["ORG2"].config
    config.import_container = scenario["ORG3"].imported

    assert errors_of(config)["import_container"] == ["Choose a container of this organization."]
    exported = ExportedContainer(config=config, container=scenario["ORG3"].contractors)
    assert errors_of(exported)["container"] == ["Choose a container of this organization."]


def test_it_refuses_an_empty_or_invalid_domain_list(scenario):
    config = scenario["ORG1"].config
    config.import_all_domains = False
    config.import_domains = ""
    assert errors_of(config)["import_domains"] == [
        "List the domains to import, or check Import all."
    ]
    config.import_domains = "org2.example, not a domain!"
    assert "Not a valid domain: a, domain!, not." in errors_of(config)["import_domains"][0]


def test_it_refuses_exclusions_that_are_not_addresses_or_organization_names(scenario):
    config = scenario["ORG1"].config
    config.excluded_addresses = "ok@org2.example, not-an-address, also bad@"
    assert errors_of(config)["excluded_addresses"] == [
        "Not an SMTP address: also, bad@, not-an-address."
    ]
    config.excluded_addresses = "ok@org2.example"
    config.excluded_organizations = "ORG2 <script>"
    assert "Not an organization name" in errors_of(config)["excluded_organizations"][0]
    config.excluded_organizations = "ORG2\x00"
    assert "excluded_organizations" in errors_of(config)


def test_it_refuses_a_message_size_below_16_kib(scenario):
    config = scenario["ORG1"].config
    config.max_message_size = 16 * 1024 - 1
    assert "max_message_size" in errors_of(config)
    scenario.master.max_attachment_size = 1000
    assert "max_attachment_size" in errors_of(scenario.master)


def test_it_keeps_the_spaces_of_a_display_name_suffix_entered_in_a_form():
    from django.forms import modelform_factory

    from requestor.models import RequestorConfig

    form_class = modelform_factory(RequestorConfig, fields=["append_display_name"])
    form = form_class(data={"append_display_name": " (Fabrikam)"})

    assert form.is_valid(), form.errors
    assert form.cleaned_data["append_display_name"] == " (Fabrikam)"
