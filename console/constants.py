"""Roles of the console and the names of the groups that grant them in every organization."""

from django.db import models


class ConsoleRole(models.TextChoices):
    OPERATOR = "operator", "Operator (read only)"
    ADMINISTRATOR = "administrator", "Administrator"


# Members of these groups hold the role in every organization of the installation.
OPERATORS_GROUP = "InterOrg operators"
ADMINISTRATORS_GROUP = "InterOrg administrators"

# A requestor whose last successful run is older than this is "stale" on the dashboard.
STALE_AFTER_HOURS = 26

# Alert e-mails (console.alerts): a mail the relay did not take is tried again at later checks,
# waiting twice as long each time up to the longest wait, for as long as the retry window; a
# check that claimed a mail and died leaves it to be tried again after the lease.
ALERT_RETRY_FOR_HOURS = 24
ALERT_LONGEST_WAIT_MINUTES = 60
ALERT_SEND_LEASE_MINUTES = 10
