"""The sliding-window decision, pure."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from downloader.store.ratebudget import slot_wait


def test_table() -> None:
    assert slot_wait([], 1, 60, 100) == 0.0
    assert slot_wait([90, 95], 3, 60, 100) == 0.0
    assert slot_wait([90, 95, 99], 3, 60, 100) == 50  # 90 ages out at 150
    assert slot_wait([41, 90, 95, 99], 3, 60, 100) == 50  # needs two to leave: 41, then 90


@given(
    st.lists(st.floats(min_value=0.001, max_value=60), max_size=50),
    st.integers(min_value=1, max_value=20),
)
def test_waiting_exactly_that_long_frees_a_slot(ages: list[float], limit: int) -> None:
    now, window = 1000.0, 60.0
    recent = sorted(now - age for age in ages)  # all still inside (now - window, now]
    wait = slot_wait(recent, limit, window, now)
    assert wait >= 0
    later = now + wait + 1e-9  # float rounding: "exactly" is within a nanosecond
    still_inside = [t for t in recent if t > later - window]
    assert len(still_inside) < limit
