"""Alert e-mails: the recipients of an organization hear once when it changes state (failing,
stale, held, quarantined, diverged), once when it recovers, and once when a repair restored its
copy; never once per cycle.

`check_alerts()` runs from beat every INTERORG_ALERT_CHECK_SECONDS (console.tasks) and from
`manage.py check_alerts`. It compares each organization's state, as the dashboard computes it
(console.status), with the state its recipients were last told of (AlertSettings.state); a
master's state also counts an export it holds and a requestor it quarantined; and every
organization whose own state is calm hears when the message archive is nearly full
(INTERORG_ARCHIVE_ALERT_PERCENT of INTERORG_ARCHIVE_MAX_BYTES).

- Hold-down: a new state is alerted once it has lasted INTERORG_ALERT_HOLD_DOWN_MINUTES, so a
  run failing once between two good ones, or a state flapping, mails nobody. An alert comes at
  most the hold-down plus one check interval after the change.
- Two workers checking at once alert a change once: it is claimed by a conditional update of
  the state it replaces, and its event is written in the same transaction.
- The mail goes out after that commit, never inside it (a relay may take its time). When the
  relay fails, the error stays on the event and later checks try again, backing off, for a day;
  a relay that refuses every recipient for good is not asked again, and a later event of the
  same organization replaces a mail not sent yet.
"""

import logging
import smtplib
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from console import permissions
from console.constants import (
    ALERT_LONGEST_WAIT_MINUTES,
    ALERT_RETRY_FOR_HOURS,
    ALERT_SEND_LEASE_MINUTES,
)
from console.models import AlertEvent, AlertSettings, clean_addresses
from console.status import SIDE_NAMES, OrgStatus, State, organization_status
from directory.models import Organization
from requestor.models import Verification
from transport import archive
from transport.constants import MessageKind
from transport.models import Hold

log = logging.getLogger(__name__)

# An event that is not a state: a repair restored the organization's copy.
REPAIRED = "repaired"
# A requestor set up but not run yet: the dashboard calls it stale; nothing went wrong yet.
NEVER_RAN = "never ran"
# Not the organization's own state: the installation's message archive, which every
# organization's mail goes to, is nearly full (transport.archive); told to every organization
# whose own state is no problem.
ARCHIVE_FULL = "archive nearly full"
# The states an alert is sent for; leaving one for any other state is a recovery.
PROBLEMS = frozenset(
    {State.FAILING, State.STALE, State.HELD, State.QUARANTINED, State.DIVERGED, ARCHIVE_FULL}
)
SUBJECT_PREFIX = "[InterOrg Sync]"
NOBODY = (
    "Nobody to notify: list addresses on the Alerts page, or give the organization's "
    "administrators e-mail addresses."
)
PHRASES = {
    State.FAILING: "is failing",
    State.STALE: "is stale",
    State.HELD: "has a batch held for its administrators",
    State.QUARANTINED: "is quarantined by its master",
    State.DIVERGED: "has diverged from its master",
}


@dataclass
class Observation:
    """An organization's state as an alert tells it."""

    state: str
    reason: str
    headline: str


def observe(
    organization: Organization, now: datetime | None = None, archive_full: str | None = None
) -> Observation:
    """The organization's state: the dashboard's, or what its master side holds up, or else
    the message archive nearly full (`archive_full`, from archive_problem())."""
    status = organization_status(organization, now)
    state = status.state
    if state == State.STALE and status.config is not None and status.last_run is None:
        state = NEVER_RAN
    if state not in PROBLEMS and status.master is not None:
        held_up = _master_problem(status)
        if held_up is not None:
            return held_up
    if state not in PROBLEMS and archive_full:
        return Observation(ARCHIVE_FULL, archive_full, "The message archive is nearly full")
    phrase = PHRASES.get(state, f"is {state}")
    return Observation(state, status.reason, f"{organization.name} {phrase}")


def _master_problem(status: OrgStatus) -> Observation | None:
    """An export this master holds for its administrators, or a requestor it quarantined."""
    name = status.organization.name
    held = []
    if status.held:
        held = list(
            Hold.objects.filter(
                organization=status.organization,
                decision=Hold.Decision.PENDING,
                kind=MessageKind.EXPORT,
            )
            .order_by("held_at", "id")
            .values_list("peer", "reason")
        )
    if held:
        reasons = " ".join(f"{peer}: {reason}" for peer, reason in held)
        return Observation(
            State.HELD,
            f"{reasons} Approve or reject it on the Held batches page of {name}.",
            f"{name} holds an export of {_names(peer for peer, _ in held)}",
        )
    quarantined = [view.requestor for view in status.requestors if view.requestor.quarantined]
    if quarantined:
        reasons = " ".join(f"{r.organization_name}: {r.quarantine_reason}" for r in quarantined)
        return Observation(
            State.QUARANTINED,
            f"{reasons} Its exports wait until it is released (Held batches page of {name}).",
            f"{name} quarantined {_names(r.organization_name for r in quarantined)}",
        )
    return None


