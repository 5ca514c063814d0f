"""The project's routes plus the two peer routes of the HTTP benchmark."""

from django.urls import include, path

from veritta_site.urls import handler400, handler404, handler500  # noqa: F401 - Django reads them here

urlpatterns = [
    path("bench/", include("bench.peer.urls")),
    path("", include("veritta_site.urls")),
]
