"""Stream one Recall part (an MP4 behind a pre-signed URL) to disk, resumably and verified.

``plan`` is the pure half (what to trust, what to ask, what an answer means); ``engine``
carries it out; ``partfile`` holds the blocking file operations run in worker threads.
"""

from downloader.transfer.engine import OnCheckpoint, TransferResult, download_part
from downloader.transfer.limits import TransferLimits
from downloader.transfer.partfile import partial_path
from downloader.transfer.plan import Checkpoint, ContentRange, parse_content_range
from downloader.transfer.session import open_media_session
from downloader.transfer.settings import TransferSettings

__all__ = [
    "Checkpoint",
    "ContentRange",
    "OnCheckpoint",
    "TransferLimits",
    "TransferResult",
    "TransferSettings",
    "download_part",
    "open_media_session",
    "parse_content_range",
    "partial_path",
]
