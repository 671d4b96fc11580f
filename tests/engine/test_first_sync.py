"""The first sync of organizations that have never met, in less usual set-ups."""

from master.models import AllowedRequestor, GlobalEntry
from requestor.cycle import sync_all
from requestor.models import FilteredEntry, RequestorConfig, Verification
from tests.engine.conftest import MASTER_DN
from tests.engine.helpers import assert_converged, inbound
from transport.constants import Status


def origins(org) -> set[str]:
    return set(org.contacts().values_list("origin_organization", flat=True))


def test_it_imports_only_the_domains_listed(scenario):
    org1 = scenario["ORG1"]
    org1.config.import_all_domains = False
    org1.config.import_domains = "org2.example"
    org1.config.full_clean()
    org1.config.save()

    sync_all()

    assert origins(org1) == {"ORG2"}
    assert org1.contacts().count() == 3
    assert origins(scenario["ORG2"]) == {"ORG1", "ORG3"}
    # What was left out is recorded, as the master stamped it (for the console and the
    # verification, which counts it as known).
    left_out = {
        (entry.global_key, entry.origin, entry.attrs["primary_smtp"], entry.usn)
        for entry in GlobalEntry.objects.filter(origin="ORG3", deleted=False)
    }
    assert len(left_out) == 3
    recorded = FilteredEntry.objects.filter(config=org1.config)
    assert set(recorded.values_list("global_key", "origin", "address", "master_usn")) == left_out
    # Counted as known, also when a full reply counts them again from their rows.
    RequestorConfig.objects.get(pk=org1.config.pk).import_all_recipients()
    sync_all()
    check = Verification.objects.get(config=org1.config, side=Verification.Side.IMPORT)
    assert (check.state, check.repair_pending) == (Verification.State.VERIFIED, False), check.detail
    assert FilteredEntry.objects.filter(config=org1.config).count() == 3


def test_it_converges_in_a_bounded_number_of_quiet_rounds(scenario):
    rounds = sync_all()

    # ORG1's first reply is empty, ORG2's holds ORG1, ORG3's both; round 2 completes; 3 is quiet.
    assert len(rounds) == 3
    assert rounds[-1].quiet
    assert not rounds[0].quiet
    # Running again exchanges nothing new.
    again = sync_all()
    assert len(again) == 1 and again[0].quiet
    assert_converged(scenario)
    for config in RequestorConfig.objects.select_related("organization"):
        assert config.master_epoch is not None
        # Everything exported was acknowledged; nothing is left to send.
        assert config.requestor_usn == config.organization.usn


def test_it_rejects_a_requestor_missing_from_the_allowlist(scenario):
    org3 = scenario["ORG3"]
    AllowedRequestor.objects.get(organization_name="ORG3").delete()

    sync_all(max_rounds=3)  # ORG3's runs never complete: sync_all would use all its rounds

    rejected = inbound(recipient=MASTER_DN, status=Status.REJECTED)
    assert rejected.exists()
    assert set(rejected.values_list("sender", flat=True)) == {org3.config.dn}
    for message in rejected:
        assert f"{org3.config.dn} may not send to {MASTER_DN}" in message.error
        # Recorded by its size and digest, not its body: a stranger cannot fill the archive.
        assert message.body_dropped and message.payload == b""
        assert len(message.digest) == 64 and message.size > 0
    assert not GlobalEntry.objects.filter(origin="ORG3").exists()
    assert not org3.contacts().exists()
    assert "ORG3 User 1" not in scenario["ORG1"].contact_names()
    assert scenario["ORG2"].contact_names() == {"ORG1 User 1", "ORG1 User 2", "ORG1 User 3"}
