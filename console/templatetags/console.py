"""Template helpers of the console."""

import json

from django import template

register = template.Library()


@register.filter
def as_json(value) -> str:
    """A summary value as JSON text (escaped by the template like any other text)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
