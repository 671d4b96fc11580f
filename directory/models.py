"""Each organization's directory: sites, containers, recipients, and the local USN of changes."""

import uuid
from contextvars import ContextVar

from django.core.exceptions import ValidationError
from django.core.validators import (
    DomainNameValidator,
    EmailValidator,
    MaxLengthValidator,
    MaxValueValidator,
    MinValueValidator,
    RegexValidator,
)
from django.db import models, transaction
from django.db.models import F, Q
from django.db.models.functions import Lower

from directory import guids
from directory.constants import (
    CUSTOM_ATTRIBUTE_MAX_LENGTH,
    GENERAL_ATTRIBUTES,
    TRUST_LEVEL_MAX,
    Backend,
    DeletesRead,
    DisabledAccounts,
    HiddenEntries,
    Kind,
    Role,
)
from interorg_site.encryption import EncryptedTextField

name_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
    "Use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit.",
)
# An RDN value inside our X.500-style DNs: no separators, no control characters.
rdn_validator = RegexValidator(
    r"^[^/=\x00-\x1f\x7f]{1,64}$",
    "Use 1-64 characters without '/', '=' or control characters.",
)
alias_validator = RegexValidator(
    r"^[^/=\s\x00-\x1f\x7f-\x9f]{1,64}$",
    "Use 1-64 characters without spaces, '/', '=' or control characters.",
)
smtp_validator = EmailValidator("Enter a valid SMTP address, such as jane.doe@example.com.")
# An organization's mail domain ends up in its agents' addresses and in Postfix transport maps.
mail_domain_validator = DomainNameValidator(
    message="Enter a domain such as org1.example: letters, digits and hyphens between dots."
)


def new_guid() -> uuid.UUID:
    """A new recipient's object GUID: an RFC 9562 version 7 UUID, which starts with a clock.

    Recipients made one after the other get GUIDs in order (each greater than the one before
    in the process), so the unique index of GUIDs, and the global keys and object ids made
    from them at the master and in every organization importing them, take each new one at
    their right edge rather than at a random page: a bulk import reads and dirties far fewer
    index pages (directory.guids says how they are made). The clock means nothing to the sync.
    A GUID scanned from a directory (entryUUID, objectGUID) is kept as it is.
    """
    return guids.new_guid()


# Set while directory.changes writes recipients: every change takes a local USN there and keeps
# the organization's digests, so a save, update or delete from anywhere else is refused.
_writing: ContextVar[bool] = ContextVar("directory_writing", default=False)


class DirectChange(RuntimeError):
    """A recipient was written around directory.changes: it would take no USN, so the change
    would never be exported, and the digests that verify the sync would go stale."""


def require_changes_module(what: str) -> None:
    if not _writing.get():
        raise DirectChange(
            f"{what}: recipients change only through directory.changes (save_recipient, "
            "delete_recipients, insert_recipients), which give the change a local USN and keep "
            "the organization's digests."
        )


