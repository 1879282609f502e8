"""Pre-signed media URLs (SigV4 look-alikes) and manifest ``?token=`` links (pure).

The signature is an HMAC with a per-seed secret over exactly what a client must not change:
the path, the signing date and the lifetime. Range and other headers are not signed, as
with S3 query-string auth, so resuming with ``Range`` keeps working.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from .clock import US, amz_date, parse_amz_date

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_EXPIRES = 604_800  # S3's own ceiling for X-Amz-Expires


@dataclass(frozen=True)
class MediaCheck:
    valid: bool  # signature matches
    expires_us: int = 0
    expires_seconds: int = 0
    signed_us: int = 0


class Signer:
    def __init__(self, seed: int) -> None:
        self._secret = hashlib.sha256(f"recall-sim-secret:{seed}".encode()).digest()

    def _mac(self, *fields: str) -> str:
        return hmac.new(self._secret, "\n".join(fields).encode(), hashlib.sha256).hexdigest()

    def media_query(self, path: str, now_us: int, ttl_seconds: float) -> dict[str, str]:
        date = amz_date(now_us)
        expires = str(min(MAX_EXPIRES, max(1, int(ttl_seconds))))
        return {
            "X-Amz-Algorithm": ALGORITHM,
            "X-Amz-Credential": f"ASIASIMULATOR/{date[:8]}/us-east-1/s3/aws4_request",
            "X-Amz-Date": date,
            "X-Amz-Expires": expires,
            "X-Amz-SignedHeaders": "host",
            "X-Amz-Signature": self._mac("media", path, date, expires),
        }

    def check_media(self, path: str, query: Mapping[str, str]) -> MediaCheck:
        date, expires = query.get("X-Amz-Date", ""), query.get("X-Amz-Expires", "")
        signature = query.get("X-Amz-Signature", "")
        if query.get("X-Amz-Algorithm") != ALGORITHM or not expires.isdigit():
            return MediaCheck(False)
        if not hmac.compare_digest(signature, self._mac("media", path, date, expires)):
            return MediaCheck(False)
        signed = parse_amz_date(date)
        return MediaCheck(True, signed + int(expires) * US, int(expires), signed)

    def manifest_token(self, vs_id: str, now_us: int, ttl_seconds: float) -> str:
        expires = str(now_us // US + max(1, int(ttl_seconds)))
        return f"{vs_id}.{expires}.{self._mac('manifest', vs_id, expires)}"

    def check_manifest(self, token: str, now_us: int) -> tuple[str | None, bool]:
        """(video_separate id if the token is genuine, whether it has expired)."""
        vs_id, _, rest = token.partition(".")
        expires, _, signature = rest.partition(".")
        if not expires.isdigit() or not hmac.compare_digest(
            signature, self._mac("manifest", vs_id, expires)
        ):
            return None, False
        return vs_id, now_us > int(expires) * US
