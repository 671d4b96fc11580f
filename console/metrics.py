"""/metrics: what the dashboard knows, in the Prometheus text format (docs/metrics.md).

Everything is read from the database when Prometheus scrapes: the web server, the Celery
workers and beat are separate processes, so counters kept in one process's memory would see a
fraction of the work and restart at zero with it. The database is the one place that knows
every run, message and held batch.

A scrape costs a fixed number of queries, whatever the number of organizations, runs or
messages (grouped counts, and the latest runs found by subqueries), and shows only the
organizations the caller may read, as the API does (console.permissions).
"""

from collections import defaultdict
from copy import copy
from datetime import datetime, timedelta

from django.db.models import (
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    Min,
    OuterRef,
    Prefetch,
    Q,
    Subquery,
    Sum,
)
from django.http import HttpResponse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from drf_spectacular.utils import extend_schema
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from rest_framework.renderers import BaseRenderer
from rest_framework.views import APIView

from console import permissions
from console.status import State, requestor_state, sync_check_of
from directory.models import Organization
from master.models import AllowedRequestor, MasterConfig
from requestor import schedule
from requestor.constants import RunStatus
from requestor.models import RequestorConfig, Run, Verification
from transport.constants import Direction, MessageKind, Status
from transport.models import Hold, Message

# The cycle duration histogram covers the runs that finished in this window: long enough to
# hold several cycles of a daily schedule, short enough that one slow night fades out.
DURATION_WINDOW = timedelta(hours=24)
# Seconds. A cycle inside one installation takes about a second; across real mail it waits
# for the master's reply, minutes to hours.
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)

STATES = [
    State.OK,
    State.FAILING,
    State.DIVERGED,
    State.QUARANTINED,
    State.HELD,
    State.REPAIRING,
    State.STALE,
    State.DISABLED,
    State.NOT_CONFIGURED,
    State.NOT_A_REQUESTOR,
]
HOLD_KINDS = [MessageKind.EXPORT, MessageKind.REPLY]
_IN_FLIGHT = (RunStatus.RUNNING, RunStatus.WAITING)
_REFUSED = (Status.REJECTED, Status.FAILED)
_VERIFIED = Verification.State.VERIFIED
# One query for every requestor's beat entries with their schedules.
SCHEDULE_TASKS = PeriodicTask.objects.select_related("interval", "crontab")


def _seconds(moment: datetime) -> float:
    return moment.timestamp()


def schedule_interval(config: RequestorConfig) -> int | None:
    """Seconds between two scheduled cycles: the interval, or for daily times the longest gap
    between two of them (None: Execute Now only)."""
    planned = schedule.get(config)
    if planned.kind == schedule.EVERY:
        return planned.minutes * 60
    if planned.kind == schedule.DAILY and planned.times:
        minutes = [t.hour * 60 + t.minute for t in planned.times]
        gaps = [b - a for a, b in zip(minutes, minutes[1:], strict=False)]
        gaps.append(minutes[0] + 24 * 60 - minutes[-1])
        return max(gaps) * 60
    return None


def _latest(**filters) -> Subquery:
    """The newest run of the outer configuration (Run's ordering, as the dashboard's
    `.first()`), optionally of one state."""
    runs = Run.objects.filter(config=OuterRef("pk"), **filters).order_by("-started_at", "-id")
    return Subquery(runs.values("pk")[:1])


