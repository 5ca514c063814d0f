"""URL configuration for peer_site: the two benchmark routes."""

from django.urls import include, path

urlpatterns = [
    path("bench/", include("peer.urls")),
]
