"""OpenAPI pieces shared by every API view: the error envelope and the
catalogue of reason codes it may carry."""

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from veritta_site.errors import CATALOGUE

RESPONSE_CODES = sorted(code for code, reason in CATALOGUE.items() if reason.status)


class ErrorEnvelopeSerializer(serializers.Serializer):
    status_code = serializers.IntegerField()
    reason_codes = serializers.ListField(
        child=serializers.ChoiceField(choices=RESPONSE_CODES),
        min_length=1,
        help_text="Codes from docs/ERROR_ENVELOPE.md.",
    )
    trace_id = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField(allow_null=True)


ERROR_RESPONSES: dict[int | tuple[int, str], OpenApiResponse] = {
    status: OpenApiResponse(ErrorEnvelopeSerializer, description="Error envelope")
    for status in sorted({reason.status for reason in CATALOGUE.values() if reason.status})
}


def strict_request_bodies(result: dict, generator: object, request: object, public: bool) -> dict:
    """drf-spectacular post-processing hook: the API refuses what it does not
    know, so the document says so — request bodies are required and their
    objects allow no additional properties."""
    schemas = result.get("components", {}).get("schemas", {})
    for path in result.get("paths", {}).values():
        for operation in path.values():
            body = operation.get("requestBody") if isinstance(operation, dict) else None
            if not body:
                continue
            body["required"] = True
            for media in body.get("content", {}).values():
                name = media.get("schema", {}).get("$ref", "").rsplit("/", 1)[-1]
                if name in schemas:
                    schemas[name]["additionalProperties"] = False
    return result
