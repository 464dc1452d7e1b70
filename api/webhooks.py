"""Payment provider webhooks signed with the Standard Webhooks scheme (HMAC-SHA256 over id, timestamp, body).

Headers: `webhook-id`, `webhook-timestamp` (Unix seconds), `webhook-signature` (space-separated
`v1,<base64>` values, so a provider can sign with an old and a new secret while rotating). The
timestamp must be within the configured tolerance of our clock: a captured request replayed later
is refused.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from datetime import datetime, timezone
from typing import Mapping

from standardwebhooks.webhooks import Webhook

from api.errors import ApiError

ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER = "webhook-id", "webhook-timestamp", "webhook-signature"

HEADER_DOCS = [
    {"in": "header", "name": ID_HEADER, "required": True, "schema": {"type": "string"},
     "description": "Unique message id from the provider."},
    {"in": "header", "name": TIMESTAMP_HEADER, "required": True, "schema": {"type": "string"},
     "description": "Unix seconds when the message was signed."},
    {"in": "header", "name": SIGNATURE_HEADER, "required": True, "schema": {"type": "string"},
     "description": "`v1,<base64 HMAC-SHA256 of '<id>.<timestamp>.<body>'>`, space-separated for rotation."},
]


def _refuse(reason: str, message: str = "The webhook signature is not valid.") -> ApiError:
    return ApiError("invalid_signature", message, reason=reason)


class WebhookVerifier:
    """Verifies signatures with one or more secrets (`whsec_<base64>` or raw text)."""

    def __init__(self, secrets: list[str], tolerance_seconds: int) -> None:
        self._hooks = [Webhook(s if s.startswith("whsec_") else s.encode()) for s in secrets if s]
        self.tolerance_ms = tolerance_seconds * 1000

    def verify(self, body: bytes, headers: Mapping[str, str], now_ms: int) -> None:
        """Return if a signature matches and the timestamp is fresh; else raise 401 invalid_signature.

        `headers` must look names up case-insensitively (Flask's request.headers does).
        """
        if not self._hooks:
            raise _refuse("not_configured", "Webhooks are not configured.")
        msg_id, stamp, signatures = (headers.get(h) for h in (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER))
        if not (msg_id and stamp and signatures):
            raise _refuse("missing_headers")
        if not stamp.isdigit() or len(stamp) > 12:
            raise _refuse("bad_timestamp")
        if abs(now_ms - int(stamp) * 1000) > self.tolerance_ms:
            raise _refuse("timestamp_out_of_tolerance",
                          "The webhook timestamp is outside the allowed clock tolerance.")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise _refuse("bad_body") from None
        given = []
        for part in signatures.split():
            version, _, value = part.partition(",")
            if version == "v1":
                try:
                    given.append(base64.b64decode(value, validate=True))
                except (binascii.Error, ValueError):
                    continue
        moment = datetime.fromtimestamp(int(stamp), tz=timezone.utc)
        for hook in self._hooks:
            expected = base64.b64decode(hook.sign(msg_id, moment, text).split(",", 1)[1])
            if any(hmac.compare_digest(expected, candidate) for candidate in given):
                return
        raise _refuse("mismatch")
