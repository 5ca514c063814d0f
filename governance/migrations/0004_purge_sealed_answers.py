from django.db import migrations, models
from django.db.models import F


def answers_dated(apps, schema_editor):
    """An answer stored before this migration is dated by the request's last
    approval, which its execution followed at once: its retention starts there."""
    ApprovalRequest = apps.get_model("governance", "ApprovalRequest")
    ApprovalRequest.objects.filter(sealed_answer__isnull=False, answered_at__isnull=True).update(answered_at=F("decided_at"))


class Migration(migrations.Migration):

    dependencies = [
        ("governance", "0003_approvals"),
    ]

    operations = [
        migrations.AddField(
            model_name="approvalrequest",
            name="answered_at",
            field=models.DateTimeField(db_index=True, null=True),
        ),
        migrations.RunPython(answers_dated, migrations.RunPython.noop),
    ]
