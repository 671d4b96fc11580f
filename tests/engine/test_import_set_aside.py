"""What the last part of a full reply does besides its entries (requestor.importer): the sweep of
what the master no longer lists, for one requestor of an installation that runs several, and the
count a repair reports when its full reply came in several parts; and the entries a domain
filter leaves out although they have no address at all."""

import uuid

from django.utils import timezone

from directory.constants import Role
from requestor.importer import Counts, _finish_full_reply, sweep_absent
from requestor.models import Conflict, FilteredEntry, Run, Verification
from tests.engine.conftest import make_org
from tests.engine.test_import_aliases import apply, deleted, entry
from transport import wire
from transport.digest import Tally

THROUGH = 10


def full_reply(*keys: str) -> wire.ReplyDocument:
    """The last (and only) part of a full reply through master USN 10 listing `keys`."""
    entries = [entry(key, f"{key}@org1.example", usn=1) for key in keys]
    return wire.ReplyDocument.model_construct(
        entries=entries, batch=uuid.uuid4(), part=1, parts=1, through=THROUGH, full=True
    )


def with_rows(org) -> None:
    """Contacts and entries set aside, each listed by the reply below, gone from it, or newer
    than it; and a contact hidden for its grace period."""
    apply(
        org,
        entry("kept", "kept@org1.example", usn=1),
        entry("gone", "gone@org1.example", usn=2),
        entry("hidden", "hidden@org1.example", usn=3),
        entry("later", "later@org1.example", usn=THROUGH + 1),
    )
    apply(org, deleted("hidden", 4))
    for key, usn in (("c-kept", 5), ("c-gone", 6), ("c-later", THROUGH + 2)):
        Conflict.objects.create(
            config=org.config,
            global_key=key,
            origin="ORG1",
            address=f"{key}@org1.example",
            reason="Taken.",
            master_usn=usn,
            attrs={},
        )
    for key, usn in (("f-kept", 7), ("f-gone", 8), ("f-later", THROUGH + 3)):
        FilteredEntry.objects.create(
            config=org.config,
            global_key=key,
            origin="ORG1",
            address=f"{key}@org1.example",
            master_usn=usn,
            reason=FilteredEntry.Reason.DOMAIN,
        )


def rows(org) -> tuple[set, set, set, set]:
    """Global keys of the contacts shown, those hidden, the conflicts and the filtered entries."""
    return (
        set(org.contacts().values_list("global_key", flat=True)),
        set(org.hidden().values_list("global_key", flat=True)),
        set(Conflict.objects.filter(config=org.config).values_list("global_key", flat=True)),
        set(FilteredEntry.objects.filter(config=org.config).values_list("global_key", flat=True)),
    )


def test_a_full_reply_sweeps_the_rows_of_its_own_requestor_only(db):
    org2, org3 = make_org(2, Role.REQUESTOR), make_org(3, Role.REQUESTOR)
    for org in (org2, org3):
        with_rows(org)
    # Removed at once, not hidden: a hidden contact taken again would show.
    org2.config.grace_days = 0
    org2.config.save(update_fields=["grace_days"])
    untouched = rows(org3)
    counts = Counts(deleted=5)

    gone = sweep_absent(org2.config, full_reply("kept", "c-kept", "f-kept"), counts)

    assert (gone, counts.deleted) == (1, 6)
    assert rows(org2) == (
        {"kept", "later"},
        {"hidden"},
        {"c-kept", "c-later"},
        {"f-kept", "f-later"},
    )
    assert rows(org3) == untouched
    assert untouched[0] == {"kept", "gone", "later"}

    # Without counts of its own, it says how many went all the same.
    assert sweep_absent(org3.config, full_reply("kept", "c-kept", "f-kept")) == 1
    assert rows(org3)[0] == {"kept", "later"}


def test_a_repair_counts_what_every_part_of_its_full_reply_changed(db):
    org = make_org(2, Role.REQUESTOR)
    config = org.config
    config.full_reply_pending, config.full_reply_batch = True, uuid.uuid4()
    check = Verification.objects.create(
        config=config,
        side=Verification.Side.IMPORT,
        state=Verification.State.REPAIRING,
        repair_pending=True,
        repair_requested_at=timezone.now(),
    )
    # The parts applied before the last one, as the run recorded them.
    run = Run.objects.create(config=config, trigger="manual", imported=1, updated=2, deleted=4)
    Conflict.objects.create(
        config=config, global_key="aside", origin="ORG1", reason="Taken.", master_usn=3, attrs={}
    )

    set_aside = _finish_full_reply(config, Counts(imported=10, updated=20, deleted=40), run)

    check.refresh_from_db()
    assert (check.repair_pending, check.last_repair_differed) == (False, 77)
    assert run.repair == "import"
    assert (config.full_reply_pending, config.full_reply_batch) == (False, None)
    # The entries set aside, counted again from their rows.
    expected = Tally()
    expected.add("aside", 3)
    assert set_aside == expected


def test_a_repair_in_one_part_counts_that_part(db):
    org = make_org(2, Role.REQUESTOR)
    check = Verification.objects.create(
        config=org.config,
        side=Verification.Side.IMPORT,
        state=Verification.State.REPAIRING,
        repair_pending=True,
        repair_requested_at=timezone.now(),
    )

    _finish_full_reply(org.config, Counts(imported=1, updated=2, deleted=4), None)

    check.refresh_from_db()
    assert check.last_repair_differed == 7


def test_entries_without_an_address_are_left_out_by_a_domain_filter(db):
    org = make_org(2, Role.REQUESTOR, import_all_domains=False, import_domains="org1.example")

    counts = apply(
        org,
        entry("nowhere", None, "nowhere"),
        entry("upper", "Someone@ORG1.example", "someone"),
        entry("elsewhere", "someone@org9.example", "elsewhere"),
        # The domain is what follows the last "@" (a quoted local part may hold one too).
        entry("quoted", '"at@org9.example"@org1.example', "quoted"),
    )

    filtered = {row.global_key: row for row in FilteredEntry.objects.filter(config=org.config)}
    assert filtered.keys() == {"nowhere", "elsewhere"}
    assert (filtered["nowhere"].address, filtered["nowhere"].reason) == ("", "domain")
    assert filtered["elsewhere"].address == "someone@org9.example"
    assert set(org.contacts().values_list("global_key", flat=True)) == {"upper", "quoted"}
    assert not Conflict.objects.filter(config=org.config).exists()
    assert len(counts.filtered) == 2
