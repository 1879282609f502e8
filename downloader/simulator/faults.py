"""Decides, per eligible request, whether a named fault fires (seeded, so runs repeat)."""

from __future__ import annotations

import random
from collections import Counter

from .config import FAULT_KNOBS, FaultConfig


def is_count(value: float | int) -> bool:
    """An ``int`` >= 1 is an exact number of injections; anything else is a probability."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


class FaultInjector:
    def __init__(self, config: FaultConfig, seed: int) -> None:
        self._rng = random.Random(f"recall-sim-faults:{seed}")
        self.injected: Counter[str] = Counter()
        self.config = config
        self._remaining: dict[str, int] = {}
        self.set(config)

    def set(self, config: FaultConfig) -> None:
        """Replace the knobs; counted faults start counting again from the new values."""
        self.config = config
        self._remaining = {
            knob: int(getattr(config, knob))
            for knob in FAULT_KNOBS
            if is_count(getattr(config, knob))
        }

    def fire(self, knob: str) -> bool:
        value = getattr(self.config, knob)
        if knob in self._remaining:
            if self._remaining[knob] <= 0:
                return False
            self._remaining[knob] -= 1
        elif not value or self._rng.random() >= value:
            return False
        self.injected[knob] += 1
        return True

    def fraction(self) -> float:
        """Where in a body to cut or stall: somewhere strictly inside it."""
        return self._rng.uniform(0.05, 0.95)

    def choice(self, options: tuple[int, ...]) -> int:
        return self._rng.choice(options)

    def remaining(self) -> dict[str, int]:
        return dict(self._remaining)
