"""Validation of agent addresses: SMTP addresses and EX distinguished names."""

import base64
import re

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
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


def validate_public_key(value: str) -> None:
    """A base64 raw Ed25519 public key, as `manage.py keys show ORG` prints it."""
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(value, validate=True))
    except ValueError:
        raise ValidationError(
            "Enter the base64 Ed25519 public key printed by `manage.py keys show ORG`."
        ) from None
