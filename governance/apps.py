from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance"

    def ready(self) -> None:
        from audit import correctness, profile_hashes
        from governance import checks  # noqa: F401  (registers system checks)
        from governance.selectors import profile_documents_by_hash, profile_hash_of
        from veritta_site import checks as site_checks  # noqa: F401  (required settings)

        # audit and sessions_app record the active profile's hash but sit below
        # governance: they read it through this provider (audit.profile_hashes).
        profile_hashes.provider.register(profile_hash_of)
        # audit's decision-correctness SLO re-reads the profile versions its records name.
        correctness.profile_documents.register(profile_documents_by_hash)