def allocate_usns(organization_id: int, count: int = 1, *, own: bool = True) -> int:
    """Reserve `count` consecutive local USNs of an organization and return the first.

    The organization's row stays locked until the caller's transaction commits, so no change can
    commit with a USN lower than one already visible to an export (DESIGN.md, protocol rule 3).
    The lock is FOR NO KEY UPDATE, as every lock that serializes writers here: it keeps other
    writers of the row waiting, not the rows that name it (a message, a run), whose foreign key
    check only share-locks its key.
    `own` is false for imported contacts, which are never exported: the organization's own USN
    (the last one an own recipient or its tombstone took) stays where it is.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("allocate_usns() must run inside transaction.atomic().")
    current = (
        Organization.objects.select_for_update(no_key=True)
        .filter(pk=organization_id)
        .values_list("usn", flat=True)
        .get()
    )
    moved = {"usn": F("usn") + count}
    if own:
        moved["own_usn"] = F("usn") + count
    Organization.objects.filter(pk=organization_id).update(**moved)
    return current + 1


class Organization(models.Model):
    """An organization (/o=NAME): one directory, and the sync roles it runs."""

    name = models.CharField(
        max_length=64,
        unique=True,
        validators=[name_validator],
        help_text="Short name used in DNs, such as ORG1.",
    )
    display_name = models.CharField(max_length=256)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.REQUESTOR)
    mail_domain = models.CharField(
        max_length=253,
        blank=True,
        validators=[mail_domain_validator],
        help_text="Default SMTP domain of this organization's agents, such as org1.example.",
    )
    usn = models.BigIntegerField(
        default=0, editable=False, help_text="Highest local USN handed out so far."
    )
    own_usn = models.BigIntegerField(
        default=0,
        editable=False,
        help_text="Highest local USN of a change of the organization's own recipients (what an "
        "export must carry); imported contacts take USNs without moving it.",
    )
    directory_backend = models.CharField(
        "directory",
        max_length=16,
        choices=Backend.choices,
        default=Backend.BUILTIN,
        help_text="Where the organization's recipients live. An LDAP directory is read before "
        "every export and receives the imported contacts.",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def dn(self) -> str:
        return f"/o={self.name}"

    @property
    def uses_ldap(self) -> bool:
        """The directory is an LDAP server (OpenLDAP or Active Directory), mirrored in the
        built-in tables."""
        return self.directory_backend in (Backend.LDAP, Backend.ACTIVE_DIRECTORY)

    @property
    def uses_ad(self) -> bool:
        return self.directory_backend == Backend.ACTIVE_DIRECTORY

    @property
    def runs_master(self) -> bool:
        return self.role in (Role.MASTER, Role.BOTH)

    @property
    def runs_requestor(self) -> bool:
        return self.role in (Role.REQUESTOR, Role.BOTH)


class Site(models.Model):
    """A site of an organization (/o=ORG/ou=SITE)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="sites")
    name = models.CharField(max_length=64, validators=[rdn_validator])

    class Meta:
        ordering = ["organization__name", "name"]
        constraints = [
            models.UniqueConstraint(
                "organization",
                Lower("name"),
                name="site_name_unique_per_org",
                violation_error_message="This organization already has a site of that name.",
            )
        ]

    def __str__(self) -> str:
        return self.dn

    @property
    def dn(self) -> str:
        return f"/o={self.organization.name}/ou={self.name}"

    def save(self, **kwargs) -> None:  # (Django 5 passes its arguments by name)
        if self.pk and not _writing.get():
            old = Site.objects.filter(pk=self.pk).values_list("name", flat=True).first()
            if old is not None and old != self.name and self.containers.exists():
                raise DirectChange(
                    "A site with containers is renamed by directory.changes.rename_site(), "
                    "which renames their DNs with it."
                )
        super().save(**kwargs)


