"""manage.py ldap check|scan|publish ORG."""

import pytest
from django.core.management import CommandError, call_command

from requestor.cycle import sync_all


def test_check_scan_publish(mixed, capsys):
    org2 = mixed.org2
    org2.add_person("ada", "Ada Lovelace")
    call_command("ldap", "check", "org2")
    assert "1 recipients" in capsys.readouterr().out
    call_command("ldap", "scan", "ORG2")
    assert "created 1" in capsys.readouterr().out
    sync_all()
    address = mixed.scenario["ORG1"].people[0].primary_smtp
    org2.tool.delete(org2.contacts()[address]["dn"])  # by hand, behind the mirror's back
    call_command("ldap", "publish", "ORG2")
    assert "added 0" in capsys.readouterr().out  # nothing changed in the mirror since
    call_command("ldap", "publish", "ORG2", "--force")
    assert "added 1" in capsys.readouterr().out
    assert address in org2.contacts()


def test_errors(mixed, server):
    with pytest.raises(CommandError, match="does not keep its directory in LDAP"):
        call_command("ldap", "scan", "ORG1")
    with pytest.raises(CommandError, match="No organization named 'ORG9'"):
        call_command("ldap", "scan", "ORG9")
    server.stop()
    with pytest.raises(CommandError, match="cannot be reached"):
        call_command("ldap", "check", "ORG2")
