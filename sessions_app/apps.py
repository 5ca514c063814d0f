from django.apps import AppConfig


class SessionsAppConfig(AppConfig):
    name = "sessions_app"
    label = "sessions_app"
    verbose_name = "API keys and sessions"

    def ready(self) -> None:
        from audit import alerts
        from sessions_app.ratelimit import minute_count

        # audit's alerts count failures in this app's G10 store, a layer above them.
        alerts.minute_counter.register(minute_count)
