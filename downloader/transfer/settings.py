"""Transfer tuning knobs, one frozen object passed down from the config edge."""

from __future__ import annotations

from dataclasses import dataclass

CHUNK_BYTES = 256 << 10  # aiohttp pauses the socket at 2x; 8 transfers stay within 64 MiB RSS
WRITE_BUFFER_BYTES = 1 << 20
CHECKPOINT_BYTES = 4 << 20
CONNECT_TIMEOUT = 30.0
READ_TIMEOUT = 60.0
MAX_REQUESTS_PER_CALL = 8
ERROR_BODY_LIMIT = 64 << 10


@dataclass(frozen=True)
class TransferSettings:
    """How one part is streamed to disk.

    ``chunk_bytes`` is aiohttp's per-response read buffer (``read_bufsize``; the socket is
    paused at twice this). ``write_buffer_bytes`` is the memory for writes: two halves, one
    written and hashed by a worker thread while the other fills. ``checkpoint_bytes`` bounds
    what a crash can lose: an fsync and an ``on_checkpoint`` call happen before more than
    this many bytes sit unsynced (on disk and in memory together). Timeouts are per phase;
    there is no total.
    """

    chunk_bytes: int = CHUNK_BYTES
    write_buffer_bytes: int = WRITE_BUFFER_BYTES
    checkpoint_bytes: int = CHECKPOINT_BYTES
    connect_timeout: float = CONNECT_TIMEOUT
    read_timeout: float = READ_TIMEOUT
    verify_mp4: bool = True
    max_requests: int = MAX_REQUESTS_PER_CALL

    def __post_init__(self) -> None:
        for name in ("chunk_bytes", "write_buffer_bytes", "checkpoint_bytes", "max_requests"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TransferSettings.{name} must be positive")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ValueError("TransferSettings timeouts must be positive")
