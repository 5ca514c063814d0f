from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance"

    def ready(self) -> None:
        from governance import checks  # noqa: F401  (registers system checks)
        from veritta_site import checks as site_checks  # noqa: F401  (required settings)