def archive_problem() -> str | None:
    """Why the message archive is nearly full, or None while it is below the alert level."""
    used, cap = archive.usage(), settings.INTERORG_ARCHIVE_MAX_BYTES
    if used < archive.alert_level():
        return None
    return (
        f"The message archive holds {used} bytes of mail bodies, {used * 100 // cap}% of "
        f"INTERORG_ARCHIVE_MAX_BYTES ({cap} bytes). Once full, the SMTP receiver answers all "
        "mail with 452 (senders keep it and try again): purge older messages "
        "(INTERORG_ARCHIVE_RETENTION_DAYS) or raise the limit."
    )


def _names(names) -> str:
    unique = sorted(set(names))
    return unique[0] if len(unique) == 1 else f"{', '.join(unique[:-1])} and {unique[-1]}"


# --- Detection ----------------------------------------------------------------------------------


def check_alerts(now: datetime | None = None) -> list[AlertEvent]:
    """Compare every organization's state with the one last alerted; record each change that
    lasted the hold-down and each repair as an event, then send the mails that are due."""
    now = now or timezone.now()
    organizations = list(Organization.objects.order_by("name"))
    rows = _rows(organizations, now)
    repairs = defaultdict(list)
    for check in Verification.objects.filter(repaired_at__isnull=False).select_related("config"):
        repairs[check.config.organization_id].append(check)
    events = []
    archive_full = archive_problem()
    for organization in organizations:
        row = rows.get(organization.pk)
        if row is None:
            continue  # deleted meanwhile
        try:
            observed = observe(organization, now, archive_full)
            events.append(record_change(row, observed, now))
            events.append(record_repair(row, observed.state, repairs[organization.pk], now))
        except Exception:
            # One organization's trouble must not silence the others' alerts.
            log.exception("could not check the state of %s for alerts", organization.name)
    send_due(now)
    recorded = [event.pk for event in events if event is not None]
    found = AlertEvent.objects.filter(pk__in=recorded).select_related("organization")
    return list(found.order_by("id"))


def _rows(organizations: list[Organization], now: datetime) -> dict[int, AlertSettings]:
    """Every organization's AlertSettings, created for those that have none yet. Repairs
    carried out before that are taken as told of."""
    have = set(AlertSettings.objects.values_list("organization_id", flat=True))
    missing = [
        AlertSettings(organization=org, repairs_seen_until=now)
        for org in organizations
        if org.pk not in have
    ]
    AlertSettings.objects.bulk_create(missing, ignore_conflicts=True)
    rows = AlertSettings.objects.select_related("organization")
    return {row.organization_id: row for row in rows}


def record_change(row: AlertSettings, observed: Observation, now: datetime) -> AlertEvent | None:
    """The event of a change from the state last alerted, once it has lasted the hold-down;
    None when there is none, or when another check recorded it first."""
    current = AlertSettings.objects.filter(pk=row.pk, state=row.state)
    if observed.state == row.state:
        if row.pending_state:  # the change did not last
            current.filter(pending_state=row.pending_state).update(
                pending_state="", pending_since=None
            )
        return None
    if observed.state not in PROBLEMS and row.state not in PROBLEMS:
        # Between calm states (ok, repairing, disabled...): nothing to tell anyone.
        current.update(
            state=observed.state,
            reason=observed.reason,
            state_since=now,
            pending_state="",
            pending_since=None,
        )
        return None
    since = now
    hold_down = timedelta(minutes=settings.INTERORG_ALERT_HOLD_DOWN_MINUTES)
    if hold_down:
        if row.pending_state != observed.state or row.pending_since is None:
            current.filter(pending_state=row.pending_state).update(
                pending_state=observed.state, pending_since=now
            )
            return None
        if now - row.pending_since < hold_down:
            return None
        since = row.pending_since
    with transaction.atomic():
        claimed = current.update(
            state=observed.state,
            reason=observed.reason,
            state_since=since,
            pending_state="",
            pending_since=None,
        )
        if not claimed:
            return None  # another check alerted this change
        return _record(
            row,
            previous=row.state,
            state=observed.state,
            subject=_subject(row, observed),
            reason=_reason(row, observed),
            at=now,
        )


