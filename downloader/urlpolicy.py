"""Where recall-dl may connect when a URL comes from remote data (pure).

Manifest and media URLs are read from API responses, so a hostile or broken response must
not be able to point the daemon at an internal address, a plain-http host or a host we do
not know. Default: https to hosts under ``recall.ai`` or ``amazonaws.com`` (Recall's API
download links and its S3 buckets), the configured API host, and operator-added hosts.
Plain http is accepted only for loopback hosts, and only when the API itself is plain http
on loopback (the bundled simulator, tests).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from yarl import URL

from downloader.errors import UnsafeUrl

DEFAULT_ALLOWED_SUFFIXES = ("recall.ai", "amazonaws.com")
LOOPBACK_NAMES = frozenset({"localhost"})


@functools.lru_cache(maxsize=256)  # called for every part; the hosts are few
def is_loopback_host(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _host_matches(host: str, allowed: str) -> bool:
    """``allowed`` matches itself and its subdomains (``recall.ai``: ``us-east-1.recall.ai``)."""
    return host == allowed or host.endswith("." + allowed)


def redact_url(url: str | URL) -> str:
    """Scheme, host, port and path only: query strings of pre-signed links are bearer secrets."""
    try:
        parsed = URL(str(url))
    except (TypeError, ValueError):
        return "<unparseable url>"
    if not parsed.is_absolute():
        return parsed.path
    port = f":{parsed.explicit_port}" if parsed.explicit_port else ""
    return f"{parsed.scheme}://{parsed.host}{port}{parsed.path}"


@dataclass(frozen=True)
class UrlPolicy:
    """Allow-list of hosts for URLs found in remote data."""

    allowed_hosts: tuple[str, ...]
    allow_loopback_http: bool = False

    @classmethod
    def for_api(cls, api_url: str, extra_hosts: Iterable[str] = ()) -> UrlPolicy:
        api = URL(api_url)
        hosts = [*DEFAULT_ALLOWED_SUFFIXES, *(h.strip().lower() for h in extra_hosts if h.strip())]
        if api.host:
            hosts.append(api.host.lower())
        loopback_http = api.scheme == "http" and api.host is not None and is_loopback_host(api.host)
        return cls(allowed_hosts=tuple(dict.fromkeys(hosts)), allow_loopback_http=loopback_http)

    def _problem(self, parsed: URL) -> str | None:
        """Why ``parsed`` is refused, or None (the URL is shown by the caller, redacted)."""
        host = (parsed.host or "").lower()
        if not parsed.is_absolute() or not host:
            return "URL without a host"
        if parsed.user is not None or parsed.password is not None:
            return "URL with credentials refused"
        if parsed.scheme == "http" and self.allow_loopback_http and is_loopback_host(host):
            return None
        if parsed.scheme != "https":
            return "only https URLs are allowed"
        if _is_ip_literal(host):
            return "IP-literal host refused"
        if parsed.explicit_port not in (None, 443):
            return "non-default port refused"
        if not any(_host_matches(host, allowed) for allowed in self.allowed_hosts):
            return f"host {host} is not in the allow-list (add it with RECALL_DL_ALLOWED_HOSTS)"
        return None

    def check(self, url: str) -> URL:
        """Return the parsed URL, or raise UnsafeUrl saying why (without the query string)."""
        try:
            parsed = URL(url)
        except (TypeError, ValueError) as exc:
            raise UnsafeUrl("unparseable URL in remote data") from exc
        problem = self._problem(parsed)
        if problem is not None:
            raise UnsafeUrl(f"{problem}: {redact_url(parsed)}")
        return parsed
