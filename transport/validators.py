"""Validation of agent addresses: SMTP addresses and EX distinguished names."""

import re

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator

_smtp = EmailValidator("Enter a valid SMTP address, such as master@org1.example.")
_RDN = r"[^/=\x00-\x1f\x7f]{1,64}"
_ex_dn = re.compile(rf"^/o={_RDN}(/(ou|cn)={_RDN})+$", re.IGNORECASE)


def validate_smtp_address(value: str) -> None:
    _smtp(value)


def validate_ex_address(value: str) -> None:
    if not _ex_dn.match(value):
        raise ValidationError(
            "Enter an EX address (a DN) such as /o=ORG1/ou=Site1/cn=Recipients/cn=MASTER.",
            code="invalid",
        )


def validate_agent_address(value: str) -> None:
    """An agent is reached by SMTP, or by its DN when it runs in this installation."""
    if value.startswith("/"):
        validate_ex_address(value)
    else:
        validate_smtp_address(value)
