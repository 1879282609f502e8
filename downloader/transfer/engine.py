"""The I/O half of a transfer: carry out the plan for one part, from request to rename.

Network chunks are batched in memory up to ``write_buffer_bytes`` and handed to a worker
thread in one hop (write, hash, and fsync when a checkpoint is due), so memory per transfer
is bounded by the read and write buffers and the loop never blocks on the disk.
Third-party errors (aiohttp, OSError) are translated to ``downloader.errors`` here, once.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeAlias, TypeVar

import aiohttp
import anyio
import structlog
from yarl import URL

from downloader.errors import (
    DiscardPartial,
    DiskFull,
    IncompleteBody,
    InvalidResponse,
    JobFailed,
    NetworkError,
    RecallDlError,
    RedirectRefused,
    RetryLater,
    StopService,
)
from downloader.transfer.partfile import FsyncFailed, PartFile, discard, partial_path, publish
from downloader.transfer.plan import (
    FRESH,
    Action,
    Checkpoint,
    Position,
    Response,
    decide,
    error_for_status,
    plan_start,
    request_headers,
)
from downloader.transfer.session import ensure_media_session
from downloader.transfer.settings import ERROR_BODY_LIMIT, TransferSettings
from downloader.urlpolicy import UrlPolicy, redact_url

P = ParamSpec("P")
T = TypeVar("T")
Buffer: TypeAlias = bytes | memoryview
OnCheckpoint = Callable[[Checkpoint], Awaitable[None]]
Outcome: TypeAlias = "TransferResult | tuple[URL, Position]"

SALVAGE_SECONDS = 10.0
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
OPERATOR_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})

_log = structlog.get_logger("downloader.transfer")


@dataclass(frozen=True)
class TransferResult:
    path: Path
    bytes: int
    sha256: str
    etag: str | None


def _os_error(exc: OSError, path: Path, doing: str) -> RecallDlError:
    """Translate an OSError on the partial file (fsync errors are handled separately)."""
    if exc.errno in DISK_FULL_ERRNOS:
        _log.warning("disk_full", path=str(path), doing=doing)
        return DiskFull(f"disk full while {doing} {path}")
    if exc.errno == errno.ELOOP:
        return JobFailed(f"refusing to follow a symlink at the partial path {path}")
    if exc.errno == errno.EWOULDBLOCK:
        return RetryLater(f"another process is still writing {path}", retry_after=5.0)
    if exc.errno in OPERATOR_ERRNOS:
        return StopService(f"cannot write {path}: {exc.strerror}")
    return RetryLater(f"{exc.strerror or exc} while {doing} {path}")


def _network_error(exc: BaseException, url: URL) -> RetryLater:
    where = redact_url(url)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return IncompleteBody(f"body cut short from {where}: {type(exc).__name__}")
    if isinstance(exc, TimeoutError):
        return NetworkError(f"no data from {where} within the read timeout (stalled)")
    return NetworkError(f"{type(exc).__name__} talking to {where}")


async def _thread(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    return await anyio.to_thread.run_sync(lambda: func(*args, **kwargs))


class _Transfer:
    """State of one ``download_part`` call (a single part, a single partial file)."""

    def __init__(
        self,
        media: aiohttp.ClientSession,
        *,
        url: URL,
        final: Path,
        file: PartFile,
        settings: TransferSettings,
        policy: UrlPolicy,
        on_checkpoint: OnCheckpoint | None,
    ) -> None:
        self.media = media
        self.url = url
        self.final = final
        self.file = file
        self.settings = settings
        self.policy = policy
        self.on_checkpoint = on_checkpoint
        self.offset = 0  # bytes written to the partial file (and hashed)
        self.synced = 0  # bytes covered by the last checkpoint
        self.log = _log.bind(part=final.name, host=url.host)

    # -- disk ------------------------------------------------------------------------------

    async def _disk(self, doing: str, func: Callable[P, T], *args: P.args, **kw: P.kwargs) -> T:
        try:
            return await _thread(func, *args, **kw)
        except FsyncFailed as exc:
            raise await self._discard(exc.cause) from exc.cause
        except OSError as exc:
            raise _os_error(exc, self.file.path, doing) from exc

    async def _discard(self, cause: OSError) -> DiscardPartial:
        """An fsync failed: never retry it on the same data; start the part over."""
        self.log.error("fsync_failed", path=str(self.file.path), error=str(cause))
        await _thread(discard, self.file.path)
        return DiscardPartial(f"fsync failed on {self.file.path}: {cause.strerror or cause}")

    async def _reset(self, position: Position, *, rehash: bool = True) -> None:
        """Make the partial file hold exactly ``position.offset`` trusted (hashed) bytes."""
        await self._disk("truncating", self.file.reset, position.offset, rehash)
        self.offset = position.offset
        if position.offset == 0 and self.synced > 0:
            self.synced = 0
            await self._emit(position)  # the old checkpoint describes bytes we just dropped
        self.synced = position.offset

    async def _write(self, batch: list[Buffer], size: int, position: Position, sync: bool) -> None:
        end = self.offset + size
        if position.total is not None and end > position.total:
            raise InvalidResponse(f"server sent more than the announced {position.total} bytes")
        try:
            await self._disk("writing", self.file.write, batch, self.offset, sync)
        except DiskFull:
            # keep the partial file, but give back what the checkpoint does not cover
            with contextlib.suppress(OSError):
                await _thread(self.file.reset, self.synced, False)
            raise
        except anyio.get_cancelled_exc_class():
            # A write already handed to its thread finishes there even when we are
            # cancelled: the file, not this coroutine, knows how far it got.
            self.offset = self.file.hashed
            raise
        self.offset = end
        if sync:
            self.synced = end
            await self._emit(position)

    async def _emit(self, position: Position) -> None:
        if self.on_checkpoint is not None:
            await self.on_checkpoint(Checkpoint(self.synced, position.etag, position.total))

    async def _salvage(self, batch: list[Buffer], size: int, position: Position) -> None:
        """After a broken body: keep what arrived (write, fsync, checkpoint) for the retry."""
        if batch:
            await self._write(batch, size, position, sync=False)
        if self.offset > self.synced:
            await self._disk("syncing", self.file.sync)
            self.synced = self.offset
            await self._emit(position)

    # -- network ---------------------------------------------------------------------------

    async def run(self, checkpoint: Checkpoint | None) -> TransferResult:
        size = await self._disk("inspecting", self.file.size)
        position = plan_start(checkpoint, size)
        self.log.debug("transfer_start", offset=position.offset, reason=position.reason)
        self.synced = checkpoint.offset if checkpoint is not None else 0
        await self._reset(position, rehash=False)
        url = self.url
        for _ in range(self.settings.max_requests):
            outcome = await self._exchange(url, position)
            if isinstance(outcome, TransferResult):
                return outcome
            url, position = outcome
        raise NetworkError(f"gave up after {self.settings.max_requests} requests this attempt")

    async def _exchange(self, url: URL, position: Position) -> Outcome:
        """One request; returns the result or where to go next (URL, position)."""
        try:
            async with self.media.get(
                url, headers=request_headers(position), allow_redirects=False
            ) as resp:
                decision = decide(position, _response_facts(resp))
                action = decision.action
                if action is Action.ERROR:
                    raise decision.error or error_for_status(
                        resp.status, await _error_body(resp), resp.headers.get("Retry-After")
                    )
                if action is Action.REDIRECT:
                    return self._redirect(url, resp), position
                if action is Action.REFETCH:
                    self.log.info("transfer_restart", reason=decision.reason)
                    await self._reset(FRESH)
                    return url, FRESH
                if action is Action.VERIFY:
                    await self._reset(decision.position)
                    return await self._finish(decision.position)
                if action is Action.RESTART and position.offset > 0:
                    self.log.info("transfer_restart", reason=decision.reason)
                await self._reset(decision.position)
                start = self.offset
                await self._stream(resp, url, decision.position)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _network_error(exc, url) from exc
        after = Position(self.offset, decision.position.etag, decision.position.total, "")
        if after.total is None:  # no length announced: the clean end of the body is the end
            after = Position(self.offset, after.etag, self.offset, "body ended")
        if after.complete:
            return await self._finish(after)
        if self.offset == start:
            raise IncompleteBody(f"body ended at {self.offset} of {after.total} bytes")
        return url, after

    async def _stream(self, resp: aiohttp.ClientResponse, url: URL, position: Position) -> None:
        """Copy the body in write-buffer batches; checkpoint before more than
        ``checkpoint_bytes`` would be unsynced (on disk and in memory together)."""
        batch: list[Buffer] = []
        size = 0
        buffer_limit = self.settings.write_buffer_bytes
        checkpoint_limit = self.settings.checkpoint_bytes
        try:
            async for data, _ in resp.content.iter_chunks():
                chunk: Buffer = data
                room = checkpoint_limit - (self.offset - self.synced) - size
                # ``batch`` only ever holds bytes not yet handed to a write: what a
                # cancelled or failed write took is the file's business (see _write), and
                # salvage must never write it a second time.
                while len(chunk) >= room:  # a checkpoint falls inside this chunk
                    head, chunk = memoryview(chunk)[:room], memoryview(chunk)[room:]
                    taken, taken_size = [*batch, head], size + room
                    batch, size = [], 0
                    await self._write(taken, taken_size, position, sync=True)
                    room = checkpoint_limit
                if not chunk:
                    continue
                batch.append(chunk)
                size += len(chunk)
                if size >= buffer_limit:
                    taken, taken_size = batch, size
                    batch, size = [], 0
                    await self._write(taken, taken_size, position, sync=False)
            if batch:
                taken, taken_size = batch, size
                batch, size = [], 0
                await self._write(taken, taken_size, position, sync=False)
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = _network_error(exc, url)
            self.log.info("transfer_interrupted", reason=error.reason, offset=self.offset + size)
            await self._salvage(batch, size, position)
            raise error from exc
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True), anyio.move_on_after(SALVAGE_SECONDS):
                await self._salvage_quietly(batch, size, position)
            raise

    async def _salvage_quietly(self, batch: list[Buffer], size: int, position: Position) -> None:
        try:
            await self._salvage(batch, size, position)
        except RecallDlError as exc:
            self.log.warning("salvage_failed", reason=exc.reason)

    def _redirect(self, url: URL, resp: aiohttp.ClientResponse) -> URL:
        location = resp.headers.get("Location")
        if not location:
            raise InvalidResponse(f"redirect {resp.status} without a Location")
        target = url.join(URL(location, encoded=True))
        if (target.scheme, target.host, target.port) != (url.scheme, url.host, url.port):
            raise RedirectRefused(
                f"cross-host redirect refused: {redact_url(url)} -> {redact_url(target)}"
            )
        self.policy.check(str(target))
        return target

    async def _finish(self, position: Position) -> TransferResult:
        total = position.total
        if total is None or self.offset != total:
            raise IncompleteBody(f"have {self.offset} bytes, announced {total}")
        await self._disk("syncing", self.file.sync)
        if self.settings.verify_mp4:
            report = await self._disk("checking", self.file.check_mp4)
            if not report.ok:
                self.log.warning("mp4_invalid", problem=report.problem)
                raise InvalidResponse(f"not a well-formed MP4: {report.problem}")
        if self.synced != total:
            self.synced = total
            await self._emit(position)
        try:
            await self._disk("publishing", publish, self.file.path, self.final)
        except DiscardPartial:
            await _thread(discard, self.final)  # renamed but not durably: not "complete"
            raise
        digest = self.file.hexdigest()
        self.log.info("part_downloaded", bytes=total, sha256=digest)
        return TransferResult(self.final, total, digest, position.etag)


def _response_facts(resp: aiohttp.ClientResponse) -> Response:
    headers = resp.headers
    return Response(
        status=resp.status,
        content_range=headers.get("Content-Range"),
        content_length=headers.get("Content-Length"),
        etag=headers.get("ETag"),
    )


async def _error_body(resp: aiohttp.ClientResponse) -> bytes:
    """At most ERROR_BODY_LIMIT bytes of an error body; a broken body is just shorter."""
    parts: list[bytes] = []
    size = 0
    try:
        while size < ERROR_BODY_LIMIT:
            data = await resp.content.read(ERROR_BODY_LIMIT - size)
            if not data:
                break
            parts.append(data)
            size += len(data)
    except (aiohttp.ClientError, TimeoutError):
        pass
    return b"".join(parts)


async def download_part(
    media: aiohttp.ClientSession,
    url: str,
    final_path: str | Path,
    *,
    checkpoint: Checkpoint | None = None,
    on_checkpoint: OnCheckpoint | None = None,
    settings: TransferSettings | None = None,
    policy: UrlPolicy,
) -> TransferResult:
    """Download one part to ``final_path`` (via ``<final>.part``), resuming from ``checkpoint``.

    Raises only ``downloader.errors`` types: RetryLater subclasses (back off, call again
    with the last checkpoint; after DiscardPartial call again with ``checkpoint=None``),
    RefreshUrl (call again with a fresh URL and the same checkpoint), JobFailed subclasses
    (permanent), StopService (the output location is not writable).
    """
    settings = settings or TransferSettings()
    ensure_media_session(media)
    policy.check(url)
    final = Path(final_path)
    partial = partial_path(final)
    try:
        await _thread(final.parent.mkdir, parents=True, exist_ok=True)
        file = await _thread(PartFile.open, partial)
    except OSError as exc:
        raise _os_error(exc, partial, "opening") from exc
    job = _Transfer(
        media,
        url=URL(url, encoded=True),
        final=final,
        file=file,
        settings=settings,
        policy=policy,
        on_checkpoint=on_checkpoint,
    )
    try:
        return await job.run(checkpoint)
    finally:
        with anyio.CancelScope(shield=True):
            await _thread(file.close)
