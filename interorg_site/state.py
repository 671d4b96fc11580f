"""Rows that hold both settings an administrator edits and state the sync engine keeps."""

from django.db import models


class SettingsAndState(models.Model):
    """A row with settings (edited on the console, the admin, the API, by a script) and sync
    state (USNs, acks, digests, fingerprints: `state_fields`), which the engine writes under a
    row lock, naming the fields it writes.

    Everything else saves a copy it read earlier, perhaps before a worker moved the state on: a
    save without `update_fields` writes the settings only, so the state is never stepped back to
    what that copy held. (A master USN written back would be handed out again, and requestors
    past it would never receive those entries.) A new row is written whole.
    """

    state_fields: tuple[str, ...] = ()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs) -> None:
        if kwargs.get("update_fields") is None and not (
            self._state.adding or kwargs.get("force_insert")
        ):
            kwargs["update_fields"] = [
                f.name
                for f in self._meta.concrete_fields
                if not f.primary_key and f.name not in self.state_fields
            ]
        super().save(*args, **kwargs)
