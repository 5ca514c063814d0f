"""The baselines of the HTTP benchmark, in the peer project.

PeerProcessApi is what a Django team would write instead of the governed
pipeline: DRF token authentication, a DRF user throttle on a shared cache,
a serializer, the same text transformation and one ORM audit row.
BareApi is the floor: DRF returning a constant."""

from __future__ import annotations

import hashlib
import unicodedata

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


class BareApi(APIView):
    authentication_classes: list[type] = []
    permission_classes: list[type] = []
    throttle_classes: list[type] = []

    def post(self, request: Request) -> Response:
        return Response({"ok": True})
