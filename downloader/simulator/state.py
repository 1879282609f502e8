"""Everything the three listeners share, built once per simulator run."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .clock import SimClock
from .config import SimulatorConfig
from .faults import FaultInjector
from .ratelimit import Decision, SlidingWindow
from .render import Hosts, Renderer
from .signing import Signer
from .stats import Stats
from .world import World


@dataclass
class RateGate:
    """One endpoint class: its window and the Retry-After instant last announced to it."""

    window: SlidingWindow
    not_before: float = 0.0  # monotonic
    # Requests arriving within ``grace`` of a 429 were plausibly already on the wire when the
    # client could first have read it: not counted as early retries.
    grace: float = 0.0
    in_flight_until: float = 0.0

    def announce(self, now: float, retry_after: int) -> None:
        self.not_before = max(self.not_before, now + retry_after)
        self.in_flight_until = now + min(self.grace, retry_after / 2)

    def is_early(self, now: float) -> bool:
        return self.in_flight_until <= now < self.not_before


@dataclass
class SimState:
    config: SimulatorConfig
    clock: SimClock = field(default_factory=SimClock)
    hosts: Hosts = field(default_factory=Hosts)
    # The rate windows' clock; tests move it instead of waiting out a Retry-After.
    rate_clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        cfg = self.config
        self.world = World(cfg, self.clock)
        self.signer = Signer(cfg.seed)
        self.renderer = Renderer(self.world, self.signer, self.hosts)
        self.stats = Stats(cfg.request_log_limit)
        self.faults = FaultInjector(cfg.faults, cfg.seed)
        self.gates = {
            "list": RateGate(
                SlidingWindow(cfg.list_limit_per_min, cfg.rate_window_seconds),
                grace=cfg.in_flight_grace_seconds,
            ),
            "retrieve": RateGate(
                SlidingWindow(cfg.retrieve_limit_per_min, cfg.rate_window_seconds),
                grace=cfg.in_flight_grace_seconds,
            ),
        }

    def note_api_request(self, rate_class: str) -> None:
        """Record an authenticated request the client sent (whatever it gets back)."""
        now = self.rate_clock()
        self.stats.api_times[rate_class].append(now)
        if self.gates[rate_class].is_early(now):
            self.stats.violations["early_retry"] += 1

    def throttle(self, rate_class: str) -> Decision:
        """Decide whether the rate limit (or the api_429 fault) refuses this request."""
        now = self.rate_clock()
        gate = self.gates[rate_class]
        if self.faults.fire("api_429"):
            decision = Decision(False, self.faults.config.retry_after_seconds)
        else:
            decision = gate.window.check(now)
            if not decision.allowed:
                self.stats.violations["over_limit"] += 1
        if not decision.allowed:
            self.stats.served_429[rate_class] += 1
            gate.announce(now, decision.retry_after)
        return decision
