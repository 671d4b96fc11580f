"""A domain controller's USNs mean nothing on another DC, nor after a restore: the scan then
compares everything once, and the mirror converges on what AD holds."""

import pytest

from directory.ad.samba import SambaDC
from tests.ad.administered import Administered
from tests.ad.conftest import address

pytestmark = pytest.mark.django_db


def populate(domain: Administered) -> dict[str, str]:
    sales = domain.unit("Sales")
    return {
        "sales": sales,
        "bob": domain.user("bob", "bob@branch.example", sales),
        "carol": domain.contact("Carol", "carol@partner.example", sales),
        "dave": domain.contact("Dave", "dave@partner.example", sales),
    }


@pytest.mark.parametrize(
    ("new_identity", "reason"),
    [(True, "was restored from a backup"), (False, "is below the watermark")],
)
def test_a_restored_domain_controller_is_compared_in_full_once(ad_dc, new_identity, reason):
    domain = Administered(ad_dc)
    dns = populate(domain)
    domain.scan()
    ad_dc.snapshot()
    # Changes read by a scan, then undone by the restore: Erin comes and goes, Carol's new name
    # goes back, Dave, deleted, comes back.
    domain.contact("Erin", "erin@partner.example", dns["sales"])
    domain.modify(dns["carol"], "replace: displayName\ndisplayName: Carol Renamed")
    domain.delete(dns["dave"])
    domain.scan()
    assert domain.mirror() == domain.expected()
    restored_at = domain.directory.usn_watermark

    ad_dc.restore(new_identity=new_identity)
    assert domain.highest_usn() < restored_at
    result = domain.scan()

    assert result.full and reason in result.reason
    assert domain.directory.full_scan_reason == result.reason
    assert domain.mirror() == domain.expected()
    assert {name for _kind, name, _mail in domain.mirror().values()} == {"bob", "Carol", "Dave"}

    # Then USNs again, from the restored DC's own.
    domain.modify(dns["carol"], "replace: displayName\ndisplayName: Carol Again")
    result = domain.scan()
    assert (result.full, result.read) == (False, 1)
    assert domain.mirror() == domain.expected()


def test_another_domain_controller_is_compared_in_full_once(ad_dc):
    domain = Administered(ad_dc)
    populate(domain)
    domain.scan()
    other_address = address().rsplit(".", 1)[0] + f".{int(address().rsplit('.', 1)[1]) + 100}"
    with SambaDC(other_address, realm="OTHER.EXAMPLE") as other:
        domain.dc = other
        frank = domain.contact("Frank", "frank@partner.example", domain.unit("Partners"))
        domain.directory.__dict__.update(Administered.server_settings(other))
        domain.directory.save()

        result = domain.scan()

        assert result.full and "another domain controller answers" in result.reason
        assert set(domain.mirror()) == {domain.guid(frank)}
        assert domain.mirror() == domain.expected()
        assert not domain.scan().full


@pytest.mark.parametrize("change", ["rename", "delete"])
def test_a_copy_put_back_and_written_past_the_watermark_is_still_found(ad_dc, change):
    domain = Administered(ad_dc)
    dns = populate(domain)
    domain.scan()
    ad_dc.snapshot()
    if change == "rename":
        domain.modify(dns["carol"], "replace: displayName\ndisplayName: Carol Renamed")
    else:
        domain.delete(dns["dave"])
    domain.scan()
    watermark = domain.directory.usn_watermark

    ad_dc.restore(new_identity=False)
    # Enough writes after the restore that the DC's USN is past the watermark again.
    while domain.highest_usn() <= watermark:
        domain.add(
            "".join(
                f"dn: CN=New {n},{dns['sales']}\nobjectClass: contact\nmail: new{n}@x.example\n\n"
                for n in range(domain.highest_usn(), domain.highest_usn() + 10)
            )
        )
    result = domain.scan()

    assert result.full and "database went back" in result.reason
    assert domain.mirror() == domain.expected()
    assert {"Carol", "Dave"} <= {name for _kind, name, _mail in domain.mirror().values()}
    assert not domain.scan().full
