# The private halves of the signing keys, stored in clear until now, encrypted with the secrets
# key (interorg_site/encryption.py); back in clear when migrated backwards.

from django.db import migrations, models

import interorg_site.encryption


def encrypt(apps, schema_editor):
    SigningKey = apps.get_model("transport", "SigningKey")
    for pk, private in SigningKey.objects.exclude(private_key="").values_list("pk", "private_key"):
        SigningKey.objects.filter(pk=pk).update(
            private_key=interorg_site.encryption.encrypt(private)
        )


def decrypt(apps, schema_editor):
    SigningKey = apps.get_model("transport", "SigningKey")
    for pk, token in SigningKey.objects.exclude(private_key="").values_list("pk", "private_key"):
        SigningKey.objects.filter(pk=pk).update(
            private_key=interorg_site.encryption.decrypt(token, f"transport.SigningKey.private_key (id {pk})")
        )


class Migration(migrations.Migration):

    dependencies = [
        ('transport', '0006_keep_rejected_mail_by_digest'),
    ]

    operations = [
        # Text first: an encrypted key is longer than the 64 characters of the clear one.
        migrations.AlterField(
            model_name='signingkey',
            name='private_key',
            field=models.TextField(editable=False),
        ),
        migrations.RunPython(encrypt, decrypt),
        migrations.AlterField(
            model_name='signingkey',
            name='private_key',
            field=interorg_site.encryption.EncryptedTextField(editable=False, help_text='Raw private key, base64; encrypted at rest.'),
        ),
    ]
