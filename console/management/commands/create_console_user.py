"""Create (or update) a console user with a role in one organization, or in all of them."""

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction
from rest_framework.authtoken.models import Token

from console.constants import ADMINISTRATORS_GROUP, OPERATORS_GROUP, ConsoleRole
from console.models import OrganizationRole
from directory.commands import organization_named


class Command(BaseCommand):
    help = (
        "Create a console user, or change an existing one's role: operator (read only) or "
        "administrator, in one organization (--org) or in every one (--all-organizations)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        where = parser.add_mutually_exclusive_group(required=True)
        where.add_argument("--org", help="Short name of the organization, such as ORG2.")
        where.add_argument(
            "--all-organizations",
            action="store_true",
            help="The role in every organization (through the InterOrg groups).",
        )
        parser.add_argument("--role", choices=ConsoleRole.values, default=ConsoleRole.OPERATOR)
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--password",
            help="The password (default: a random one, printed once for a new user).",
        )
        parser.add_argument(
            "--token", action="store_true", help="Also print the user's API token (made once)."
        )

    def handle(self, *args, username: str, org: str | None, role: str, **options) -> None:
        organization = None
        if org:
            organization = organization_named(org)
        with transaction.atomic():
            user, password = self._user(username, options["email"], options["password"])
            if organization is not None:
                OrganizationRole.objects.update_or_create(
                    user=user, organization=organization, defaults={"role": role}
                )
                where = f"{role} of {organization.name}"
            else:
                self._everywhere(user, role)
                where = f"{role} of every organization"
        self.stdout.write(f"{user.username} is {where}.")
        if password:
            self.stdout.write(f"Password: {password}")
        if options["token"]:
            token, _ = Token.objects.get_or_create(user=user)
            self.stdout.write(f"API token: {token.key}")

    def _user(self, username: str, email: str, password: str | None):
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            password = password or secrets.token_urlsafe(12)
            return User.objects.create_user(username, email, password), password
        if password:
            user.set_password(password)
            user.save(update_fields=["password"])
        return user, None

    def _everywhere(self, user, role: str) -> None:
        operators, _ = Group.objects.get_or_create(name=OPERATORS_GROUP)
        administrators, _ = Group.objects.get_or_create(name=ADMINISTRATORS_GROUP)
        user.groups.remove(operators, administrators)
        user.groups.add(administrators if role == ConsoleRole.ADMINISTRATOR else operators)
