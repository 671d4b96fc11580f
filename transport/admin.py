"""Admin pages of the message archive: every message sent and received, read-only."""

import json
import zlib

from django.contrib import admin, messages
from django.utils.html import format_html
from django.utils.text import Truncator

from directory.admin import ReadOnlyAdmin, pretty_json
from transport import holds, signing
from transport.models import Hold, Message, SigningKey

# Most decompressed payload text shown on a message's page; larger documents are cut.
SHOWN_PAYLOAD_LIMIT = 200 * 1024


def describe_payload(payload: bytes, limit: int = SHOWN_PAYLOAD_LIMIT) -> str:
    """The payload's JSON document as indented text, or what is wrong with it; cut at `limit`."""
    # Decompress at most `limit` bytes: an archived message may be a rejected gzip bomb.
    inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    try:
        raw = inflater.decompress(bytes(payload), limit + 1)
    except zlib.error as exc:
        return f"(not a gzip document: {exc})"
    if len(raw) > limit:
        return _cut(raw.decode("utf-8", "replace"), limit)
    try:
        text = json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
    except ValueError as exc:
        return f"(not a JSON document: {exc})\n{raw.decode('utf-8', 'replace')}"
    return _cut(text, limit)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n… (cut: only the first {limit // 1024} KB are shown)"


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "created_at",
        "direction",
        "status",
        "kind",
        "sender",
        "recipient",
        "batch",
        "part_of",
        "usn_range",
        "size",
        "short_error",
    )
    list_filter = ("direction", "status", "kind", "organization")
    search_fields = ("sender", "recipient", "batch", "error", "digest")
    fieldsets = (
        (None, {"fields": ("direction", "status", "kind", "organization", "error")}),
        ("Envelope", {"fields": ("sender", "recipient", "address_type", "attempts")}),
        (
            "Batch",
            {"fields": ("batch", "part_of", "sequence", "usn_range", "size", "processed_at")},
        ),
        ("Mail", {"fields": ("digest", "body_dropped", "body_kept_until", "headers")}),
        ("Document", {"fields": ("summary_json", "document")}),
    )
    readonly_fields = (
        "direction",
        "status",
        "kind",
        "organization",
        "error",
        "sender",
        "recipient",
        "address_type",
        "attempts",
        "batch",
        "part_of",
        "sequence",
        "usn_range",
        "size",
        "processed_at",
        "summary_json",
        "document",
        "digest",
        "body_dropped",
        "body_kept_until",
        "headers",
    )

    def get_queryset(self, request):
        # Payloads run to megabytes; only a message's own page reads one.
        return super().get_queryset(request).defer("payload")

    @admin.display(description="part")
    def part_of(self, obj: Message) -> str:
        return f"{obj.part}/{obj.parts}" if obj.parts else ""

    @admin.display(description="USN range")
    def usn_range(self, obj: Message) -> str:
        return obj.usn_range

    @admin.display(description="error")
    def short_error(self, obj: Message) -> str:
        return Truncator(obj.error).chars(80)

    @admin.display(description="summary")
    def summary_json(self, obj: Message) -> str:
        return pretty_json(obj.summary)

    @admin.display(description="payload (decoded)")
    def document(self, obj: Message) -> str:
        if obj.body_dropped:
            text = (
                "(The body was not kept: the mail was rejected before a signature vouched for "
                f"it. SHA-256 {obj.digest or '-'}, {obj.size} bytes.)\n\n{obj.headers}"
            )
        else:
            text = describe_payload(obj.payload)
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', text)


@admin.register(SigningKey)
class SigningKeyAdmin(admin.ModelAdmin):
    """Keys are made and rotated here or with `manage.py keys`; the private half never shows."""

    list_display = ("organization", "short_fingerprint", "active", "created_at", "retired_at")
    list_filter = ("organization", "active")
    list_select_related = ("organization",)
    fields = ("organization", "public_key", "fingerprint", "active", "created_at", "retired_at")
    readonly_fields = fields
    actions = ["rotate"]

    @admin.display(description="fingerprint")
    def short_fingerprint(self, key: SigningKey) -> str:
        return key.fingerprint[:16]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Rotate: give these organizations a new signing key")
    def rotate(self, request, queryset) -> None:
        for organization_id in set(queryset.values_list("organization_id", flat=True)):
            key = signing.generate_key(organization_id)
            self.message_user(
                request,
                f"{key.organization}: new key {key.fingerprint}. Give its public key to the "
                "organizations that receive its messages.",
            )


@admin.register(Hold)
class HoldAdmin(admin.ModelAdmin):
    """Batches held for an administrator: read-only, decided with the approve / reject actions
    (the same as the console's Held batches page)."""

    list_display = (
        "held_at",
        "organization",
        "peer",
        "kind",
        "deletes",
        "live",
        "decision",
        "decided_by",
        "decided_at",
    )
    list_filter = ("decision", "kind", "organization")
    list_select_related = ("organization", "decided_by")
    search_fields = ("peer", "sender", "batch")
    actions = ["approve", "reject"]
    readonly_fields = [field.name for field in Hold._meta.fields]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def _decide(self, request, queryset, decide, done: str) -> None:
        decided = []
        for hold in queryset.filter(decision=Hold.Decision.PENDING).order_by("held_at", "pk"):
            try:
                decide(hold.pk, request.user)
            except holds.HoldDecided:
                continue
            decided.append(f"{hold.peer} to {hold.organization}")
        if decided:
            self.message_user(request, f"{done}: {', '.join(decided)}.", messages.SUCCESS)
        else:
            self.message_user(request, "No pending batch was selected.", messages.WARNING)

    @admin.action(description="Approve (apply as it would have been)", permissions=["change"])
    def approve(self, request, queryset) -> None:
        self._decide(request, queryset, holds.approve, "Approved")

    @admin.action(description="Reject (discard)", permissions=["change"])
    def reject(self, request, queryset) -> None:
        self._decide(request, queryset, holds.reject, "Rejected")