class InterOrgCollector(Collector):
    """The metric families of the organizations `user` may read, computed at collect time."""

    def __init__(self, user, now: datetime | None = None) -> None:
        self.user = user
        self.now = now

    def _org_filter(self, field: str) -> Q:
        ids = permissions.visible_org_ids(self.user)
        return Q() if ids is None else Q(**{f"{field}__in": ids})

    def collect(self):
        now = self.now or timezone.now()
        everything = permissions.visible_org_ids(self.user) is None
        organizations = {
            org.pk: org
            for org in Organization.objects.filter(self._org_filter("pk")).only(
                "pk", "name", "role"
            )
        }
        names = {pk: org.name for pk, org in organizations.items()}
        configs = list(
            RequestorConfig.objects.filter(self._org_filter("organization_id"))
            .only("pk", "organization_id", "enabled", "master_usn", "master_address")
            .prefetch_related(Prefetch("schedule_tasks", queryset=SCHEDULE_TASKS))
            .annotate(
                last_run_id=_latest(),
                last_ok_id=_latest(status=RunStatus.OK),
                last_failed_id=_latest(status=RunStatus.FAILED),
            )
        )
        run_ids = {
            pk
            for config in configs
            for pk in (config.last_run_id, config.last_ok_id, config.last_failed_id)
            if pk is not None
        }
        latest = Run.objects.filter(pk__in=run_ids).only(
            "pk", "status", "error", "started_at", "finished_at", "batch"
        )
        latest = {run.pk: run for run in latest}
        refused = self._refused_replies(configs, latest)
        checks = defaultdict(list)
        for check in Verification.objects.filter(config__in=[c.pk for c in configs]):
            checks[check.config_id].append(check)
        masters = {}
        for master in MasterConfig.objects.only("address", "dn", "usn").order_by("pk"):
            for address in (master.address, master.dn):
                if address:
                    masters.setdefault(address.lower(), master)
        held = {
            (row["organization_id"], row["kind"]): row
            for row in Hold.objects.filter(
                self._org_filter("organization_id"), decision=Hold.Decision.PENDING
            )
            .values("organization_id", "kind")
            .annotate(count=Count("pk"), oldest=Min("held_at"))
        }

        yield from self._states(organizations, configs, latest, checks, masters, held, refused, now)
        yield from self._runs(names, configs, now)
        yield from self._messages(names, everything)
        yield from self._held(names, held)
        yield from self._masters(names)

    @staticmethod
    def _refused_replies(configs, latest) -> set[int]:
        """The configurations whose running or waiting latest run had its master's reply
        refused here (console.status.refused_reply, for every organization in one query): a
        refused part counts unless another copy of the same part was accepted."""
        waiting = {}
        for config in configs:
            run = latest.get(config.last_run_id)
            if run is not None and run.batch and run.status in _IN_FLIGHT:
                waiting[(config.organization_id, str(run.batch))] = config.pk
        replies = Message.objects.filter(
            direction=Direction.INBOUND,
            kind=MessageKind.REPLY,
            organization_id__in={org_id for org_id, _ in waiting},
            summary__in_reply_to__in=sorted({batch for _, batch in waiting}),
        ).values_list("organization_id", "summary__in_reply_to", "status", "batch", "part")
        refused, accepted = defaultdict(set), defaultdict(set)
        for org_id, batch, status, part_batch, part in replies:
            key = (org_id, str(batch))
            if key in waiting:
                bucket = refused if status in _REFUSED else accepted
                bucket[key].add((part_batch, part))
        return {waiting[key] for key, parts in refused.items() if parts - accepted[key]}

    def _states(self, organizations, configs, latest, checks, masters, held, refused, now):
        state = GaugeMetricFamily(
            "interorg_organization_state",
            "1 for the organization's state on the dashboard, 0 for the others.",
            labels=["organization", "state"],
        )
        lag = GaugeMetricFamily(
            "interorg_lag_usns",
            "Master USNs the organization's requestor has yet to apply (the dashboard's lag).",
            labels=["organization"],
        )
        verified = GaugeMetricFamily(
            "interorg_verified_timestamp_seconds",
            "When both sides of the organization's copy were last verified in sync.",
            labels=["organization"],
        )
        last_run = GaugeMetricFamily(
            "interorg_last_run_timestamp_seconds",
            "When the organization's latest run started.",
            labels=["organization"],
        )
        last_ok = GaugeMetricFamily(
            "interorg_last_success_timestamp_seconds",
            "When the organization's latest completed run finished.",
            labels=["organization"],
        )
        interval = GaugeMetricFamily(
            "interorg_schedule_interval_seconds",
            "Longest time between two scheduled cycles (absent: Execute Now only).",
            labels=["organization"],
        )
        enabled = GaugeMetricFamily(
            "interorg_requestor_enabled",
            "1 when the organization's requestor is enabled.",
            labels=["organization"],
        )
        by_org = {config.organization_id: config for config in configs}
        for org_id, org in organizations.items():
            config = by_org.get(org_id)
            name = org.name
            if config is None:
                current = State.NOT_CONFIGURED if org.runs_requestor else State.NOT_A_REQUESTOR
            else:
                run = latest.get(config.last_run_id)
                ok = latest.get(config.last_ok_id)
                failed = latest.get(config.last_failed_id)
                ok_at = ok and (ok.finished_at or ok.started_at)
                sync = sync_check_of(checks[config.pk])
                if run is not None and run.batch:
                    # The refused reply was looked up above for every organization at once.
                    run = copy(run)
                    run.batch = None
                current, _ = requestor_state(config, run, ok_at, now, sync, failed)
                if config.pk in refused and current not in (State.DISABLED, State.DIVERGED):
                    current = State.FAILING
                if (org_id, MessageKind.REPLY) in held and current not in (
                    State.DIVERGED,
                    State.QUARANTINED,
                    State.DISABLED,
                ):
                    current = State.HELD
                master = masters.get(config.master_address.lower())
                if master is not None:
                    lag.add_metric([name], max(0, master.usn - config.master_usn))
                if sync.state == _VERIFIED:
                    verified.add_metric([name], _seconds(sync.at))
                if run is not None:
                    last_run.add_metric([name], _seconds(run.started_at))
                if ok_at is not None:
                    last_ok.add_metric([name], _seconds(ok_at))
                seconds = schedule_interval(config)
                if seconds is not None:
                    interval.add_metric([name], seconds)
                enabled.add_metric([name], 1 if config.enabled else 0)
            for candidate in STATES:
                state.add_metric([name, candidate], 1 if candidate == current else 0)
        yield from (state, lag, verified, last_run, last_ok, interval, enabled)

    def _runs(self, names, configs, now):
        runs = GaugeMetricFamily(
            "interorg_runs",
            "Runs in the archive, by state.",
            labels=["organization", "status"],
        )
        counts = {
            (row["config__organization_id"], row["status"]): row["count"]
            for row in Run.objects.filter(self._org_filter("config__organization_id"))
            .values("config__organization_id", "status")
            .annotate(count=Count("pk"))
        }
        requestors = sorted({config.organization_id for config in configs}, key=names.get)
        for org_id in requestors:
            for status in RunStatus.values:
                runs.add_metric([names[org_id], status], counts.get((org_id, status), 0))
        yield runs

        duration = ExpressionWrapper(
            F("finished_at") - F("started_at"), output_field=DurationField()
        )
        buckets = {
            f"le_{n}": Count("pk", filter=Q(duration__lte=timedelta(seconds=bound)))
            for n, bound in enumerate(DURATION_BUCKETS)
        }
        rows = {
            row["config__organization_id"]: row
            for row in Run.objects.filter(
                self._org_filter("config__organization_id"),
                finished_at__isnull=False,
                finished_at__gte=now - DURATION_WINDOW,
            )
            .annotate(duration=duration)
            .values("config__organization_id")
            .annotate(count=Count("pk"), total=Sum("duration"), **buckets)
        }
        histogram = HistogramMetricFamily(
            "interorg_run_duration_seconds",
            f"Duration of the runs that finished in the last {_hours(DURATION_WINDOW)} hours, "
            "from start to finish (a window, not a counter: no rate()).",
            labels=["organization"],
        )
        for org_id in requestors:
            row = rows.get(org_id, {})
            total = row.get("total") or timedelta(0)
            histogram.add_metric(
                [names[org_id]],
                buckets=[
                    (floatToGoString(bound), row.get(f"le_{n}", 0))
                    for n, bound in enumerate(DURATION_BUCKETS)
                ]
                + [("+Inf", row.get("count", 0))],
                sum_value=total.total_seconds(),
            )
        yield histogram

    def _messages(self, names, everything):
        messages = GaugeMetricFamily(
            "interorg_messages",
            "Messages in the archive, by direction and state.",
            labels=["organization", "direction", "status"],
        )
        counts = {
            (row["organization_id"], row["direction"], row["status"]): row["count"]
            for row in Message.objects.filter(self._org_filter("organization_id"))
            .values("organization_id", "direction", "status")
            .annotate(count=Count("pk"))
        }
        # Messages that reached no organization (an unknown recipient) only for those who see
        # every organization.
        org_ids = sorted(names, key=names.get)
        if everything and any(key[0] is None for key in counts):
            org_ids.append(None)
        for org_id in org_ids:
            for direction in Direction.values:
                for status in Status.values:
                    messages.add_metric(
                        [names.get(org_id, ""), direction, status],
                        counts.get((org_id, direction, status), 0),
                    )
        yield messages

    def _held(self, names, held):
        count = GaugeMetricFamily(
            "interorg_held_batches",
            "Batches held for the organization's administrators (pending decision), by kind.",
            labels=["organization", "kind"],
        )
        oldest = GaugeMetricFamily(
            "interorg_held_batch_oldest_timestamp_seconds",
            "When the oldest pending held batch was held.",
            labels=["organization", "kind"],
        )
        for org_id in sorted(names, key=names.get):
            for kind in HOLD_KINDS:
                row = held.get((org_id, kind))
                count.add_metric([names[org_id], kind], row["count"] if row else 0)
                if row:
                    oldest.add_metric([names[org_id], kind], _seconds(row["oldest"]))
        yield from (count, oldest)

    def _masters(self, names):
        lag = GaugeMetricFamily(
            "interorg_master_requestor_lag_usns",
            "Master USNs an allowlisted requestor has not yet reported applying.",
            labels=["organization", "requestor", "address"],
        )
        quarantined = GaugeMetricFamily(
            "interorg_quarantined_requestors",
            "Requestors the organization's master holds in quarantine.",
            labels=["organization"],
        )
        since = GaugeMetricFamily(
            "interorg_quarantined_requestor_since_timestamp_seconds",
            "When the master quarantined this requestor.",
            labels=["organization", "requestor", "address"],
        )
        rows = AllowedRequestor.objects.filter(self._org_filter("master__organization_id")).values(
            "master__organization_id",
            "master__usn",
            "organization_name",
            "address",
            "reported_master_usn",
            "quarantined_at",
        )
        totals: dict[int, int] = {}
        for row in rows.order_by("master__organization_id", "organization_name", "address"):
            org_id = row["master__organization_id"]
            labels = [names[org_id], row["organization_name"], row["address"]]
            lag.add_metric(labels, max(0, row["master__usn"] - row["reported_master_usn"]))
            totals.setdefault(org_id, 0)
            if row["quarantined_at"] is not None:
                totals[org_id] += 1
                since.add_metric(labels, _seconds(row["quarantined_at"]))
        for org_id, total in sorted(totals.items(), key=lambda item: names[item[0]]):
            quarantined.add_metric([names[org_id]], total)
        yield from (lag, quarantined, since)


def _hours(window: timedelta) -> int:
    return int(window.total_seconds() // 3600)


class PrometheusText(BaseRenderer):
    """The exposition's media types, so that a scraper asking for them only is served (and a
    refusal comes back as one line of text)."""

    media_type = "text/plain"
    format = "txt"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, dict) and "detail" in data:
            return f"{data['detail']}\n".encode()
        return str(data).encode()


class OpenMetricsText(PrometheusText):
    media_type = "application/openmetrics-text"
    format = "openmetrics"


class MetricsView(APIView):
    """GET /metrics: an API token (`Authorization: Token …`) or a console session; anyone
    else gets 401 and no series."""

    renderer_classes = [PrometheusText, OpenMetricsText]

    @extend_schema(exclude=True)
    def get(self, request):
        registry = CollectorRegistry(auto_describe=False)
        registry.register(InterOrgCollector(request.user))
        # The Prometheus text format 0.0.4 unless the scraper asks for OpenMetrics.
        encode, content_type = choose_encoder(request.META.get("HTTP_ACCEPT", ""))
        return HttpResponse(encode(registry), content_type=content_type)


metrics = MetricsView.as_view()
