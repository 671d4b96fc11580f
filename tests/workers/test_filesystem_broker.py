"""The embedded broker never hands a worker a message that is still being written.

kombu's filesystem transport creates a message file under its final name and then writes it: a
worker polling the folder at that moment moved the file away, read it empty or cut short, failed
to decode it, and the task was lost (seen as a worker's JSONDecodeError and a run that never
came). interorg_site.broker writes aside and renames into place.
"""

import threading
import time

from kombu.transport.virtual.base import Empty

from interorg_site.celery import app as celery_app
from tests.workers.conftest import filesystem_broker

MESSAGES = 150
PAYLOAD = {"body": "x" * 1_000_000}  # big enough for the write to take a while


def test_a_consumer_polling_while_messages_are_written_reads_each_whole(tmp_path):
    broker = filesystem_broker(tmp_path / "broker")
    received: list = []
    failures: list[Exception] = []
    done = threading.Event()

    def produce():
        with celery_app.connection_for_write(
            broker.url, transport_options=broker.transport_options
        ) as connection:
            for _ in range(MESSAGES):
                connection.default_channel._put("race", PAYLOAD)
        done.set()

    def consume():
        with celery_app.connection_for_read(
            broker.url, transport_options=broker.transport_options
        ) as connection:
            channel = connection.default_channel
            deadline = time.monotonic() + 120
            while len(received) + len(failures) < MESSAGES and time.monotonic() < deadline:
                try:
                    received.append(channel._get("race"))
                except Empty:
                    continue
                except ValueError as exc:  # a partial file that did not decode
                    failures.append(exc)

    consumer = threading.Thread(target=consume)
    producer = threading.Thread(target=produce)
    consumer.start()
    producer.start()
    producer.join()
    consumer.join()

    assert done.is_set()
    assert failures == []
    assert len(received) == MESSAGES
    assert all(message == PAYLOAD for message in received)


def test_filesystem_urls_use_the_whole_message_transport():
    with celery_app.connection_for_write("filesystem://localhost/") as connection:
        assert type(connection.transport).__module__ == "interorg_site.broker"
