"""Who may see or administer which organization in the console and the API."""

from django.conf import settings
from django.db import models

from console.constants import ConsoleRole


class OrganizationRole(models.Model):
    """A user's role (operator or administrator) in one organization."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="organization_roles"
    )
    organization = models.ForeignKey(
        "directory.Organization", on_delete=models.CASCADE, related_name="console_roles"
    )
    role = models.CharField(max_length=16, choices=ConsoleRole.choices)

    class Meta:
        ordering = ["organization__name", "user__username"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "organization"],
                name="one_role_per_user_and_organization",
                violation_error_message="This user already has a role in this organization.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.role} of {self.organization}"
