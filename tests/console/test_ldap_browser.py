"""An LDAP organization in headless Chromium: test the connection, browse the People unit read
live from slapd (a hostile display name stays text), set a trust level beside an entry.
Screenshots are saved with the other browser tests' (var/screenshots/<timestamp>/)."""

import pytest

from console.constants import ConsoleRole
from directory.ldap.scan import scan
from directory.models import Recipient
from tests.console.conftest import make_user
from tests.console.test_browser import CHROMIUM, browser, log_in, page, shoot  # noqa: F401
from tests.console.test_escaping import HOSTILE
from tests.ldap.conftest import entry_ldif, mixed, server, slapd  # noqa: F401

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="/usr/bin/chromium is missing: run bin/ensure-browser (apt-get install chromium)",
    ),
    pytest.mark.django_db(transaction=True),
]


def test_it_tests_browses_and_sets_a_trust_level(mixed, page, shoot):  # noqa: F811
    org2 = mixed.org2
    org2.add_person("ada", "Ada Lovelace", title="Analyst")
    org2.tool.add(
        entry_ldif(
            f"uid=evil,{org2.people}",
            {
                "objectClass": ["inetOrgPerson"],
                "uid": ["evil"],
                "cn": ["Evil"],
                "sn": ["Evil"],
                "displayName": [HOSTILE],
                "mail": ["evil@org2.example"],
            },
        )
    )
    scan(org2.org.organization.pk)
    make_user("alice", {org2.org.organization: ConsoleRole.ADMINISTRATOR})
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    log_in(page, "alice")

    page.goto("/o/ORG2/directory-service/")
    page.click("button:has-text('Test connection')")
    result = page.locator("#test-result").inner_text()
    assert "Connection works." in result and "2 recipients under dc=org2,dc=example" in result
    shoot("30-ldap-directory-service")

    page.click('nav.tabs >> text="Directory"')
    page.click("#units >> text=People")
    table = page.locator("#entries")
    assert "Ada Lovelace" in table.inner_text() and HOSTILE in table.inner_text()
    page.fill("input[aria-label='Trust level of Ada Lovelace']", "5")
    page.click("tr:has-text('Ada Lovelace') >> button:has-text('Set')")
    flash = page.locator(".flash").inner_text()
    assert flash.startswith("Trust level of Ada Lovelace set to 5")
    assert Recipient.objects.get(alias="ada", organization__name="ORG2").trust_level == 5
    shoot("31-ldap-unit")

    page.click("#entries >> text=Ada Lovelace")
    assert "uid=ada,ou=People,dc=org2,dc=example" in page.locator("#ldap-entry").inner_text()
    assert page.locator("#trust-level input[name=trust_level]").input_value() == "5"
    shoot("32-ldap-entry")

    page.goto("/o/ORG2/")
    assert "Last write of contacts" in page.locator(".ldap-state").inner_text()
    shoot("33-ldap-overview")
    assert dialogs == []
