"""Standard-Webhooks-signed event delivery (filled in below)."""

from __future__ import annotations

from .state import SimState


class WebhookSender:
    def __init__(self, state: SimState) -> None:
        self.state = state

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