class Container(models.Model):
    """A recipients container (/o=ORG/ou=SITE/cn=NAME), possibly inside another container."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="containers", editable=False
    )
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="containers")
    parent = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="children"
    )
    name = models.CharField(max_length=64, validators=[rdn_validator])
    dn = models.CharField(max_length=1024, unique=True, editable=False, verbose_name="DN")
    # For an organization whose directory is in LDAP: the organizational unit this container
    # mirrors, found again by its entryUUID when it is renamed or moved.
    ldap_uuid = models.UUIDField("LDAP entryUUID", null=True, blank=True, editable=False)
    ldap_dn = models.CharField("LDAP DN", max_length=1024, blank=True, editable=False)

    class Meta:
        ordering = ["dn"]
        constraints = [
            models.UniqueConstraint(
                "site",
                Lower("name"),
                condition=Q(parent__isnull=True),
                name="container_name_unique_per_site",
                violation_error_message="A container of that name already exists in this site.",
            ),
            models.UniqueConstraint(
                "parent",
                Lower("name"),
                condition=Q(parent__isnull=False),
                name="container_name_unique_per_parent",
                violation_error_message="A container of that name already exists there.",
            ),
        ]

    def __str__(self) -> str:
        return self.dn

    def clean(self) -> None:
        # A container stays in its organization: the old one would never export the move.
        if self.pk and self.site_id and self.site.organization_id != self.organization_id:
            raise ValidationError({"site": f"{self._stays()}: choose one of its sites."})
        if self.pk and self.parent_id and self.parent.organization_id != self.organization_id:
            raise ValidationError({"parent": f"{self._stays()}: choose one of its containers."})
        if self.parent_id and self.site_id and self.parent.site_id != self.site_id:
            raise ValidationError({"parent": "The parent container must be in the same site."})
        node = self.parent
        while node is not None:
            if self.pk and node.pk == self.pk:
                raise ValidationError({"parent": "A container cannot lie inside itself."})
            node = node.parent

    def _stays(self) -> str:
        return f"A container stays in its organization ({self.organization.name})"

    def compute_dn(self) -> str:
        base = self.parent.dn if self.parent_id else self.site.dn
        return f"{base}/cn={self.name}"

    def is_within(self, other: "Container") -> bool:
        """True if this container is `other` or lies anywhere inside it."""
        return self.dn == other.dn or self.dn.startswith(other.dn + "/")

    def save(self, **kwargs) -> None:  # (Django 5 passes its arguments by name)
        if self.pk and self.organization_id not in (None, self.site.organization_id):
            raise ValueError("A container cannot move to another organization's site.")
        self.organization_id = self.site.organization_id
        old_dn = self.dn
        self.dn = self.compute_dn()
        if old_dn and old_dn != self.dn and not _writing.get() and self.children.exists():
            raise DirectChange(
                "A container with containers inside it is moved or renamed by "
                "directory.changes.move_container(), which renames their DNs with it."
            )
        super().save(**kwargs)

    def subtree_ids(self) -> list[int]:
        """Ids of this container and every container inside it."""
        inside = Container.objects.filter(Q(pk=self.pk) | Q(dn__startswith=self.dn + "/"))
        # (values_list(flat=True) without a field gives the pk too.)
        return list(inside.values_list("pk", flat=True))  # pragma: no mutate


def _general(name: str) -> models.CharField:
    return models.CharField(max_length=GENERAL_ATTRIBUTES[name], blank=True)


def _custom() -> models.CharField:
    # (Named "custom attribute N" after the field, custom_attribute_N.)
    return models.CharField(max_length=CUSTOM_ATTRIBUTE_MAX_LENGTH, blank=True)


class RecipientQuerySet(models.QuerySet):
    def delete(self):
        require_changes_module("Deleting recipients")  # pragma: no mutate (a message)
        return super().delete()

    delete.queryset_only = True

    def update(self, **kwargs):
        require_changes_module("Updating recipients")  # pragma: no mutate (a message)
        return super().update(**kwargs)

    def exportable(self):
        """Recipients that belong to the organization (imported contacts are never exported)."""
        return self.filter(global_key__isnull=True)


class Recipient(models.Model):
    """A mailbox, distribution list or custom recipient (contact) in one container."""

    # No index of its own: recipient_org_usn starts with it.
    # No constraint in the database: the container's is enough. A recipient's organization is
    # its container's (save() and the sync's bulk writes take it from there), and the database
    # keeps every recipient's container, and every container's organization (an organization
    # holding recipients is not deleted: their containers protect them). PostgreSQL checks a
    # foreign key row by row at commit, one of the costliest parts of a full sync
    # (docs/scaling.md, "CPU per contact").
    organization = models.ForeignKey(
        Organization,
        on_delete=models.CASCADE,
        related_name="recipients",
        editable=False,
        db_index=False,
        db_constraint=False,
    )
    # Checked once per statement by triggers, not row by row (directory.references).
    container = models.ForeignKey(
        Container, on_delete=models.PROTECT, related_name="recipients", db_constraint=False
    )
    guid = models.UUIDField(
        "object GUID", default=new_guid, unique=True, editable=False, help_text="Never changes."
    )
    kind = models.CharField(max_length=32, choices=Kind.choices, default=Kind.MAILBOX)

    display_name = models.CharField(max_length=GENERAL_ATTRIBUTES["display_name"])
    alias = models.CharField(max_length=GENERAL_ATTRIBUTES["alias"], validators=[alias_validator])
    first_name = _general("first_name")
    initials = _general("initials")
    last_name = _general("last_name")
    title = _general("title")
    company = _general("company")
    department = _general("department")
    office = _general("office")
    assistant = _general("assistant")
    phone = _general("phone")
    # A TextField's max_length bounds its form field only: the validator bounds every path.
    address = models.TextField(
        max_length=GENERAL_ATTRIBUTES["address"],
        blank=True,
        validators=[MaxLengthValidator(GENERAL_ATTRIBUTES["address"])],
    )
    city = _general("city")
    state = _general("state")
    postal_code = _general("postal_code")
    country = _general("country")
    primary_smtp = models.CharField(
        "primary SMTP address",
        max_length=GENERAL_ATTRIBUTES["primary_smtp"],
        validators=[smtp_validator],
    )
    target_address = models.CharField(
        max_length=GENERAL_ATTRIBUTES["primary_smtp"],
        blank=True,
        validators=[smtp_validator],
        help_text="Where mail to a custom recipient goes (custom recipients only).",
    )

    trust_level = models.PositiveSmallIntegerField(
        default=0, validators=[MinValueValidator(0), MaxValueValidator(TRUST_LEVEL_MAX)]
    )
    hidden_from_others = models.BooleanField(
        "hidden from other organizations",
        default=False,
        help_text="Never exported: the other organizations' contacts for it are deleted.",
    )
    custom_attribute_1 = _custom()
    custom_attribute_2 = _custom()
    custom_attribute_3 = _custom()
    custom_attribute_4 = _custom()
    custom_attribute_5 = _custom()
    custom_attribute_6 = _custom()
    custom_attribute_7 = _custom()
    custom_attribute_8 = _custom()
    custom_attribute_9 = _custom()
    custom_attribute_10 = _custom()
    custom_attribute_11 = _custom()
    custom_attribute_12 = _custom()
    custom_attribute_13 = _custom()
    custom_attribute_14 = _custom()
    custom_attribute_15 = _custom()
    members = models.ManyToManyField(
        "self", symmetrical=False, blank=True, related_name="member_of"
    )

    # Provenance of a contact written by the requestor's import; empty for the organization's own.
    origin_organization = models.CharField(max_length=64, blank=True, editable=False)
    global_key = models.CharField(max_length=200, null=True, blank=True, editable=False)
    master_usn = models.BigIntegerField(null=True, blank=True, editable=False)
    # A contact whose entry was deleted: out of the address book since then, removed for good
    # after the grace period of its organization's Import Config (requestor.grace).
    hidden_at = models.DateTimeField("hidden since", null=True, blank=True, editable=False)

    # Read by organization: recipient_org_usn.
    usn = models.BigIntegerField("USN", default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    changed_at = models.DateTimeField(auto_now=True)

    objects = RecipientQuerySet.as_manager()

    class Meta:
        ordering = ["display_name"]
        indexes = [models.Index(fields=["organization", "usn"], name="recipient_org_usn")]
        constraints = [
            # A hidden contact gives up its address and alias (a grace period must not keep a
            # new recipient from taking them); restored, it takes them again if they are free.
            models.UniqueConstraint(
                "organization",
                Lower("primary_smtp"),
                condition=Q(hidden_at__isnull=True),
                name="recipient_smtp_unique_shown",
                violation_error_message="Another recipient of this organization has that "
                "primary SMTP address.",
            ),
            models.UniqueConstraint(
                "organization",
                Lower("alias"),
                condition=Q(hidden_at__isnull=True),
                name="recipient_alias_unique_shown",
                violation_error_message="Another recipient of this organization has that alias.",
            ),
            models.UniqueConstraint(
                fields=["organization", "global_key"],
                condition=Q(global_key__isnull=False),
                name="recipient_global_key_unique_per_org",
            ),
            models.CheckConstraint(
                condition=Q(trust_level__gte=0, trust_level__lte=TRUST_LEVEL_MAX),
                name="recipient_trust_level_range",
                violation_error_message=f"Trust level must be between 0 and {TRUST_LEVEL_MAX}.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.display_name} <{self.primary_smtp}>"

    @property
    def dn(self) -> str:
        return f"{self.container.dn}/cn={self.alias}"

    @property
    def is_imported(self) -> bool:
        return self.global_key is not None

    def clean(self) -> None:
        if self.container_id:
            if self.pk and self.organization_id != self.container.organization_id:
                raise ValidationError(
                    {"container": "A recipient cannot move to another organization's container."}
                )
            self.organization_id = self.container.organization_id
        if self.kind == Kind.CUSTOM_RECIPIENT and not self.target_address:
            self.target_address = self.primary_smtp
        if self.kind != Kind.CUSTOM_RECIPIENT and self.target_address:
            raise ValidationError(
                {"target_address": "Only custom recipients have a target address."}
            )

    def validate_constraints(self, exclude=None) -> None:
        # `organization` and `hidden_at` are not editable, so model forms exclude them, and with
        # them every per-organization uniqueness check; they are known here, so check them.
        super().validate_constraints(exclude=set(exclude or ()) - {"organization", "hidden_at"})

    def save(self, **kwargs) -> None:  # (Django 5 passes its arguments by name)
        require_changes_module("Saving a recipient")  # pragma: no mutate (a message)
        if self.pk and self.organization_id not in (None, self.container.organization_id):
            # The old organization would never export the delete: refuse rather than lose it.
            raise ValueError("A recipient cannot move to another organization's container.")
        self.organization_id = self.container.organization_id
        super().save(**kwargs)

    def delete(self, *args, **kwargs):
        require_changes_module("Deleting a recipient")  # pragma: no mutate (a message)
        # Django's own arguments (the database, keep_parents), passed on.
        return super().delete(*args, **kwargs)  # pragma: no mutate (one database, no parents)


class Tombstone(models.Model):
    """What is left of a deleted recipient: its GUID and the USN of the delete, for exports."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="tombstones"
    )
    guid = models.UUIDField("object GUID", db_index=True)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    container = models.ForeignKey(
        Container, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    imported = models.BooleanField(default=False, help_text="The deleted object was a contact.")
    usn = models.BigIntegerField("USN")
    deleted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-usn"]
        indexes = [models.Index(fields=["organization", "usn"], name="tombstone_org_usn")]

    def __str__(self) -> str:
        return f"{self.guid} (deleted at USN {self.usn})"

    @classmethod
    def record(cls, rows, imported_pks: set[int]) -> None:
        """Write tombstones for (pk, organization_id, guid, kind, container_id) rows."""
        by_org: dict[int, list] = {}
        for row in rows:
            by_org.setdefault(row[1], []).append(row)
        for organization_id, org_rows in sorted(by_org.items()):
            own = any(pk not in imported_pks for pk, *_ in org_rows)
            first = allocate_usns(organization_id, len(org_rows), own=own)
            cls.objects.bulk_create(
                cls(
                    organization_id=organization_id,
                    guid=guid,
                    kind=kind,
                    container_id=container_id,
                    imported=pk in imported_pks,
                    usn=first + offset,
                )
                for offset, (pk, _org, guid, kind, container_id) in enumerate(org_rows)
            )


class DigestCell(models.Model):
    """The digest of an organization's recipients of one container, kind, trust level and
    hidden flag.

    Own recipients count as (GUID, local USN), imported contacts as (global key, master USN):
    the requestor adds up the cells its export scope covers, or the contacts it holds, to prove
    that the master holds the same without reading the recipients (docs/protocol.md, rule 10).
    directory.changes keeps the cells as every change is written.
    """

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="digest_cells"
    )
    container = models.ForeignKey(Container, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    trust_level = models.PositiveSmallIntegerField()
    hidden = models.BooleanField(default=False, help_text="Hidden from other organizations.")
    imported = models.BooleanField()
    digest = models.CharField(max_length=32)
    count = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "container", "kind", "trust_level", "hidden", "imported"],
                name="digest_cell_unique_hidden",
            )
        ]

    def __str__(self) -> str:
        return f"{self.container_id}/{self.kind}/{self.trust_level}: {self.count}"


