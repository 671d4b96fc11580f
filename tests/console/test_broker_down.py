"""While the broker is down, the buttons that queue a cycle say so (503 from the API, an error
message on the console and in the admin) instead of an HTML 500, and change nothing: a USN reset
is not kept without the cycle that goes with it."""

import socket
import threading

import pytest
from django.urls import reverse

from interorg_site.settings import broker_transport_options
from requestor.models import RequestorConfig, Run
from tests.console.conftest import logged_in, token_client
from tests.workers.conftest import Broker, use_broker  # noqa: F401 (a fixture)
from transport import dispatch

BUTTONS = ["execute-now", "import-all", "export-all"]


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(params=["redis", "amqp"])
def broker_down(request, use_broker, settings):  # noqa: F811 (the fixture imported above)
    settings.INTERORG_DISPATCH_TASKS = True
    port = closed_port()
    url = {"redis": f"redis://127.0.0.1:{port}/0", "amqp": f"amqp://guest@127.0.0.1:{port}//"}
    url = url[request.param]
    return use_broker(Broker(request.param, url, broker_transport_options(url), {}))


@pytest.fixture
def dirty_usns(world):
    RequestorConfig.objects.filter(pk=world.org2.config.pk).update(requestor_usn=7, master_usn=9)
    return (7, 9)


def usns(world) -> tuple[int, int]:
    return RequestorConfig.objects.values_list("requestor_usn", "master_usn").get(
        pk=world.org2.config.pk
    )


@pytest.mark.parametrize("button", BUTTONS)
def test_the_api_answers_503_in_json(world, administrator, broker_down, dirty_usns, button):
    response = token_client(administrator).post(
        f"/api/v1/requestor-configs/{world.org2.config.pk}/{button}/"
    )

    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert "broker" in response.json()["detail"]
    assert usns(world) == dirty_usns
    assert not Run.objects.exists()


@pytest.mark.parametrize("button", BUTTONS)
def test_the_console_says_the_broker_is_down(world, administrator, broker_down, dirty_usns, button):
    url = reverse(f"console:{button}", kwargs={"org": world.org2.name})
    back = "schedule" if button == "execute-now" else "export-config"

    client = logged_in(administrator)
    response = client.post(url, {"confirm": "yes"})

    assert response.status_code == 302
    assert response["Location"] == reverse(f"console:{back}", kwargs={"org": world.org2.name})
    page = client.get(response["Location"])
    shown = [(m.level_tag, str(m)) for m in page.context["messages"]]
    assert [level for level, _ in shown] == ["error"]
    assert "broker" in shown[0][1] and "nothing was changed" in shown[0][1]
    assert usns(world) == dirty_usns


@pytest.mark.parametrize("action", ["execute_now", "import_all", "export_all"])
def test_the_admin_says_the_broker_is_down(world, admin_user, broker_down, dirty_usns, action):
    response = logged_in(admin_user).post(
        reverse("admin:requestor_requestorconfig_changelist"),
        {"action": action, "_selected_action": [world.org2.config.pk]},
        follow=True,
    )

    assert response.status_code == 200
    shown = [(m.level_tag, str(m)) for m in response.context["messages"]]
    assert [level for level, _ in shown] == ["error"]
    assert "broker" in shown[0][1]
    assert usns(world) == dirty_usns


def silent_server():
    """A broker address that accepts connections and never answers (a hung server, a
    half-open connection): a publish must give up rather than wait forever."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted = []

    def accept():
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return server, accepted


@pytest.mark.parametrize("scheme", ["redis", "amqp"])
def test_a_broker_that_never_answers_fails_the_publish(db, use_broker, settings, scheme):  # noqa: F811
    settings.INTERORG_DISPATCH_TASKS = True
    server, accepted = silent_server()
    port = server.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0" if scheme == "redis" else f"amqp://127.0.0.1:{port}//"
    use_broker(Broker(scheme, url, broker_transport_options(url), {}))
    outcome = []

    def publish():
        from requestor.tasks import run_requestor_cycle

        try:
            dispatch.send(run_requestor_cycle, 1, "manual", None)
        except dispatch.BrokerUnavailable as exc:
            outcome.append(exc)

    worker = threading.Thread(target=publish, daemon=True)
    try:
        worker.start()
        worker.join(120)  # a liveness bound, far above the configured timeouts
        assert not worker.is_alive(), "the publish is still waiting for a silent broker"
        assert outcome and "broker" in str(outcome[0])
    finally:
        server.close()
        for conn in accepted:
            conn.close()
