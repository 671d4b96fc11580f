"""Fill an empty installation with three demo organizations that can sync at once."""

import os
import secrets
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import models, transaction
from django.utils import timezone

from demo.plan import (
    CONTAINERS,
    CONTRACTORS,
    IMPORTED,
    ORGANIZATIONS,
    RECIPIENTS,
    OrgSpec,
    plan_recipients,
)
from directory import changes
from directory.models import Container, Organization, Recipient, Site, allocate_usns
from master.models import AllowedRequestor, MasterConfig
from requestor import schedule
from requestor.models import ExportedContainer, RequestorConfig

ADMIN_USERNAME = "admin"
ADMIN_URL = "http://127.0.0.1:8000/"
MASTER_DN = "/o=ORG1/ou=Site1/cn=Recipients/cn=MASTER"
REQUESTOR_TRUST_THRESHOLD = 50
# Every demo requestor runs a cycle every minute, the organizations 10 s apart, the first at once:
# the directories converge within about a minute and a half of `make run`, untouched.
SCHEDULE_MINUTES = 1
SCHEDULE_STAGGER_SECONDS = 10


class Command(BaseCommand):
    help = "Create the demo organizations, their sync configuration and an admin login."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Do nothing (but print the login) if any organization exists.",
        )
        parser.add_argument(
            "--login-only",
            action="store_true",
            help="Seed nothing; print only how to log in (`make run` shows it once started).",
        )

    def handle(self, *args, if_empty: bool = False, login_only: bool = False, **options) -> None:
        if login_only:
            self.stdout.write(admin_login(url=None))
            return
        if if_empty and Organization.objects.exists():
            self.stdout.write("Organizations exist already: nothing seeded.")
        else:
            with transaction.atomic():
                for spec in ORGANIZATIONS:
                    self.stdout.write(seed_organization(spec))
                seed_sync_config()
        self.stdout.write(admin_login())


def ensure(model: type[models.Model], defaults: dict | None = None, **key) -> models.Model:
    """The row with `key`, created (and validated) only if missing: an existing row is kept."""
    obj = model.objects.filter(**key).first()
    if obj is None:
        obj = model(**key, **(defaults or {}))
        obj.full_clean()
        obj.save()
    return obj


def seed_organization(spec: OrgSpec) -> str:
    """Create what is missing of one organization; return a line saying what it holds."""
    org = ensure(
        Organization,
        {"display_name": spec.display_name, "role": spec.role, "mail_domain": spec.domain},
        name=spec.name,
    )
    site = ensure(Site, organization=org, name=spec.site)
    containers = {name: ensure(Container, site=site, parent=None, name=name) for name in CONTAINERS}
    added = add_recipients(org, containers, plan_recipients(spec))
    total = Recipient.objects.filter(organization=org).exportable().count()
    return f"{org.name} {org.display_name}: {total} recipients ({added} added)."


def add_recipients(org: Organization, containers: dict[str, Container], planned) -> int:
    """Create the planned recipients whose alias and address are free, in bulk; return how many."""
    taken = {
        value.lower()
        for pair in Recipient.objects.filter(organization=org).values_list("alias", "primary_smtp")
        for value in pair
    }
    new = [
        p
        for p in planned
        if p.alias.lower() not in taken and p.fields["primary_smtp"].lower() not in taken
    ]
    if not new:
        return 0
    first = allocate_usns(org.pk, len(new))
    made = [
        Recipient(organization=org, container=containers[p.container], usn=first + i, **p.fields)
        for i, p in enumerate(new)
    ]
    fields = ["organization_id", "container_id", "usn", *sorted({k for p in new for k in p.fields})]
    changes.insert_recipients(
        org.pk, fields, ([getattr(r, name) for name in fields] for r in made), copy=False
    )
    add_members(org, [p for p in new if p.members])
    return len(new)


def add_members(org: Organization, lists) -> None:
    pks = dict(Recipient.objects.filter(organization=org).values_list("alias", "pk"))
    Membership = Recipient.members.through
    Membership.objects.bulk_create(
        Membership(from_recipient_id=pks[dl.alias], to_recipient_id=pks[member])
        for dl in lists
        for member in dl.members
        if member in pks
    )


def seed_sync_config() -> None:
    """ORG1 runs the master; every organization runs a requestor delivering to it by DN."""
    names = [spec.name for spec in ORGANIZATIONS]
    orgs = {org.name: org for org in Organization.objects.filter(name__in=names)}
    master = ensure(
        MasterConfig,
        {"address": "master@org1.example", "dn": MASTER_DN},
        organization=orgs["ORG1"],
    )
    now = timezone.now()
    for number, spec in enumerate(ORGANIZATIONS):
        config = seed_requestor(spec, orgs[spec.name])
        ensure(
            AllowedRequestor,
            {"address": config.dn, "label": spec.display_name},
            master=master,
            organization_name=spec.name,
        )
        if not config.schedule_tasks.exists():
            first_run = now + timedelta(seconds=number * SCHEDULE_STAGGER_SECONDS)
            schedule.set_every_minutes(config, SCHEDULE_MINUTES, first_run_at=first_run)


def seed_requestor(spec: OrgSpec, org: Organization) -> RequestorConfig:
    containers = {c.name: c for c in Container.objects.filter(organization=org, parent=None)}
    config = ensure(
        RequestorConfig,
        {
            "address": f"requestor@{spec.domain}",
            "dn": f"/o={spec.name}/ou={spec.site}/cn=Recipients/cn=REQUESTOR",
            "master_address": MASTER_DN,
            "import_container": containers[IMPORTED],
            "append_display_name": spec.append_display_name,
            "modify_smtp_domain": spec.modify_smtp_domain,
            "trust_level": REQUESTOR_TRUST_THRESHOLD,
        },
        organization=org,
    )
    ensure(ExportedContainer, config=config, container=containers[RECIPIENTS])
    if spec.export_contractors:
        ensure(
            ExportedContainer,
            {"mailboxes": False, "distribution_lists": False, "custom_recipients": True},
            config=config,
            container=containers[CONTRACTORS],
        )
    return config


def admin_login(url: str | None = ADMIN_URL) -> str:
    """Make sure the demo superuser exists; return the line telling how to log in (at `url`)."""
    where = f" at {url}" if url else ""
    password = demo_password()
    User = get_user_model()
    user = User.objects.filter(username=ADMIN_USERNAME).first()
    if user is None:
        User.objects.create_superuser(ADMIN_USERNAME, "admin@org1.example", password)
    elif not user.check_password(password):
        return (
            f"Log in{where} as {ADMIN_USERNAME} (its password was changed since; "
            f"`manage.py changepassword {ADMIN_USERNAME}` sets a new one)."
        )
    return f"Log in{where} as {ADMIN_USERNAME} / {password}"


def demo_password() -> str:
    """The demo admin's password: made once, then read back from var/ on every later run."""
    path = Path(settings.VAR_DIR) / "demo-admin-password"
    if path.exists():
        return path.read_text().strip()
    password = secrets.token_urlsafe(12)
    # Created with mode 600 from the start: never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    return password
