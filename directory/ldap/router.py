"""Route the ldapdb models bound to an organization (models.bound) to its LDAP server."""


class LdapRouter:
    def db_for_read(self, model, **hints):
        return getattr(model, "database", None) if hasattr(model, "base_dn") else None

    db_for_write = db_for_read

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        if app_label == "ldap_entries" or db.startswith("ldap_"):
            return False
        return None
