from django.urls import path

from governance.apis import HealthApi, ProcessApi

urlpatterns = [
    path("process", ProcessApi.as_view(), name="process"),
    path("health", HealthApi.as_view(), name="health"),
]
