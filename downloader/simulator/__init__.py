"""A faithful fake Recall.ai workspace for tests, demos and benchmarks.

Three listeners on loopback: the API host (bots, recordings, video_separates, with Recall's
auth, trailing slashes, WAF, pagination and rate limits), a manifest host serving the parts
JSON behind ``?token=`` links, and an S3-like media host serving exact-size MP4 parts at
pre-signed URLs with Range support. Faults are injected by name (see ``FaultConfig``).

::

    async with Simulator(SimulatorConfig(bots=3)) as sim:
        ...  # point RECALL_API_URL at sim.api_url, RECALL_API_KEY at sim.api_key

URL shapes::

    {api}/api/v1/bot/[{id}/]  /recording/[{id}/]  /video_separate/[{id}/]   /_sim/stats
    {manifest}/api/v1/download/video_separate?token=<vs id>.<expiry>.<hmac>
    {media}/recallai-sim-bot-data/_workspace-<ws>/recordings/<rec id>/video_separate/<vs id>/
        <part id>/video.mp4?X-Amz-Algorithm=…&X-Amz-Date=…&X-Amz-Expires=…&X-Amz-Signature=…
"""

from .config import (
    BotSpec,
    FaultConfig,
    Lifecycle,
    ParticipantSpec,
    SimulatorConfig,
    parse_faults,
    parse_size,
)
from .mp4 import top_level_boxes
from .server import Simulator, SimulatorThread

__all__ = [
    "BotSpec",
    "FaultConfig",
    "Lifecycle",
    "ParticipantSpec",
    "Simulator",
    "SimulatorConfig",
    "SimulatorThread",
    "parse_faults",
    "parse_size",
    "top_level_boxes",
]
