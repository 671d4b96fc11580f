"""Guessing passwords does not pay: after AXES_FAILURE_LIMIT failed logins a user, and an address,
are locked out of every login form (the console's and the admin's) for AXES_COOLOFF_TIME, even
with the right password; the attempts are recorded for administrators, and an administrator can
unlock at once. The API takes tokens only, never a password, so it offers nothing to guess."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt, AccessFailureLog
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.console.conftest import PASSWORD, make_user

ATTACKER = "203.0.113.7"
ELSEWHERE = "198.51.100.20"
LOCKED = b"Too many failed logins"


def attempt(username: str, password: str, address: str, form: str = "login") -> Client:
    client = Client(raise_request_exception=False)
    client.response = client.post(
        reverse(form), {"username": username, "password": password}, REMOTE_ADDR=address
    )
    return client


def logged_in(client: Client) -> bool:
    return SESSION_KEY in client.session


def fail(times: int, username: str = "alice", address: str = ATTACKER, form: str = "login"):
    for _ in range(times):
        client = attempt(username, "wrong-guess", address, form)
        assert not logged_in(client)


@pytest.fixture
def alice(world):
    return make_user("alice")


@pytest.fixture
def bob(world):
    return make_user("bob")


def assert_locked_out(client: Client) -> None:
    assert not logged_in(client)
    assert client.response.status_code == 429
    assert LOCKED in client.response.content


def test_the_limit_is_read_from_the_environment_defaults():
    assert settings.AXES_FAILURE_LIMIT == 5
    assert settings.AXES_COOLOFF_TIME.total_seconds() == 15 * 60
    assert settings.AXES_LOCKOUT_PARAMETERS == ["username", "ip_address"]


def test_failures_below_the_limit_do_not_lock(alice):
    fail(settings.AXES_FAILURE_LIMIT - 1)
    assert logged_in(attempt("alice", PASSWORD, ATTACKER))


def test_it_locks_the_user_even_with_the_right_password_from_anywhere(alice):
    fail(settings.AXES_FAILURE_LIMIT)
    assert_locked_out(attempt("alice", PASSWORD, ATTACKER))
    assert_locked_out(attempt("alice", PASSWORD, ELSEWHERE))


def test_it_locks_the_address_for_every_user(alice, bob):
    for n in range(settings.AXES_FAILURE_LIMIT):
        fail(1, username=f"guess{n}")
    assert_locked_out(attempt("bob", PASSWORD, ATTACKER))
    assert logged_in(attempt("bob", PASSWORD, ELSEWHERE))


def test_the_admin_login_is_locked_too(alice):
    fail(settings.AXES_FAILURE_LIMIT, form="admin:login")
    assert_locked_out(attempt("alice", PASSWORD, ELSEWHERE))
    assert_locked_out(attempt("alice", PASSWORD, ELSEWHERE, form="admin:login"))


def test_the_lockout_ends_after_the_cooloff(alice):
    fail(settings.AXES_FAILURE_LIMIT)
    assert_locked_out(attempt("alice", PASSWORD, ELSEWHERE))
    # The attempts as if made a cooloff ago (the lockout counts from the latest attempt).
    past = timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1)
    AccessAttempt.objects.update(attempt_time=past)
    assert logged_in(attempt("alice", PASSWORD, ATTACKER))


def test_a_success_before_the_limit_starts_the_count_again(alice):
    fail(settings.AXES_FAILURE_LIMIT - 1)
    assert logged_in(attempt("alice", PASSWORD, ATTACKER))
    fail(settings.AXES_FAILURE_LIMIT - 1)
    assert logged_in(attempt("alice", PASSWORD, ATTACKER))


def test_the_failures_are_recorded_for_administrators(alice, django_user_model):
    fail(settings.AXES_FAILURE_LIMIT + 1)
    assert AccessFailureLog.objects.filter(username="alice", ip_address=ATTACKER).count() == 6
    root = django_user_model.objects.create_superuser("root", "root@example.com", "x")
    client = Client()
    client.force_login(root)
    page = client.get(reverse("admin:axes_accessattempt_changelist"))
    assert page.status_code == 200
    assert b"alice" in page.content and ATTACKER.encode() in page.content
    page = client.get(reverse("admin:axes_accessfailurelog_changelist"))
    assert page.status_code == 200
    assert b"alice" in page.content


def test_staff_see_the_lockouts_on_the_dashboard(world, alice, django_user_model):
    staff = make_user("sam", is_staff=True)
    client = Client()
    client.force_login(staff)
    assert b"locked out" not in client.get(reverse("console:dashboard")).content
    fail(settings.AXES_FAILURE_LIMIT)
    body = client.get(reverse("console:dashboard")).content.decode()
    assert "1 user and 1 address locked out" in body
    assert reverse("admin:axes_accessattempt_changelist") in body
    others = Client()
    others.force_login(make_user("olga"))
    assert b"locked out" not in others.get(reverse("console:dashboard")).content


@pytest.mark.parametrize(
    "command, argument",
    [("axes_reset_username", "alice"), ("axes_reset_ip", ATTACKER), ("axes_reset", None)],
)
def test_an_administrator_unlocks_with_a_command(alice, command, argument):
    fail(settings.AXES_FAILURE_LIMIT)
    assert_locked_out(attempt("alice", PASSWORD, ATTACKER))
    call_command(command, *([argument] if argument else []))
    assert logged_in(attempt("alice", PASSWORD, ATTACKER))


def test_the_address_behind_a_proxy_is_the_forwarded_one(alice, bob, settings):
    settings.INTERORG_LOGIN_PROXY_COUNT = 1
    proxy = "10.0.0.2"
    for n in range(settings.AXES_FAILURE_LIMIT):
        client = Client(raise_request_exception=False)
        client.post(
            reverse("login"),
            {"username": f"guess{n}", "password": "x"},
            REMOTE_ADDR=proxy,
            HTTP_X_FORWARDED_FOR=f"192.0.2.1, {ATTACKER}",
        )
    assert AccessAttempt.objects.filter(ip_address=ATTACKER).exists()
    # Another client behind the same proxy is not locked out with the attacker.
    client = Client()
    client.post(
        reverse("login"),
        {"username": "bob", "password": PASSWORD},
        REMOTE_ADDR=proxy,
        HTTP_X_FORWARDED_FOR=ELSEWHERE,
    )
    assert logged_in(client)


def test_the_api_takes_no_password(alice):
    """No token endpoint and no Basic authentication: a password gets nothing from the API,
    so the login forms are the only place to guess one."""
    import base64

    credentials = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    response = Client().get("/api/v1/status/", HTTP_AUTHORIZATION=f"Basic {credentials}")
    assert response.status_code in (401, 403)
    paths = Client().get("/api/schema/?format=json")
    assert paths.status_code in (401, 403)  # the schema itself needs a login


@pytest.mark.parametrize("length", [150, 5_000])
def test_an_outsized_login_is_no_server_error(world, length):
    """The login form checks no length before authenticating: the failure is recorded with the
    user name (and the user agent and the rest) cut to their columns, where PostgreSQL would
    have refused the insert with a server error."""
    client = Client(raise_request_exception=False)
    response = client.post(
        reverse("login"),
        {"username": "u" * length, "password": "p" * 5_000},
        HTTP_USER_AGENT="a" * 5_000,
        HTTP_ACCEPT="b" * 5_000,
        REMOTE_ADDR=ATTACKER,
    )
    assert response.status_code == 200
    recorded = AccessFailureLog.objects.get(ip_address=ATTACKER)
    assert recorded.username == "u" * min(length, 255)
