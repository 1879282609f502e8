"""Exceptions, organised by what the caller does next.

::

    RecallDlError
    ├── ConfigError            bad settings or input: report, exit 2, start nothing
    ├── StopService            nothing can work until an operator acts
    │   └── AuthError          401: wrong key or wrong region (exit 3)
    ├── RetryLater             transient: back off (``retry_after`` seconds when the server said)
    │   ├── RateLimited        429: pause the endpoint class for ``retry_after``
    │   ├── ServerBusy         5xx, 409
    │   ├── NetworkError       connect/reset/timeout/stall
    │   ├── IncompleteBody     fewer bytes than announced; resume from the checkpoint
    │   ├── DiskFull           ENOSPC: keep the partial file, try again later
    │   ├── DiscardPartial     fsync failed: the partial file is untrustworthy, start over
    │   └── RedirectRefused    a media redirect to another origin: never followed, asked again later
    ├── RefreshUrl             a pre-signed URL expired: re-read the manifest, continue
    └── JobFailed              permanent for this job: record the reason, never retry on its own
        ├── NotFound           404
        ├── RemoteRejected     400/403(WAF)/other 4xx, or a media 403 that is not an expiry
        ├── UnsafeUrl          a URL from remote data points somewhere we must not go
        ├── UnsafePath         a path built from remote data would leave the output root
        └── InvalidResponse    a body that does not match the documented shape

Third-party exceptions (aiohttp, OSError) are translated once, at the boundary that
performs the I/O, so that callers only ever branch on this tree.
"""

from __future__ import annotations


class RecallDlError(Exception):
    """Base of every error recall-dl raises on purpose."""

    @property
    def reason(self) -> str:
        """A one-line, log-safe description (never contains secrets or query strings)."""
        return str(self) or type(self).__name__


class ConfigError(RecallDlError):
    """Settings or command-line input are invalid; nothing was started."""


class StopService(RecallDlError):
    """Every job would fail the same way; stop and tell the operator."""


class AuthError(StopService):
    """The API rejected the key (HTTP 401)."""


class RetryLater(RecallDlError):
    """A transient failure; the job should be retried after a back-off."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(RetryLater):
    """HTTP 429; ``retry_after`` is the server's Retry-After in seconds."""


class ServerBusy(RetryLater):
    """HTTP 5xx or 409 from the API or the media host."""


class NetworkError(RetryLater):
    """Connection refused/reset, DNS failure, or a phase timeout."""


class IncompleteBody(RetryLater):
    """The body ended before the announced length."""


class DiskFull(RetryLater):
    """No space left on the output device; the partial file is kept."""


class DiscardPartial(RetryLater):
    """The partial file cannot be trusted (fsync failed); download the part again from zero."""


class RedirectRefused(RetryLater):
    """The media host redirected to another origin; we never follow, but the next attempt may
    be answered directly (S3 sends temporary redirects), so this is retried until the job's
    attempts run out and then fails with this reason."""


class RefreshUrl(RecallDlError):
    """A pre-signed URL expired; re-read video_separate and its manifest, then continue."""


class JobFailed(RecallDlError):
    """A permanent failure for this job; it is recorded with its reason."""


class NotFound(JobFailed):
    """HTTP 404 on a resource we asked for by id."""


class RemoteRejected(JobFailed):
    """A 4xx that retrying will not fix (WAF block, bad request, forbidden)."""


class UnsafeUrl(JobFailed):
    """A URL taken from remote data failed the scheme/host allow-list."""


class UnsafePath(JobFailed):
    """A file path derived from remote data resolves outside the output root."""


class InvalidResponse(JobFailed):
    """A response body does not have the documented shape."""
