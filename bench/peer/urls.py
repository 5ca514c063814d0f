from django.urls import path

from bench.peer.views import BareApi, PeerProcessApi

urlpatterns = [
    path("peer", PeerProcessApi.as_view(), name="bench-peer"),
    path("bare", BareApi.as_view(), name="bench-bare"),
]
