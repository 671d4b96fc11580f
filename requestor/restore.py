"""A requestor restored from a backup: the master has seen local USNs it no longer remembers.

Its new changes would take USNs the master has already seen for other changes, and the master,
which keeps only changes newer than what it holds, would ignore them. So the organization's USN
counter jumps past everything the master acknowledged, every recipient in the export scope is
restated with a fresh USN above it, and a full export lets the master drop what the restored
directory no longer holds (docs/protocol.md, rule 7).
"""

import logging

from directory import changes
from directory.models import Organization, Recipient
from requestor.models import RequestorConfig
from requestor.scope import Scope

log = logging.getLogger(__name__)


def restart_after_restore(config: RequestorConfig, acknowledged: int) -> None:
    organization = Organization.objects.select_for_update(no_key=True).get(
        pk=config.organization_id
    )
    if organization.usn < acknowledged:  # pragma: no mutate (at equal, <= sets the same value)
        Organization.objects.filter(pk=organization.pk).update(usn=acknowledged)
    own = Recipient.objects.filter(organization_id=organization.pk)
    restated = changes.touch(organization.pk, own.filter(Scope.of(config).q()))
    config.request_full_export()
    log.warning(
        "%s: the master acknowledged local USN %s, beyond any this organization remembers "
        "(restored from a backup?): %s recipients restated above it, full export next cycle",
        organization,
        acknowledged,
        restated,
    )
