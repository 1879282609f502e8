"""What a task handler asks the runner to do with its job (pure values).

Handlers return one of these; failures are raised as ``downloader.errors`` exceptions and
turned into store operations by the runner, in one place.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]


@dataclass(frozen=True)
class Finish:
    """The job's effect is durable: mark it done with this result.

    ``then`` runs after the done state is committed: work that must observe this job as
    done (e.g. "were all parts of the recording done?") belongs there, not before.
    """

    result: Json = field(default_factory=dict)
    then: Callable[[], Awaitable[None]] | None = None


@dataclass(frozen=True)
class Wait:
    """The remote side is not ready; run again after ``delay`` seconds (no attempt counted)."""

    delay: float
    payload: Json | None = None
    reason: str = ""


Outcome = Finish | Wait