ldap_uri_validator = RegexValidator(
    r"^ldaps?://[^\s/]+/?$",
    "Use ldap://host[:port] or ldaps://host[:port].",
)


class LdapDirectory(models.Model):
    """Where an organization's LDAP directory is, and how far its changes have been read.

    The organization's recipients are mirrored in the built-in tables: each scan reads what
    changed in LDAP since the last one into the mirror, where it gets local USNs and tombstones
    like any other change, and the imported contacts are written from the mirror into LDAP.
    """

    organization = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="ldap")
    uri = models.CharField(
        "server URI",
        max_length=512,
        validators=[ldap_uri_validator],
        help_text="ldap://host:389 or ldaps://host:636.",
    )
    start_tls = models.BooleanField(
        "use StartTLS", default=False, help_text="Upgrade an ldap:// connection to TLS first."
    )
    ca_file = models.CharField(
        "CA certificates file",
        max_length=512,
        blank=True,
        help_text="PEM file of the CAs to trust for TLS; empty for the system's.",
    )
    bind_dn = models.CharField("bind DN", max_length=1024, blank=True)
    password = EncryptedTextField(
        "bind password", max_length=256, blank=True, help_text="Encrypted at rest."
    )
    base_dn = models.CharField(
        "base DN",
        max_length=1024,
        help_text="The subtree holding the organization's recipients, such as dc=example,dc=org.",
    )
    timeout = models.PositiveSmallIntegerField(
        "timeout (seconds)",
        default=10,
        validators=[MinValueValidator(1), MaxValueValidator(600)],
    )

    high_water = models.CharField(
        max_length=32,
        blank=True,
        editable=False,
        help_text="Latest modifyTimestamp read; the next scan reads entries changed since.",
    )
    # Active Directory only: the domain controller's own update sequence numbers.
    unit_dns = models.TextField(
        "organizational units",
        blank=True,
        help_text="Active Directory: the OUs whose people, groups and contacts are the "
        "organization's recipients, one DN per line, each one a container; empty for every OU "
        "under the base DN and its Users container.",
    )
    usn_watermark = models.BigIntegerField(
        default=0,
        editable=False,
        help_text="Active Directory: the highest uSNChanged read; the next scan reads what "
        "changed after it on the same domain controller.",
    )
    invocation_id = models.CharField(
        max_length=36,
        blank=True,
        editable=False,
        help_text="Active Directory: the invocationId of the domain controller the watermark "
        "belongs to (a new one after a restore from backup).",
    )
    dc_service_name = models.CharField(
        max_length=1024,
        blank=True,
        editable=False,
        help_text="Active Directory: the dsServiceName (NTDS Settings DN) of that domain "
        "controller.",
    )
    dc_host = models.CharField(max_length=255, blank=True, editable=False)
    disabled_accounts = models.CharField(
        "disabled accounts",
        max_length=16,
        choices=DisabledAccounts.choices,
        default=DisabledAccounts.LEAVE_OUT,
        help_text="Active Directory: users whose account is disabled.",
    )
    hidden_entries = models.CharField(
        "hidden recipients",
        max_length=32,
        choices=HiddenEntries.choices,
        default=HiddenEntries.HIDDEN_FROM_OTHERS,
        help_text="Active Directory: recipients hidden from the address lists "
        "(msExchHideFromAddressLists, or an empty showInAddressBook when the next setting is on).",
    )
    address_book_only = models.BooleanField(
        "only recipients in an address book are visible",
        default=False,
        help_text="Active Directory with Exchange's address lists: a recipient with an empty "
        "showInAddressBook counts as hidden. Leave off where no address list is kept.",
    )
    usn_probe = models.CharField(
        max_length=80,
        blank=True,
        editable=False,
        help_text="Active Directory: objectGUID and uSNChanged of the last object a scan read; "
        "the next scan reads it again, and a lower uSNChanged (or no such object) means the "
        "domain controller's database went back.",
    )
    scanned_with = models.TextField(
        blank=True,
        editable=False,
        help_text="Active Directory: the units and rules the watermark was read with (when they "
        "change, the next scan compares everything).",
    )
    deletes_read = models.CharField(
        "deletes found",
        max_length=16,
        choices=DeletesRead.choices,
        default=DeletesRead.UNKNOWN,
        blank=True,
        editable=False,
        help_text="Active Directory: whether the bind account sees deleted objects (checked by "
        "deleting an object of its own and looking for it), or each scan lists every recipient "
        "to find the deletes.",
    )
    deletes_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    deletes_note = models.TextField(
        blank=True, editable=False, help_text="Why deletes are found by listing, if they are."
    )
    retry_guids = models.JSONField(
        default=list,
        blank=True,
        editable=False,
        help_text="Active Directory: objectGUIDs of the objects the last scan reported a "
        "problem with, read again by the next one.",
    )
    last_full_scan_at = models.DateTimeField(null=True, blank=True, editable=False)
    full_scan_reason = models.TextField(
        blank=True,
        editable=False,
        help_text="Why the last full comparison with the directory was made.",
    )
    published_usn = models.BigIntegerField(
        default=0,
        editable=False,
        help_text="The imported contacts are written to LDAP up to this local USN.",
    )
    last_scan_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_publish_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    last_error_at = models.DateTimeField(null=True, blank=True, editable=False)
    scan_problems = models.JSONField(
        default=list,
        blank=True,
        editable=False,
        help_text="Entries the last scan left out of the organization's recipients, and why.",
    )
    publish_problems = models.JSONField(
        default=list,
        blank=True,
        editable=False,
        help_text="Imported contacts the last write to LDAP could not write, and why.",
    )

    class Meta:
        verbose_name = "LDAP directory"
        verbose_name_plural = "LDAP directories"

    def __str__(self) -> str:
        return f"{self.organization}: {self.uri} {self.base_dn}"

    def clean(self) -> None:
        errors = {}
        if self.base_dn and not _is_dn(self.base_dn):
            errors["base_dn"] = (
                f"{self.base_dn!r} is not a distinguished name: write it as attribute=value "
                "pairs separated by commas, such as dc=example,dc=org or ou=People,o=Example."
            )
        problem = unit_dns_problem(self.unit_dns, self.base_dn)
        if problem:
            errors["unit_dns"] = problem
        if self.start_tls and self.uri.lower().startswith("ldaps://"):
            errors["start_tls"] = (
                "An ldaps:// connection is TLS from the start: uncheck StartTLS, or use ldap://."
            )
        if errors:
            raise ValidationError(errors)


