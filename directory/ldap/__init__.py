"""Organizations whose directory is an LDAP server (docs/ldap.md).

The recipients of such an organization are mirrored in the built-in tables: `scan` reads the
LDAP changes into the mirror before each export, and `publish` writes the imported contacts from
the mirror into LDAP. Everything here needs python-ldap (`pip install 'interorg-sync[ldap]'`).
"""
