"""Printing of a cycle's preview for `sync_now ORG --dry-run`."""

from requestor.constants import ImportOp, PreviewOp
from requestor.preview import Preview, ReplyPreview

NAME_WIDTH = 36
ADDRESS_WIDTH = 36


def clean(text: str) -> str:
    """Text as one printable line: a name may hold anything (control characters included)."""
    return "".join(c if c.isprintable() else "?" for c in text)


def _cell(text: str, width: int) -> str:
    text = clean(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def _line(op: str, name: str, address: str, reason: str) -> str:
    return (
        f"  {op:<10}{_cell(name, NAME_WIDTH):<{NAME_WIDTH + 2}}"
        f"{_cell(address, ADDRESS_WIDTH):<{ADDRESS_WIDTH + 2}}{clean(reason)}"
    )


def counted(counts: dict[str, int], labels) -> str:
    return ", ".join(f"{counts[op]} {labels(op).label.lower()}" for op in counts)


def _export_lines(preview: Preview) -> list[str]:
    what = "full" if preview.full else "incremental"
    lines = [
        f"Export ({what}, local USNs ({preview.usn_from}, {preview.usn_through}], "
        f"{preview.parts} message part{'s' if preview.parts != 1 else ''}): "
        f"{counted(preview.export_counts, PreviewOp)}"
    ]
    if not preview.changes:
        return [*lines, "  Nothing to export: only a request for the master's news."]
    lines.append(_line("op", "name", "address", "reason"))
    for change in preview.changes:
        name = change.name or f"(deleted, id {change.id})"
        reason = f"{change.reason_label.lower()} — {change.detail}"
        lines.append(_line(change.op, name, change.address, reason))
    return lines


def _reply_lines(reply: ReplyPreview) -> list[str]:
    part = f"part {reply.part}/{reply.parts}, " if reply.part else ""
    head = f"Message {reply.message} from {clean(reply.sender)} ({part}{reply.status})"
    if reply.if_approved:
        head += ", if an administrator approves it"
    head += f": {reply.outcome}"
    lines = [head + (f" — {clean(reply.detail)}" if reply.detail else "")]
    for change in reply.changes:
        lines.append(
            _line(change.op, change.name, change.address, f"{change.reason} — {change.detail}")
        )
    return lines


def preview_lines(preview: Preview) -> list[str]:
    lines = [f"Preview of the next cycle of {preview.organization} (nothing was changed).", ""]
    lines += _export_lines(preview)
    lines.append("")
    if preview.replies:
        lines.append(f"Replies received but not applied yet: {len(preview.replies)}")
        for reply in preview.replies:
            lines += _reply_lines(reply)
    else:
        lines.append("Replies received but not applied yet: none.")
    lines += ["", "Guards:"]
    for guard in preview.guards:
        state = {True: "held", False: "not held", None: "not known here"}[guard.held]
        lines.append(f"  {guard.side}: {state} — {clean(guard.detail)}")
    if preview.notes:
        lines += ["", "Notes:"]
        lines += [f"  - {clean(note)}" for note in preview.notes]
    lines += [
        "",
        f"Counts: export {counted(preview.export_counts, PreviewOp)}; "
        f"import {counted(preview.import_counts, ImportOp)}.",
    ]
    return lines
