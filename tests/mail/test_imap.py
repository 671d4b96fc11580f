"""`poll_imap` against a throwaway Dovecot: archive, then move; never lose, never duplicate."""

import pytest
from django.core.management import CommandError, call_command
from imapclient import IMAPClient

from tests.mail.conftest import MASTER_SMTP, export_mail, smtp_scenario
from transport import imap
from transport.constants import Direction, Status
from transport.models import Message

PROCESSED = "InterOrg/Processed"
JUNK = (
    b"From: someone@elsewhere.example\r\nTo: master@org1.example\r\n"
    b"Subject: hello\r\nMessage-ID: <junk-1@elsewhere.example>\r\n\r\nNot an export.\r\n"
)


class Box:
    """The agent's mailbox as a test sees it, through its own IMAP connection."""

    def __init__(self, server):
        self.server = server
        self.client = IMAPClient(server.host, port=server.port, ssl=False, timeout=10)
        self.client.login(server.user, server.password)
        self.processed = imap.server_folder(self.client, PROCESSED)

    def mailbox(self, **options) -> imap.Mailbox:
        return imap.Mailbox(
            host=self.server.host,
            port=self.server.port,
            security="plain",
            user=self.server.user,
            password=self.server.password,
            **options,
        )

    def append(self, raw: bytes, flags=()) -> None:
        self.client.append("INBOX", raw, flags=flags)

    def count(self, folder: str) -> int:
        if not self.client.folder_exists(folder):
            return 0
        return self.client.folder_status(folder, ["MESSAGES"])[b"MESSAGES"]

    def empty(self) -> None:
        for folder in ("INBOX", self.processed):
            if self.client.folder_exists(folder):
                self.client.select_folder(folder)
                self.client.delete_messages(self.client.search(["ALL"]))
                self.client.expunge()
                self.client.unselect_folder()


@pytest.fixture
def box(dovecot, db):
    box = Box(dovecot)
    box.empty()
    yield box
    box.client.logout()


@pytest.fixture
def password_file(tmp_path, dovecot):
    path = tmp_path / "imap-password"
    path.write_text(dovecot.password + "\n")
    return path


def poll_command(box, *args: str) -> None:
    call_command(
        "poll_imap",
        *("--host", box.server.host, "--port", str(box.server.port), "--plain"),
        *("--user", box.server.user, "--once"),
        *args,
    )


def inbound():
    return Message.objects.filter(direction=Direction.INBOUND).order_by("id")


def test_poll_imap_archives_moves_and_processes(box, password_file, capsys):
    scenario = smtp_scenario()
    raw, sent = export_mail(scenario["ORG2"])
    box.append(raw)
    box.append(JUNK, flags=[b"\\Seen"])  # opened by someone in a mail client: taken all the same

    poll_command(box, "--password-file", str(password_file))

    export, junk = inbound()
    assert (export.sender, export.recipient) == ("requestor@org2.example", MASTER_SMTP)
    assert (export.message_id, export.signature) == (sent.message_id, sent.signature)
    assert bytes(export.payload) == bytes(sent.payload)
    assert (export.status, export.error) == (Status.PROCESSED, "")
    assert (junk.sender, junk.status) == ("someone@elsewhere.example", Status.REJECTED)
    assert "someone@elsewhere.example may not send" in junk.error
    assert (box.count("INBOX"), box.count(box.processed)) == (0, 2)
    assert capsys.readouterr().out == f"INBOX: 2 archived, 2 moved to {PROCESSED}.\n"


def test_a_crash_before_the_move_loses_nothing_and_duplicates_nothing(box):
    scenario = smtp_scenario()
    raw, _ = export_mail(scenario["ORG2"])
    box.append(raw)

    def crash(message):
        raise SystemExit("killed between the archive commit and the move")

    with pytest.raises(SystemExit):
        imap.poll(box.mailbox(), after_archive=crash)
    [message] = inbound()
    assert message.status == Status.RECEIVED
    assert (box.count("INBOX"), box.count(box.processed)) == (1, 0)

    result = imap.poll(box.mailbox())

    assert [m.pk for m in result.archived] == [message.pk] and result.moved == 1
    assert inbound().count() == 1
    assert (box.count("INBOX"), box.count(box.processed)) == (0, 1)


def test_without_move_it_copies_and_expunges(box, monkeypatch):
    original = IMAPClient.has_capability
    monkeypatch.setattr(
        IMAPClient, "has_capability", lambda self, name: name != "MOVE" and original(self, name)
    )
    box.append(JUNK)

    result = imap.poll(box.mailbox())

    assert result.moved == 1
    assert (box.count("INBOX"), box.count(box.processed)) == (0, 1)


def test_the_recipient_option_names_the_agent_address(box):
    smtp_scenario()
    box.append(JUNK.replace(b"To: master@org1.example", b"To: agent-mailbox@mail.example"))

    imap.poll(box.mailbox(recipient=MASTER_SMTP))

    assert inbound().get().recipient == MASTER_SMTP


def test_a_wrong_password_is_a_clear_error_that_does_not_repeat_it(box, monkeypatch):
    monkeypatch.setenv("INTERORG_IMAP_PASSWORD", "wrong-password-123")
    with pytest.raises(CommandError) as error:
        poll_command(box)
    assert "wrong-password-123" not in str(error.value)
    assert "authentication failed" in str(error.value).lower()
    assert not inbound().exists()


def test_it_needs_a_password(box, monkeypatch):
    monkeypatch.delenv("INTERORG_IMAP_PASSWORD", raising=False)
    with pytest.raises(CommandError, match="--password-file or set INTERORG_IMAP_PASSWORD"):
        poll_command(box)


def test_an_oversize_mail_is_archived_by_its_header_and_rejected(box, settings):
    settings.INTERORG_MAX_INBOUND_MESSAGE = 2048
    box.append(JUNK + b"x" * 70 + b"\r\n" * 60 + (b"y" * 76 + b"\r\n") * 40)

    result = imap.poll(box.mailbox())

    message = inbound().get()
    assert message.status == Status.REJECTED
    assert "more than the 2048 accepted" in message.error
    assert message.headers.startswith("From: someone@elsewhere.example")
    assert bytes(message.payload) == b"" and "yyyy" not in message.headers
    assert result.moved == 1 and box.count("INBOX") == 0
