"""Who may add organizations, for the templates (the rule itself is console.permissions)."""

from django import template

from console import permissions

register = template.Library()


@register.filter
def may_add_organizations(user) -> bool:
    return permissions.is_installation_administrator(user)
