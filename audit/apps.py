from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from audit import checkpoints, checks, metrics, promises, witnesses  # noqa: F401  (registers system checks)
        from audit.chain_events import ChainEvents, connected

        # The chain writer reports to these through audit.chain_events: they
        # read the chain, so it cannot import them.
        connected.register(
            ChainEvents(
                appended=metrics.observe_appended,
                integrated=metrics.observe_integrated,
                integration_lag=metrics.observe_integration_lag,
                sink_failure=metrics.observe_sink_failure,
                checkpoint_due=checkpoints.checkpoint_if_due,
                group_committed=metrics.observe_group_commit,
                promise=promises.inclusion_promise,
            )
        )
