"""A throwaway Active Directory domain controller (Samba) for each test that asks for one.

Every test gets a fresh copy of a provisioned domain (BRANCH.EXAMPLE, base DC=branch,DC=example)
on a loopback address of its test process (127.0.1.10 for the first process, .11 for the next;
INTERORG_TEST_SAMBA_NET changes the first three parts), so tests never see each other's objects.
A copy starts in under a second. The tests skip, saying why, where Samba is not installed or the
tests do not run as root (a DC listens on port 389).
"""

import os

import pytest

from directory.ad import samba


def address() -> str:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    prefix = os.environ.get("INTERORG_TEST_SAMBA_NET", "127.0.1.")
    return f"{prefix}{10 + int(worker or 0)}"


@pytest.fixture
def ad_dc():
    """A running domain controller of a domain of its own, removed after the test."""
    why = samba.missing()
    if why:
        pytest.skip(why)
    with samba.SambaDC(address()) as dc:
        yield dc
