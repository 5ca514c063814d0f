"""Roles on API keys and sessions (issue 17, docs/AUTHORIZATION.md).

Keys and sessions made before roles existed get the documented default role
`operator`, so they keep working: a profile without role rules lets every role
do what it allows, and the shipped profiles have none."""

from django.db import migrations, models

LEGACY_ROLES = ["operator"]


def legacy_roles(apps, schema_editor):
    for model in ("ApiKey", "Session"):
        apps.get_model("sessions_app", model).objects.all().update(roles=LEGACY_ROLES)


class Migration(migrations.Migration):
    dependencies = [("sessions_app", "0005_gcra_rate_limit_state")]

    operations = [
        migrations.AddField(model_name="apikey", name="roles", field=models.JSONField(blank=True, default=list)),
        migrations.AddField(model_name="session", name="roles", field=models.JSONField(blank=True, default=list)),
        migrations.RunPython(legacy_roles, migrations.RunPython.noop),
        migrations.AlterModelOptions(
            name="apikey",
            options={
                "permissions": [
                    ("revoke_apikey", "Can revoke API keys (console)"),
                    ("set_apikey_roles", "Can change API keys' roles (console)"),
                ],
                "verbose_name": "API key",
            },
        ),
    ]