def _subject(row: AlertSettings, observed: Observation) -> str:
    name = row.organization.name
    if observed.state in PROBLEMS:
        return observed.headline
    if observed.state == State.OK:
        return f"{name} recovered"
    return f"{name} is {observed.state}, no longer {row.state}"


def _reason(row: AlertSettings, observed: Observation) -> str:
    if observed.state in PROBLEMS:
        return observed.reason
    was = f"It was {row.state}"
    if row.state_since:
        was += f" since {timezone.localtime(row.state_since):%Y-%m-%d %H:%M %Z}"
    was += f": {row.reason}" if row.reason else "."
    return f"{was} {observed.reason}".strip()


def record_repair(
    row: AlertSettings, state: str, checks: list[Verification], now: datetime
) -> AlertEvent | None:
    """The event of repairs carried out since the last one told of, once their check proved
    the copy equal again (a repair that did not is alerted as diverged). A repair that changed
    nothing, such as an Import All with nothing missing, tells nobody."""
    seen = row.repairs_seen_until
    new = [check for check in checks if seen is None or check.repaired_at > seen]
    if not new or any(check.state == Verification.State.REPAIRING for check in new):
        return None  # none, or the check that judges it is still to come
    restored = [
        check
        for check in new
        if check.state == Verification.State.VERIFIED and check.last_repair_differed != 0
    ]
    with transaction.atomic():
        claimed = AlertSettings.objects.filter(pk=row.pk, repairs_seen_until=seen).update(
            repairs_seen_until=max(check.repaired_at for check in new)
        )
        if not claimed or not restored:
            return None
        return _record(
            row,
            previous=state,
            state=REPAIRED,
            subject=f"{row.organization.name} was repaired",
            reason=" ".join(_repair_line(check) for check in restored),
            at=now,
        )


def _repair_line(check: Verification) -> str:
    how = "a full reply" if check.side == Verification.Side.IMPORT else "a full export"
    differed = check.last_repair_differed
    count = "" if differed is None else f" ({differed} entr{'y' if differed == 1 else 'ies'})"
    return f"{SIDE_NAMES[check.side]}: {how} restored it{count}; verified in sync since."


def _record(
    row: AlertSettings, previous: str, state: str, subject: str, reason: str, at: datetime
) -> AlertEvent:
    """Write the event, due to be mailed at once; an earlier mail of the organization still
    not sent is replaced by it (the recipients hear of the latest state, not the history)."""
    AlertEvent.objects.filter(
        organization_id=row.organization_id, sent_at=None, retry_at__isnull=False, at__lt=at
    ).update(retry_at=None, error="Not sent: a later alert replaced it.")
    recipients = recipients_of(row)
    return AlertEvent.objects.create(
        organization_id=row.organization_id,
        at=at,
        previous_state=previous,
        state=state,
        subject=" ".join(subject.split())[:200],
        reason=reason,
        recipients=recipients,
        retry_at=at if recipients else None,
        error="" if recipients else NOBODY,
    )


# --- Recipients ---------------------------------------------------------------------------------


def settings_of(organization: Organization) -> AlertSettings:
    """The organization's alert settings (the defaults, not saved, when never set)."""
    found = AlertSettings.objects.filter(organization=organization).first()
    return found or AlertSettings(organization=organization)


def set_recipients(
    organization: Organization, addresses: list[str], include_administrators: bool
) -> AlertSettings:
    """Who gets the organization's alerts; the state last alerted is left as it is."""
    addresses = clean_addresses(addresses)
    row, created = AlertSettings.objects.get_or_create(
        organization=organization,
        defaults={
            "addresses": addresses,
            "include_administrators": include_administrators,
            "repairs_seen_until": timezone.now(),
        },
    )
    if not created:
        AlertSettings.objects.filter(pk=row.pk).update(
            addresses=addresses, include_administrators=include_administrators
        )
        row.addresses, row.include_administrators = addresses, include_administrators
    return row


def recipients_of(row: AlertSettings) -> list[str]:
    """The addresses listed, and those of the organization's administrators if so set; the
    same address once."""
    addresses = list(row.addresses)
    if row.include_administrators:
        users = permissions.administrators(row.organization_id).exclude(email="")
        addresses += [a for a in users.values_list("email", flat=True) if _valid(a)]
    unique = {}
    for address in addresses:
        unique.setdefault(address.lower(), address)
    return list(unique.values())


