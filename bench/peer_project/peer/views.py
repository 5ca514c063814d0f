"""The baselines of the HTTP benchmark, in the peer project.

PeerProcessApi is what a Django team would write instead of the governed
pipeline: DRF token authentication, a DRF user throttle on a shared cache,
a serializer, the same text transformation and one ORM audit row.
BareApi is the floor: DRF returning a constant."""

from __future__ import annotations

import hashlib
import os
import unicodedata

import requests
from rest_framework import serializers
from rest_framework.authentication import TokenAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView

from peer.models import PeerAuditRow


class PeerProcessApi(APIView):
    authentication_classes = [TokenAuthentication]
    permission_classes = [IsAuthenticated]
    throttle_classes = [UserRateThrottle]

    class InputSerializer(serializers.Serializer):
        action = serializers.ChoiceField(choices=["process"])
        text = serializers.CharField(max_length=4096, trim_whitespace=False)

    def post(self, request: Request) -> Response:
        digest = hashlib.sha256(request.body).hexdigest()  # before DRF consumes the stream
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        # Same work as governance.executors.TextProcessExecutor's "normalize".
        text = " ".join(unicodedata.normalize("NFC", data.validated_data["text"]).split())
        row = PeerAuditRow.objects.create(
            user=request.user,
            action=data.validated_data["action"],
            input_digest=digest,
            status="SUCCESS",
        )
        output = {"operation": "normalize", "characters": len(text), "words": len(text.split()), "text": text}
        return Response(
            {"status_code": 200, "result": {"action": row.action, "output": output}, "audit": {"id": row.pk}}
        )


class PeerUpstreamApi(APIView):
    """What a Django team would write to let a client call a ticket API: token
    auth, throttle, a serializer that keeps the id to one path segment, the
    call (redirects off, a timeout, the credential from the environment), one
    ORM audit row, the declared fields back (bench/connector_bench.py)."""

    authentication_classes = [TokenAuthentication]
    permission_classes = [IsAuthenticated]
    throttle_classes = [UserRateThrottle]

    class InputSerializer(serializers.Serializer):
        ticket_id = serializers.RegexField(r"^[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,127}$")

    def post(self, request: Request) -> Response:
        digest = hashlib.sha256(request.body).hexdigest()
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        upstream = requests.get(
            f"{os.environ['PEER_UPSTREAM_URL']}/tickets/{data.validated_data['ticket_id']}",
            headers={"Authorization": f"Bearer {os.environ['PEER_UPSTREAM_TOKEN']}", "Accept": "application/json"},
            timeout=5,
            allow_redirects=False,
        )
        ok = 200 <= upstream.status_code < 300
        row = PeerAuditRow.objects.create(
            user=request.user, action="get_ticket", input_digest=digest, status="SUCCESS" if ok else "FAILED"
        )
        if not ok:
            return Response({"status_code": 502, "upstream_status": upstream.status_code}, status=502)
        ticket = upstream.json()
        output = {"upstream_status": upstream.status_code, "response": {k: ticket[k] for k in ("id", "status", "title") if k in ticket}}
        return Response({"status_code": 200, "result": {"action": row.action, "output": output}, "audit": {"id": row.pk}})


class BareApi(APIView):
    authentication_classes: list[type] = []
    permission_classes: list[type] = []
    throttle_classes: list[type] = []

    def post(self, request: Request) -> Response:
        return Response({"ok": True})
