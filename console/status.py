"""What the dashboard says about each organization: role, runs, state, USN lag, recent errors,
and the master's view of its requestors. Read-only; shared by the console and the API."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from console.constants import STALE_AFTER_HOURS
from directory.models import LdapDirectory, Organization
from master.models import AllowedRequestor, MasterConfig
from requestor import schedule
from requestor.constants import RunStatus
from requestor.models import RequestorConfig, Run, Verification
from transport.constants import Direction, MessageKind, Status
from transport.models import Hold, Message
from transport.registry import at_address

RECENT_ERRORS = 5
State_ = Verification.State


class State:
    OK = "ok"
    FAILING = "failing"
    DIVERGED = "diverged"
    QUARANTINED = "quarantined"
    HELD = "held"
    REPAIRING = "repairing"
    STALE = "stale"
    DISABLED = "disabled"
    NOT_CONFIGURED = "not configured"
    NOT_A_REQUESTOR = "master only"


@dataclass
class ErrorLine:
    at: datetime
    source: str
    text: str
    # The page of the failed run or refused message, when there is one.
    url: str = ""


@dataclass
class RequestorView:
    """One allowlisted requestor as its master sees it."""

    requestor: AllowedRequestor
    # Master changes not yet sent to it (AllowedRequestor.unsent): not called "lag", which is
    # what a requestor has not yet imported, known only to the requestor itself.
    unsent: int


@dataclass
class SyncCheck:
    """What the digests last proved about an organization's copy (requestor.verify): both
    sides verified (with the older of the two times), one repairing, one diverged, or not
    checked yet."""

    state: str
    at: datetime | None = None
    detail: str = ""
    sides: dict[str, Verification] = field(default_factory=dict)

    @property
    def label(self) -> str:
        if self.state == Verification.State.VERIFIED:
            return "verified in sync"
        return Verification.State(self.state).label.lower()


SIDE_NAMES = {
    Verification.Side.IMPORT: "What it holds of the others",
    Verification.Side.EXPORT: "What the master holds of it",
}


def sync_check(config: RequestorConfig) -> SyncCheck:
    return sync_check_of(Verification.objects.filter(config=config))


def sync_check_of(checks) -> SyncCheck:
    """What the digest checks of one requestor (its Verification rows) say together."""
    sides = {check.side: check for check in checks}
    by_state = {state: [c for c in sides.values() if c.state == state] for state in State_}
    for state in (State_.DIVERGED, State_.REPAIRING):
        if by_state[state]:
            check = by_state[state][0]
            detail = f"{SIDE_NAMES[check.side]}: {check.detail}"
            return SyncCheck(state, check.checked_at, detail, sides)
    if len(by_state[State_.VERIFIED]) == len(Verification.Side.values):
        return SyncCheck(State_.VERIFIED, min(c.verified_at for c in sides.values()), "", sides)
    return SyncCheck(State_.UNKNOWN, None, "Not verified yet: no complete reply since.", sides)


@dataclass
class OrgStatus:
    organization: Organization
    config: RequestorConfig | None = None
    master: MasterConfig | None = None
    last_run: Run | None = None
    last_ok_at: datetime | None = None
    next_run: datetime | None = None
    # Why there is no next run (requestor.schedule.upcoming): not scheduled, disabled, expired.
    next_run_note: str = ""
    next_run_due: bool = False
    state: str = State.OK
    reason: str = ""
    master_current_usn: int | None = None
    sync: SyncCheck | None = None
    ldap: LdapDirectory | None = None
    errors: list[ErrorLine] = field(default_factory=list)
    requestors: list[RequestorView] = field(default_factory=list)
    # Batches this organization holds for its administrators (transport.holds).
    held: int = 0

    @property
    def lag(self) -> int | None:
        """Master USN lag: how many master changes this requestor has not yet imported, the
        master's current USN minus the master USN its imported replies went through (None: the
        master does not run here). Right after a completed cycle it is 0."""
        if self.config is None or self.master_current_usn is None:
            return None
        return max(0, self.master_current_usn - self.config.master_usn)


def master_of(config: RequestorConfig) -> MasterConfig | None:
    """The master this requestor sends to, when it runs in this installation."""
    return MasterConfig.objects.filter(at_address(config.master_address)).first()


def organization_status(org: Organization, now: datetime | None = None) -> OrgStatus:
    now = now or timezone.now()
    status = OrgStatus(organization=org)
    status.config = RequestorConfig.objects.filter(organization=org).first()
    status.master = MasterConfig.objects.filter(organization=org).first()
    if status.master is not None:
        status.requestors = [
            RequestorView(r, r.unsent)
            for r in status.master.requestors.select_related("master__organization")
        ]
    status.held = Hold.objects.filter(organization=org, decision=Hold.Decision.PENDING).count()
    if status.config is not None:
        _requestor_state(status, now)
    elif org.runs_requestor:
        status.state, status.reason = State.NOT_CONFIGURED, "No requestor configuration yet."
    else:
        status.state = State.NOT_A_REQUESTOR
    if org.uses_ldap:
        status.ldap = LdapDirectory.objects.filter(organization=org).first()
    status.errors = recent_errors(org, ldap=status.ldap)
    return status


def _requestor_state(status: OrgStatus, now: datetime) -> None:
    config = status.config
    runs = Run.objects.filter(config=config)
    status.last_run = runs.first()
    last_ok = runs.filter(status=RunStatus.OK).first()
    status.last_ok_at = last_ok and (last_ok.finished_at or last_ok.started_at)
    upcoming = schedule.upcoming(config, now)
    status.next_run, status.next_run_note = upcoming.at, upcoming.note
    status.next_run_due = upcoming.due
    master = master_of(config)
    status.master_current_usn = master.usn if master is not None else None
    status.sync = sync_check(config)
    last_failed = runs.filter(status=RunStatus.FAILED).first() if status.last_run else None
    status.state, status.reason = requestor_state(
        config, status.last_run, status.last_ok_at, now, status.sync, last_failed
    )
    holding_replies = status.held and Hold.objects.filter(
        organization=status.organization, decision=Hold.Decision.PENDING, kind="reply"
    )
    if status.state not in (State.DIVERGED, State.QUARANTINED, State.DISABLED) and (
        holding_replies and holding_replies.exists()
    ):
        status.state = State.HELD
        status.reason = (
            f"A reply of the master is held for {status.organization.name}'s administrators: "
            "approve or reject it on the Held batches page."
        )


def requestor_state(
    config: RequestorConfig,
    last_run: Run | None,
    last_ok_at: datetime | None,
    now: datetime,
    sync: SyncCheck | None = None,
    last_failed: Run | None = None,
) -> tuple[str, str]:
    """(state, reason): failing when the latest run to finish failed (an export refused by the
    master or bounced fails its run at once), when the master's reply to the waiting run was
    refused here, or when that reply is overdue (INTERORG_STALLED_RUN_MINUTES, after which
    housekeeping fails the run anyway); diverged or repairing as the digests say; stale when no
    run completed lately; ok otherwise."""
    if not config.enabled:
        return State.DISABLED, "The requestor is disabled."
    if last_run is None:
        return State.STALE, "Never ran."
    if sync is not None and sync.state == State_.DIVERGED:
        return State.DIVERGED, sync.detail
    if last_run.status == RunStatus.HELD:
        quarantined = "quarantined" in last_run.error
        return (State.QUARANTINED if quarantined else State.HELD), last_run.error
    failed_at = last_failed and (last_failed.finished_at or last_failed.started_at)
    if failed_at and (last_ok_at is None or failed_at > last_ok_at):
        return State.FAILING, last_failed.error or "The last run failed."
    if last_run.status in (RunStatus.RUNNING, RunStatus.WAITING):
        refused = refused_reply(config, last_run)
        if refused is not None:
            return State.FAILING, (
                f"The master's reply to run {last_run.pk} was refused here: {refused.error}"
            )
    minutes = settings.INTERORG_STALLED_RUN_MINUTES
    if last_run.status == RunStatus.WAITING and last_run.started_at < now - timedelta(
        minutes=minutes
    ):
        return State.FAILING, (
            f"No reply from the master for {minutes} minutes to run {last_run.pk}: check the "
            "master address (Import Config), this requestor on the master's allowlist and its "
            "key, and the message archive."
        )
    if sync is not None and sync.state == State_.REPAIRING:
        return State.REPAIRING, sync.detail
    if last_ok_at is None or last_ok_at < now - timedelta(hours=STALE_AFTER_HOURS):
        return State.STALE, f"No run completed in the last {STALE_AFTER_HOURS} hours."
    return State.OK, ""


def refused_reply(config: RequestorConfig, run: Run) -> Message | None:
    """The newest reply of the master to `run` that this requestor refused or could not
    process: the run waits for a reply that will not come. A refused copy of a part accepted
    otherwise (a replay) does not count."""
    if run.batch is None:
        return None
    replies = Message.objects.filter(
        direction=Direction.INBOUND,
        kind=MessageKind.REPLY,
        organization_id=config.organization_id,
        created_at__gte=run.started_at,
        summary__in_reply_to=str(run.batch),
    )
    refused = list(replies.filter(status__in=[Status.REJECTED, Status.FAILED]).order_by("-pk"))
    if not refused:
        return None
    accepted = set(
        replies.exclude(status__in=[Status.REJECTED, Status.FAILED]).values_list("batch", "part")
    )
    return next((m for m in refused if (m.batch, m.part) not in accepted), None)


def recent_errors(
    org: Organization, limit: int = RECENT_ERRORS, ldap: LdapDirectory | None = None
) -> list[ErrorLine]:
    """The latest failed runs and rejected or failed messages of an organization, newest first,
    with the LDAP directory's error while it lasts."""
    runs = Run.objects.filter(config__organization=org, status=RunStatus.FAILED)
    lines = [
        ErrorLine(
            run.finished_at or run.started_at,
            f"Run {run.pk}",
            run.error,
            reverse("console:run", kwargs={"org": org.name, "pk": run.pk}),
        )
        for run in runs.only("pk", "error", "started_at", "finished_at")[:limit]
    ]
    messages = Message.objects.filter(
        organization=org, status__in=[Status.REJECTED, Status.FAILED]
    ).only("pk", "direction", "status", "error", "created_at", "processed_at")
    for message in messages[:limit]:
        direction = "received" if message.direction == Direction.INBOUND else "sent"
        lines.append(
            ErrorLine(
                message.processed_at or message.created_at,
                f"Message {message.pk} ({direction}, {message.get_status_display().lower()})",
                message.error,
                reverse("console:message", kwargs={"org": org.name, "pk": message.pk}),
            )
        )
    if ldap is not None and ldap.last_error:
        lines.append(
            ErrorLine(ldap.last_error_at or timezone.now(), "LDAP directory", ldap.last_error)
        )
    lines.sort(key=lambda line: line.at, reverse=True)
    return lines[:limit]


def all_statuses(organizations) -> list[OrgStatus]:
    now = timezone.now()
    return [organization_status(org, now) for org in organizations]