def _valid(address: str) -> bool:
    try:
        clean_addresses([address])
    except ValidationError:
        return False
    return True


# --- Mail ---------------------------------------------------------------------------------------


def send_due(now: datetime | None = None) -> int:
    """Send the mails due by now (new ones, and failed ones whose wait is over); how many went."""
    now = now or timezone.now()
    due = AlertEvent.objects.filter(sent_at=None, retry_at__lte=now).select_related("organization")
    return sum(deliver(event, now) for event in list(due.order_by("at", "id")))


def deliver(event: AlertEvent, now: datetime | None = None) -> bool:
    """Mail one event, claimed first so that two checks never both send it. A failure is kept
    on the event with the time of the next attempt, if any; it never raises."""
    now = now or timezone.now()
    claimed = AlertEvent.objects.filter(pk=event.pk, sent_at=None, retry_at=event.retry_at).update(
        retry_at=now + timedelta(minutes=ALERT_SEND_LEASE_MINUTES), attempts=F("attempts") + 1
    )
    if not claimed:
        return False
    event.attempts += 1
    try:
        email(event).send()
    except Exception as exc:
        event.retry_at, event.error = _next_attempt(event, exc, now), _describe(exc)
        AlertEvent.objects.filter(pk=event.pk).update(retry_at=event.retry_at, error=event.error)
        log.warning(
            "alert %s to %s not sent (attempt %s): %s",
            event.pk,
            ", ".join(event.recipients),
            event.attempts,
            event.error,
        )
        return False
    event.sent_at, event.retry_at, event.error = timezone.now(), None, ""
    AlertEvent.objects.filter(pk=event.pk).update(sent_at=event.sent_at, retry_at=None, error="")
    return True


def _next_attempt(event: AlertEvent, exc: Exception, now: datetime) -> datetime | None:
    """When to try again: never for a refusal of every recipient for good, or for an error
    that is not the relay's; otherwise after 1, 2, 4... minutes up to the longest wait, as long
    as the retry window lasts."""
    # smtplib's errors are OSErrors, as are a refused connection and a timeout.
    if not isinstance(exc, OSError) or _refused_for_good(exc):
        return None
    if now - event.at >= timedelta(hours=ALERT_RETRY_FOR_HOURS):
        return None
    wait = min(2 ** min(event.attempts - 1, 16), ALERT_LONGEST_WAIT_MINUTES)
    return now + timedelta(minutes=wait)


def _refused_for_good(exc: Exception) -> bool:
    return isinstance(exc, smtplib.SMTPRecipientsRefused) and all(
        code >= 500 for code, _ in exc.recipients.values()
    )


def _describe(exc: Exception) -> str:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refusals = "; ".join(
            f"{address}: {code} {_text(reply)}" for address, (code, reply) in exc.recipients.items()
        )
        return f"The mail relay refused every recipient: {refusals}"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"The mail relay answered {exc.smtp_code} {_text(exc.smtp_error)}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _text(reply) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)


def email(event: AlertEvent) -> EmailMessage:
    """The mail of an event: one message to all its recipients."""
    return EmailMessage(
        subject=f"{SUBJECT_PREFIX} {event.subject}",
        body=body(event),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=event.recipients,
        # Vacation responders and the like must not answer it (RFC 3834).
        headers={"Auto-Submitted": "auto-generated"},
    )


def body(event: AlertEvent) -> str:
    organization = event.organization
    at = timezone.localtime(event.at)
    if event.state == REPAIRED:
        state = f"State: {event.previous_state}, after a repair"
    else:
        state = f"State: {event.state} (was {event.previous_state})"
    lines = [
        f"{event.subject}.",
        "",
        state,
        f"At: {at:%Y-%m-%d %H:%M:%S %Z}",
    ]
    if event.reason:
        lines += ["", event.reason]
    lines += ["", f"Overview: {console_url('console:overview', organization)}"]
    if event.state in (State.HELD, State.QUARANTINED):
        lines.append(f"Held batches: {console_url('console:held', organization)}")
    lines += [
        f"Runs: {console_url('console:runs', organization)}",
        "",
        f"This mail goes to the alert recipients of {organization.name}, set on its Alerts page:",
        console_url("console:alerts", organization),
    ]
    return "\n".join(lines) + "\n"


def console_url(name: str, organization: Organization) -> str:
    return settings.INTERORG_CONSOLE_URL + reverse(name, kwargs={"org": organization.name})
