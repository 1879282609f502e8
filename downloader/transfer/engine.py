"""The I/O half of a transfer: carry out the plan for one part, from request to rename.

Network chunks are batched in memory, half of ``write_buffer_bytes`` at a time, and each
batch is handed to a worker thread in one hop (write, hash, and fsync when a checkpoint is
due) while the next half is received, so memory per transfer is bounded by the read and
write buffers and the loop never blocks on the disk. A small part costs two hops: open
and lock (before the request: see ``PartFile.open``), then last batch + fsync + MP4 check
+ rename + directory fsync + close.
Third-party errors (aiohttp, OSError) are translated to ``downloader.errors`` here, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias, TypeVar

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
from downloader.mp4check import Mp4Check
from downloader.transfer import workers
from downloader.transfer.partfile import FsyncFailed, PartFile, discard, partial_path
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


class _Transfer:
    """State of one ``download_part`` call (a single part, a single partial file).

    Writes are pipelined: a batch of half the write buffer goes to a worker thread (write
    and hash) while the next half is received; at most one call is in flight, so memory
    stays bounded by the write buffer plus aiohttp's read buffer. At a checkpoint the batch
    ends exactly at the interval and its call also fsyncs; the stream takes no more bytes
    until that call has returned and the checkpoint is recorded, so the received bytes
    beyond the recorded checkpoint (on disk and in memory together) never pass
    ``checkpoint_bytes``. (Receiving on during the fsync would need the fsyncs to start
    early; measured here, the extra fsyncs cost more than the overlap gave.)
    """

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
        self.offset = 0  # bytes handed to the file (written and hashed once settled)
        self.synced = 0  # bytes covered by the last recorded checkpoint
        # received, not yet handed to the file: salvage writes exactly this, never more
        self.batch: list[Buffer] = []
        self.size = 0
        self.half = _half_buffer(settings)
        self.next_sync = 0  # the offset at which the next fsync is handed over
        # the call in flight: its future, the offset it ends at, whether it fsyncs, for what
        self.inflight: asyncio.Future[None] | None = None
        self.inflight_end = 0
        self.inflight_sync = False
        self.inflight_position: Position = FRESH
        self.log = _log.bind(part=final.name, host=url.host)

    # -- disk ------------------------------------------------------------------------------

    async def _disk(self, doing: str, func: Callable[..., T], *args: object) -> T:
        return await self._outcome(doing, workers.start(func, *args))

    async def _outcome(self, doing: str, future: asyncio.Future[T]) -> T:
        try:
            return await workers.wait(future)
        except FsyncFailed as exc:
            raise await self._discard(exc.cause) from exc.cause
        except OSError as exc:
            error = _os_error(exc, self.file.path, doing)
            if isinstance(error, DiskFull) and not self.file.closed:
                # keep the partial file, but give back what the checkpoint does not cover
                with contextlib.suppress(OSError):
                    await workers.run_sync(self.file.reset, self.synced, False)
            raise error from exc

    async def _discard(self, cause: OSError) -> DiscardPartial:
        """An fsync failed: never retry it on the same data; start the part over. After the
        rename (its directory fsync failed) the final file is not durably "complete"."""
        self.log.error("fsync_failed", path=str(self.file.path), error=str(cause))
        await workers.run_sync(discard, self.final if self.file.published else self.file.path)
        return DiscardPartial(f"fsync failed on {self.file.path}: {cause.strerror or cause}")

    async def _reset(self, position: Position, *, rehash: bool = True) -> None:
        """Make the partial file hold exactly ``position.offset`` trusted (hashed) bytes."""
        await self._settle()
        offset = position.offset
        file = self.file
        if file.length != offset or (rehash and file.hashed != offset):
            await self._disk("truncating", file.reset, offset, rehash)
        elif offset != file.hashed:  # what ``reset`` would do, without the syscall
            file.drop_hash()
        self.offset = offset
        if offset == 0 and self.synced > 0:
            self.synced = 0
            await self._emit(position)  # the old checkpoint describes bytes we just dropped
        self.synced = offset

    def _check_total(self, position: Position) -> None:
        if position.total is not None and self.offset + self.size > position.total:
            raise InvalidResponse(f"server sent more than the announced {position.total} bytes")

    async def _hand(self, position: Position, sync: bool) -> None:
        """Settle the call in flight, then hand the batch to the file without waiting."""
        self._check_total(position)
        await self._settle()
        batch, size = self.batch, self.size
        self.batch, self.size = [], 0
        self.inflight = workers.start(self.file.write, batch, self.offset, sync)
        self.offset += size
        self.inflight_end, self.inflight_sync, self.inflight_position = self.offset, sync, position

    async def _settle(self) -> None:
        """Wait for the call in flight; record its checkpoint once its fsync has returned."""
        future = self.inflight
        if future is None:
            return
        self.inflight = None
        try:
            await self._outcome("writing", future)
        finally:
            self.offset = self.file.hashed  # the file, not this coroutine, knows how far it got
        if self.inflight_sync:
            self.synced = self.inflight_end
            await self._emit(self.inflight_position)

    async def _emit(self, position: Position) -> None:
        if self.on_checkpoint is not None:
            await self.on_checkpoint(Checkpoint(self.synced, position.etag, position.total))

    async def _commit(self, position: Position, verify: bool, publish: bool = False) -> Mp4Check:
        """Settle, then write the batch, fsync, (if asked) check and, if it passed and asked
        to, rename to the final name: one thread hop."""
        self._check_total(position)
        await self._settle()
        batch, self.batch, self.size = self.batch, [], 0
        final = self.final if publish else None
        future = workers.start(self.file.finish, batch, self.offset, verify, final)
        try:
            return await self._outcome("syncing", future)
        finally:
            self.offset = self.file.hashed

    async def _salvage(self, position: Position) -> None:
        """After a broken body: keep what arrived (write, fsync, checkpoint) for the retry."""
        await self._settle()
        if self.size or self.offset > self.synced:
            await self._commit(position, verify=False)
            self.synced = self.offset
            await self._emit(position)

    async def _salvage_quietly(self, position: Position) -> None:
        try:
            await self._salvage(position)
        except RecallDlError as exc:
            self.log.warning("salvage_failed", reason=exc.reason)

    async def close(self) -> None:
        """Wait out a call still in flight (an error path), then close the file."""
        future, self.inflight = self.inflight, None
        if future is not None:
            try:
                await workers.wait(future)
            except FsyncFailed as exc:  # never trust that data again, whatever happens next
                await self._discard(exc.cause)
            except OSError:
                pass  # the error that brought us here is the one to report
        if not self.file.closed:
            await workers.run_sync(self.file.close)

    # -- network ---------------------------------------------------------------------------

    async def run(self, checkpoint: Checkpoint | None) -> TransferResult:
        position = plan_start(checkpoint, self.file.length)
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
        etag, total = decision.position.etag, decision.position.total
        received = self.offset + self.size
        if total is None:  # no length announced: the clean end of the body is the end
            total = received
        if received == total:
            return await self._finish(Position(received, etag, total, "body ended"))
        if self.size:
            await self._hand(decision.position, sync=False)
        await self._settle()
        if self.offset == start:
            raise IncompleteBody(f"body ended at {self.offset} of {total} bytes")
        return url, Position(self.offset, etag, total, "")

    async def _stream(self, resp: aiohttp.ClientResponse, url: URL, position: Position) -> None:
        """Copy the body in half-write-buffer batches. The last batch stays in ``self.batch``
        for ``_finish`` to write with the final fsync (one hop)."""
        self.batch, self.size = [], 0
        self.next_sync = self.synced + self.settings.checkpoint_bytes
        room = min(self.settings.checkpoint_bytes, self.half)  # to take before anything is due
        try:
            async for data, _ in resp.content.iter_chunks():
                if len(data) < room:  # the common case: just collect
                    self.batch.append(data)
                    self.size += len(data)
                    room -= len(data)
                else:
                    room = await self._take(data, position)
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = _network_error(exc, url)
            received = self.offset + self.size
            self.log.info("transfer_interrupted", reason=error.reason, offset=received)
            await self._salvage(position)
            raise error from exc
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True), anyio.move_on_after(SALVAGE_SECONDS):
                await self._salvage_quietly(position)
            raise

    async def _take(self, chunk: Buffer, position: Position) -> int:
        """Add a chunk that fills the batch or reaches a checkpoint: hand over what is due
        (splitting the chunk at the checkpoint), and return the room left in the batch."""
        interval = self.settings.checkpoint_bytes
        while True:
            received = self.offset + self.size
            limit = self.next_sync - received
            if self.inflight is not None and self.inflight_sync:
                # the fsync in flight is not recorded yet: what we hold beyond the last
                # recorded checkpoint must stay within one interval (nothing, right after
                # the checkpoint was handed over)
                limit = min(limit, self.synced + interval - received)
                if limit <= 0:
                    await self._settle()
                    continue
            if not chunk:
                return min(limit, self.half - self.size)
            if len(chunk) <= limit:
                self.batch.append(chunk)
                self.size += len(chunk)
                chunk = b""
            else:
                view = memoryview(chunk)
                self.batch.append(view[:limit])
                self.size += limit
                chunk = view[limit:]
            if self.offset + self.size == self.next_sync:
                await self._hand(position, sync=True)
                self.next_sync += self.settings.checkpoint_bytes
            elif self.size >= self.half:
                await self._hand(position, sync=False)

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
        """Last batch + fsync + MP4 check + rename + directory fsync + close (one hop), then
        the final checkpoint.

        The checkpoint comes after the rename: a crash between the two leaves a complete
        final file that the caller cannot adopt without the total (it downloads the part
        again, which costs one part in a rare window); recording it first would have the
        store describe bytes an fsync has not covered yet."""
        total = position.total
        if total is None or self.offset + self.size != total:
            raise IncompleteBody(f"have {self.offset + self.size} bytes, announced {total}")
        report = await self._commit(position, self.settings.verify_mp4, publish=True)
        if not report.ok:
            self.log.warning("mp4_invalid", problem=report.problem)
            raise InvalidResponse(f"not a well-formed MP4: {report.problem}")
        if self.synced != total:
            self.synced = total
            await self._emit(position)
        digest = self.file.hexdigest()
        self.log.info("part_downloaded", bytes=total, sha256=digest)
        return TransferResult(self.final, total, digest, position.etag)


def _half_buffer(settings: TransferSettings) -> int:
    """A batch is half the write buffer: one half is written while the other fills."""
    return max(1, settings.write_buffer_bytes // 2)


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
        file = await workers.run_sync(partial_file, partial)
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
            await job.close()


def partial_file(partial: Path) -> PartFile:
    """Open (creating its folder if needed) and lock the partial file: one thread hop."""
    return PartFile.open(partial, make_parents=True)
