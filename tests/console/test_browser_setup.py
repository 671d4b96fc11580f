"""Adding an organization through the console in headless Chromium: a bad mail domain is
named in the error summary and at its field, nothing is made; corrected, the organization is
added and the pairing page shows its agent address and the fingerprint of the key in the
database."""

import base64
import hashlib
import re

import pytest

from directory.models import Container, Organization
from tests.console.conftest import PASSWORD, make_world
from tests.console.test_browser import CHROMIUM, browser, log_in, page, shoot  # noqa: F401
from transport.models import SigningKey

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="/usr/bin/chromium is missing: run bin/ensure-browser (apt-get install chromium)",
    ),
    pytest.mark.django_db(transaction=True),
]


def test_an_administrator_adds_a_branch_from_the_console(page, shoot, django_user_model):  # noqa: F811
    make_world()
    django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    log_in(page, "root")

    page.click("#add-organization")
    page.wait_for_url(re.compile(r"/organizations/new/$"))
    page.fill("#id_name", "ORG9")
    page.fill("#id_display_name", "Branch <nine>")
    page.fill("#id_mail_domain", "org9..example")
    page.check("input[name=role][value=requestor]")
    page.fill("#id_requestor_address", "interorg-org9@org9.example")
    page.fill("#id_master_address", "master@org1.example")
    page.click("button[type=submit].primary")

    summary = page.locator(".error-summary")
    assert "Mail domain" in summary.inner_text()
    assert "Enter a domain" in page.locator(".field.has-error").inner_text()
    shoot("setup-bad-domain")
    assert not Organization.objects.filter(name="ORG9").exists()

    page.fill("#id_mail_domain", "org9.example")
    page.click("button[type=submit].primary")
    page.wait_for_url(re.compile(r"/o/ORG9/pairing/$"))
    shoot("setup-pairing")

    org = Organization.objects.get(name="ORG9")
    key = SigningKey.objects.get(organization=org, active=True)
    expected = hashlib.sha256(base64.b64decode(key.public_key)).hexdigest()
    assert page.locator("#fingerprint").inner_text() == expected
    assert "interorg-org9@org9.example" in page.locator("#pairing").inner_text()
    assert org.display_name == "Branch <nine>"
    assert sorted(Container.objects.filter(organization=org).values_list("dn", flat=True)) == [
        "/o=ORG9/ou=Site1/cn=InterOrg Contacts",
        "/o=ORG9/ou=Site1/cn=Recipients",
    ]
