"""The test domain controller itself: what the Active Directory tests build on."""

import re


def _root(dc) -> dict[str, str]:
    text = dc.ldap_tool(
        "ldapsearch",
        "",
        "-o",
        "ldif-wrap=no",
        "-b",
        "",
        "-s",
        "base",
        "highestCommittedUSN",
        "dsServiceName",
    )
    return dict(re.findall(r"^(\w+): (.*)$", text, re.MULTILINE))


def _invocation_id(dc, service: str) -> str:
    text = dc.ldap_tool(
        "ldapsearch", "", "-o", "ldif-wrap=no", "-b", service, "-s", "base", "invocationId"
    )
    return re.search(r"^invocationId:: (.*)$", text, re.MULTILINE).group(1)


def test_changes_raise_the_usn_and_a_restore_takes_it_back_with_a_new_identity(ad_dc):
    before = _root(ad_dc)
    service = before["dsServiceName"]
    identity = _invocation_id(ad_dc, service)
    ad_dc.samba_tool(
        "user", "create", "alice", "Passw0rd!x1", "--mail-address=alice@branch.example"
    )
    ad_dc.snapshot()
    after_alice = int(_root(ad_dc)["highestCommittedUSN"])
    assert after_alice > int(before["highestCommittedUSN"])
    ad_dc.samba_tool("user", "create", "bob", "Passw0rd!x1", "--mail-address=bob@branch.example")
    assert int(_root(ad_dc)["highestCommittedUSN"]) > after_alice

    ad_dc.restore()

    assert int(_root(ad_dc)["highestCommittedUSN"]) == after_alice
    assert _invocation_id(ad_dc, service) != identity
    found = ad_dc.ldap_tool("ldapsearch", "", "-b", ad_dc.base_dn, "(sAMAccountName=bob)", "dn")
    assert "CN=bob" not in found
    found = ad_dc.ldap_tool("ldapsearch", "", "-b", ad_dc.base_dn, "(sAMAccountName=alice)", "dn")
    assert "CN=alice" in found


def test_a_copy_put_back_as_it_was_keeps_its_identity(ad_dc):
    service = _root(ad_dc)["dsServiceName"]
    identity = _invocation_id(ad_dc, service)
    ad_dc.snapshot()
    ad_dc.samba_tool("user", "create", "bob", "Passw0rd!x1", "--mail-address=bob@branch.example")
    ad_dc.restore(new_identity=False)
    assert _invocation_id(ad_dc, service) == identity
