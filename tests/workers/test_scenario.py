"""The three-organization scenario synced by real worker processes, on either broker."""

from tests.workers.conftest import assert_nothing_lost_or_duplicated, sync_until_converged


def test_it_syncs_the_three_organizations_through_a_worker(broker, celery_processes, three_orgs):
    processes = celery_processes(broker)
    processes.worker()

    sync_until_converged(three_orgs, processes)

    assert_nothing_lost_or_duplicated(three_orgs)
    assert "requestor.tasks.run_requestor_cycle" in processes.log("w1")
    assert "transport.tasks.process_message" in processes.log("w1")
