"""kombu's filesystem transport, with each message appearing in the queue folder whole.

kombu writes a message straight into the queue folder under its final name: a worker polling
the folder can take the file between its creation and the end of the write, read it empty or
cut short, fail to decode it, and the task is lost (the file is already moved away). Here a
message is written under a hidden name and renamed into place, which is atomic within a folder;
the consumer ignores names that do not end in `.<queue>.msg`, so it never sees a partial file.
The embedded default (`make run`) runs on this broker.
"""

import contextlib
import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        """Put `payload` onto `queue`: written aside, then renamed to the name kombu gives it."""
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        draft = os.path.join(self.data_folder_out, f".{uuid.uuid4()}.partial")
        try:
            with open(draft, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.replace(draft, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(draft)
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel


def install() -> None:
    """Make `filesystem://` URLs use this transport in this process (the Celery app calls it)."""
    TRANSPORT_ALIASES["filesystem"] = f"{__name__}:Transport"
