# The LDAP bind passwords, stored in clear until now, encrypted with the secrets key
# (interorg_site/encryption.py); back in clear when migrated backwards.

from django.db import migrations, models

import interorg_site.encryption


def encrypt(apps, schema_editor):
    LdapDirectory = apps.get_model("directory", "LdapDirectory")
    for pk, password in LdapDirectory.objects.exclude(password="").values_list("pk", "password"):
        LdapDirectory.objects.filter(pk=pk).update(
            password=interorg_site.encryption.encrypt(password)
        )


def decrypt(apps, schema_editor):
    LdapDirectory = apps.get_model("directory", "LdapDirectory")
    for pk, token in LdapDirectory.objects.exclude(password="").values_list("pk", "password"):
        LdapDirectory.objects.filter(pk=pk).update(
            password=interorg_site.encryption.decrypt(token, f"directory.LdapDirectory.password (id {pk})")
        )


class Migration(migrations.Migration):

    dependencies = [
        ('directory', '0009_hidden_contacts'),
    ]

    operations = [
        # Text first: an encrypted password is longer than the 256 characters it may have.
        migrations.AlterField(
            model_name='ldapdirectory',
            name='password',
            field=models.TextField(blank=True, max_length=256, verbose_name='bind password'),
        ),
        migrations.RunPython(encrypt, decrypt),
        migrations.AlterField(
            model_name='ldapdirectory',
            name='password',
            field=interorg_site.encryption.EncryptedTextField(blank=True, help_text='Encrypted at rest.', max_length=256, verbose_name='bind password'),
        ),
    ]