def unit_dns_problem(unit_dns: str, base_dn: str) -> str:
    """Why the organizational units (one DN per line) cannot be used ("" when they can): each
    must be a DN under the base DN."""
    lines = [line.strip() for line in unit_dns.splitlines() if line.strip()]
    if not lines:
        return ""
    try:
        import ldap.dn
    except ImportError:
        return ""  # LDAP cannot be used then anyway, and the console says so

    try:
        base = [[(a.lower(), v.lower(), f) for a, v, f in rdn] for rdn in ldap.dn.str2dn(base_dn)]
    except ldap.DECODING_ERROR:
        return ""  # the base DN's own error is reported
    for line in lines:
        try:
            rdns = [[(a.lower(), v.lower(), f) for a, v, f in rdn] for rdn in ldap.dn.str2dn(line)]
        except ldap.DECODING_ERROR:
            return f"{line!r} is not a DN (such as OU=Staff,{base_dn or 'DC=example,DC=org'})."
        if len(rdns) <= len(base) or rdns[len(rdns) - len(base) :] != base:
            return f"{line} is not under the base DN {base_dn}."
    return ""


def _is_dn(value: str) -> bool:
    """Whether python-ldap reads `value` as a distinguished name (always true without it: an
    LDAP directory cannot be used then anyway, and the console says so)."""
    try:
        import ldap.dn
    except ImportError:
        return True
    return ldap.dn.is_dn(value)  # (only asked of a value that is not empty)
