"""Hostile values through LDAP: DN special characters, very long values, non-ASCII names."""

import ldap.dn

from directory.ldap.publish import contact_dn
from directory.models import Recipient
from requestor.cycle import sync_all
from tests.ldap.conftest import entry_ldif

HOSTILE_NAME = 'Smith, John + "Q" <x> ;= \\ Zoë 東京'
HOSTILE_UID = 'j,+"\\<>;x#'
OBRIEN_NAME = 'O\'Brien <Ævar> + "Þór"; = \\'
OBRIEN_ALIAS = 'o\'brien+"x"<y>;z,w\\'


def test_hostile_values_cross_both_ways(mixed):
    org2, org3 = mixed.org2, mixed.org3
    dn = ldap.dn.dn2str([[("cn", HOSTILE_NAME, 1)]]) + f",{org2.people}"
    org2.tool.add(
        entry_ldif(
            dn,
            {
                "objectClass": ["inetOrgPerson"],
                "cn": [HOSTILE_NAME],
                "sn": ["Smith"],
                "givenName": ["Zoë"],
                "uid": [HOSTILE_UID],
                "displayName": [HOSTILE_NAME],
                "title": ["T" * 300],
                "street": ["1 Rue de l'Église\n2nd floor"],
                "mail": ["john.smith@org2.example"],
            },
        )
    )
    org1 = mixed.scenario["ORG1"]
    org1.add(display_name=OBRIEN_NAME, alias=OBRIEN_ALIAS, primary_smtp="obrien@org1.example")
    sync_all()

    mirrored = Recipient.objects.get(global_key=None, primary_smtp="john.smith@org2.example")
    assert mirrored.alias == HOSTILE_UID
    assert mirrored.display_name == HOSTILE_NAME
    assert mirrored.title == "T" * 64  # the General attribute's limit

    contact = org3.contacts()["john.smith@org2.example"]
    assert ldap.dn.str2dn(contact["dn"]) == ldap.dn.str2dn(contact_dn(HOSTILE_UID, org3.imports))
    assert contact["uid"] == [HOSTILE_UID]
    assert contact["displayName"] == [HOSTILE_NAME + " (ORG2)"]
    assert contact["givenName"] == ["Zoë"]
    assert contact["street"] == ["1 Rue de l'Église\n2nd floor"]
    assert contact["title"] == ["T" * 64]

    obrien = org2.contacts()["obrien@org1.example"]
    assert obrien["displayName"] == ['O\'Brien <Ævar> + "Þór"; = \\']
    assert obrien["uid"] == ['o\'brien+"x"<y>;z,w\\']
    assert ldap.dn.str2dn(obrien["dn"])[0] == [("uid", 'o\'brien+"x"<y>;z,w\\', 1)]
