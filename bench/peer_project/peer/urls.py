from django.urls import path

from peer.views import BareApi, PeerProcessApi, PeerUpstreamApi

urlpatterns = [
    path("peer", PeerProcessApi.as_view(), name="peer"),
    path("bare", BareApi.as_view(), name="bare"),
    path("peer-call", PeerUpstreamApi.as_view(), name="peer-call"),
]
