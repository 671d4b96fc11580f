"""The benchmark's peer: OpenLDAP's syncrepl copying W1's people into an empty consumer."""

import io

import ldif

from bench import syncrepl


def test_it_writes_w1s_people_as_inetorgperson_entries():
    text, last = syncrepl.people_ldif(30, organizations=3)

    records = ldif.LDIFRecordList(io.StringIO(text))
    records.parse()
    people = [
        (dn, attrs)
        for dn, attrs in records.all_records
        if b"inetOrgPerson" in attrs.get("objectClass", [])
    ]
    assert len(people) == 30
    assert people[-1][0] == last
    assert {dn.split("@")[1].split(",")[0] for dn, _ in people} == {
        "org01.example",
        "org02.example",
        "org03.example",
    }
    dn, attrs = people[0]
    for name in (
        "cn",
        "sn",
        "givenName",
        "displayName",
        "uid",
        "mail",
        "title",
        "o",
        "departmentNumber",
        "physicalDeliveryOfficeName",
        "telephoneNumber",
        "l",
        "description",
        "employeeNumber",
    ):
        assert attrs[name], name


def test_it_times_the_consumer_until_it_holds_every_entry():
    figures = syncrepl.syncrepl(500, timeout=120)

    assert figures["held"] == 500
    assert 0 < figures["seconds"] < 120
    assert figures["rate"] == round(500 / figures["seconds"], 1)
