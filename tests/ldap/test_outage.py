"""slapd stopped during a cycle: a clear error, nothing lost, and the next run completes."""

import pytest

from directory.backends import DirectoryUnavailable
from directory.ldap import publish
from directory.models import LdapDirectory
from requestor.constants import RunStatus
from requestor.cycle import run_cycle, sync_all
from tests.engine.helpers import add_many, cycle
from transport.inbox import pump
from transport.models import Message


def test_stopped_before_the_export(mixed, server):
    org2 = mixed.org2
    org2.add_person("ada", "Ada Lovelace")
    sync_all()
    queued = Message.objects.count()
    server.stop()
    run = run_cycle(org2.org.config.pk)
    assert run.status == RunStatus.FAILED
    assert f"LDAP server {server.uri} cannot be reached" in run.error
    assert Message.objects.count() == queued  # nothing went out half-read
    directory = LdapDirectory.objects.get(organization=org2.org.organization)
    assert "cannot be reached" in directory.last_error

    server.start()
    org2.add_person("grace", "Grace Hopper")
    assert cycle(org2.org).status == RunStatus.OK
    sync_all()
    assert "grace@org2.example" in mixed.org3.contacts()


def test_stopped_between_import_and_write(mixed, server, django_capture_on_commit_callbacks):
    org1, org2 = mixed.scenario["ORG1"], mixed.org2
    sync_all()
    org1.add(display_name="Late Arrival", alias="late", primary_smtp="late@org1.example")
    cycle(org1)
    run_cycle(org2.org.config.pk)
    server.stop()
    with django_capture_on_commit_callbacks(execute=True):
        pump()  # the master replies, and ORG2 imports into its mirror; LDAP is down
    assert org2.org.contacts().filter(primary_smtp="late@org1.example").exists()
    assert (
        "cannot be reached"
        in LdapDirectory.objects.get(organization=org2.org.organization).last_error
    )

    server.start()
    assert "late@org1.example" not in org2.contacts()
    sync_all()
    assert org2.contacts()["late@org1.example"]["cn"] == ["Late Arrival"]
    assert not LdapDirectory.objects.get(organization=org2.org.organization).last_error


def test_stopped_in_the_middle_of_writing(mixed, server, monkeypatch):
    org1, org2 = mixed.scenario["ORG1"], mixed.org2
    add_many(org1, 300)
    sync_all()
    org2_id = org2.org.organization.pk
    LdapDirectory.objects.filter(organization_id=org2_id).update(published_usn=0)
    org2.tool.delete(*(dn for dn, _ in org2.tool.search(org2.imports, "(employeeType=*)", "1.1")))
    submitted = 0
    real_submit = publish.Pipeline.submit

    def submit_then_crash(self, *args):
        nonlocal submitted
        submitted += 1
        if submitted == 100:
            server.stop()  # the real server goes away with operations in flight
        return real_submit(self, *args)

    monkeypatch.setattr(publish.Pipeline, "submit", submit_then_crash)
    with pytest.raises(DirectoryUnavailable, match="cannot be reached"):
        publish.publish(org2_id)
    monkeypatch.undo()
    server.start()
    written = len(org2.contacts())
    assert 0 < written < 303

    result = publish.publish(org2_id)
    assert result.added == 303 - written and not result.problems
    keys = [
        attrs["employeeNumber"][0]
        for _dn, attrs in org2.tool.search(org2.imports, "(employeeType=*)", "employeeNumber")
    ]
    assert len(keys) == len(set(keys)) == org2.org.contacts().count() == 303


def test_ldap_chosen_but_no_server_set(mixed):
    org2 = mixed.org2.org
    LdapDirectory.objects.filter(organization=org2.organization).delete()
    run = run_cycle(org2.config.pk)
    assert run.status == RunStatus.FAILED
    assert "no LDAP server is set" in run.error
