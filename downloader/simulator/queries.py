"""List queries over the lazy world in O(log N + page) (pure; no sockets).

Ordinary bots share one plan shifted by a start time that increases with the index, so every
filter that matters for them (time windows, status, existence) selects a *contiguous index
range*, found by binary search. A list is then a merge of a few such ranges (one per
recording slot) with the short explicit list of bots added at run time.

Cursor lists are keyset-paginated on ``(created_at µs, id)``: a cursor is the position of an
item, not an offset, so inserts between two page reads never shift or repeat results.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from .world import BotEntry, RecordingEntry, World

Item = tuple[int, str, RecordingEntry]  # (order key µs, id, object)
Position = tuple[int, str]


def first_true(lo: int, hi: int, pred: Callable[[int], bool]) -> int:
    """Smallest i in [lo, hi) with pred(i), for pred monotone False..True; hi if none."""
    while lo < hi:
        mid = (lo + hi) // 2
        if pred(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _clip(lo: int, hi: int, key: Callable[[int], int], low: int | None, high: int | None) -> range:
    """Indices whose key lies in [low, high] (either bound optional)."""
    start = lo if low is None else first_true(lo, hi, lambda i: key(i) >= low)
    stop = hi if high is None else first_true(start, hi, lambda i: key(i) > high)
    return range(start, max(start, stop))


def _intersect(a: range, b: range) -> range:
    start = max(a.start, b.start)
    return range(start, max(start, min(a.stop, b.stop)))


# ---- cursors ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    key: int
    id: str
    backwards: bool

    def encode(self) -> str:
        raw = json.dumps([self.key, self.id, "p" if self.backwards else "n"]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor | None:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            key, item_id, direction = json.loads(raw)
        except (ValueError, TypeError, binascii.Error):
            return None
        if not isinstance(key, int) or not isinstance(item_id, str) or direction not in "pn":
            return None
        return cls(key, item_id, direction == "p")


class IndexStream:
    """Ordinary objects for indices in ``span`` whose key strictly increases with the index."""

    def __init__(self, span: range, key: Callable[[int], int], make: Callable[[int], Item]) -> None:
        self.span, self.key, self.make = span, key, make

    def after(self, pos: Position | None) -> Iterator[Item]:
        start = self.span.start
        if pos is not None:
            start = first_true(start, self.span.stop, lambda i: self.key(i) >= pos[0])
            if (
                start < self.span.stop
                and self.key(start) == pos[0]
                and self.make(start)[1] <= pos[1]
            ):
                start += 1
        return (self.make(i) for i in range(start, self.span.stop))

    def before(self, pos: Position) -> Iterator[Item]:
        stop = first_true(self.span.start, self.span.stop, lambda i: self.key(i) >= pos[0])
        if stop < self.span.stop and self.key(stop) == pos[0] and self.make(stop)[1] < pos[1]:
            stop += 1
        return (self.make(i) for i in range(stop - 1, self.span.start - 1, -1))


class ListStream:
    def __init__(self, items: Iterable[Item]) -> None:
        self.items = sorted(items, key=lambda it: (it[0], it[1]))

    def after(self, pos: Position | None) -> Iterator[Item]:
        return (it for it in self.items if pos is None or (it[0], it[1]) > pos)

    def before(self, pos: Position) -> Iterator[Item]:
        return (it for it in reversed(self.items) if (it[0], it[1]) < pos)


Stream = IndexStream | ListStream


@dataclass
class CursorPage:
    results: list[RecordingEntry]
    next: Cursor | None
    previous: Cursor | None


def cursor_page(streams: Sequence[Stream], cursor: Cursor | None, size: int) -> CursorPage:
    def order(item: Item) -> Position:
        return item[0], item[1]

    if cursor is not None and cursor.backwards:
        merged = heapq.merge(
            *(s.before((cursor.key, cursor.id)) for s in streams), key=order, reverse=True
        )
        items = list(itertools.islice(merged, size + 1))
        more, items = len(items) > size, items[:size][::-1]
        last = items[-1] if items else None
        after = Cursor(last[0], last[1], False) if last else Cursor(cursor.key, cursor.id, False)
        before = Cursor(items[0][0], items[0][1], True) if more and items else None
        return CursorPage([it[2] for it in items], after, before)
    pos = None if cursor is None else (cursor.key, cursor.id)
    items = list(
        itertools.islice(heapq.merge(*(s.after(pos) for s in streams), key=order), size + 1)
    )
    more, items = len(items) > size, items[:size]
    nxt = Cursor(items[-1][0], items[-1][1], False) if more else None
    prev = None
    if cursor is not None:
        first = items[0] if items else (cursor.key, cursor.id)
        prev = Cursor(first[0], first[1], True)
    return CursorPage([it[2] for it in items], nxt, prev)


# ---- filters ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BotFilter:
    join_at_after: int | None = None
    join_at_before: int | None = None
    statuses: frozenset[str] = frozenset()
    metadata: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class MediaFilter:
    """Filters of the recording and video_separate lists (created_at is the list's own)."""

    created_after: int | None = None
    created_before: int | None = None
    status_code: str | None = None
    bot_id: str | None = None
    recording_id: str | None = None


def _bot_matches(bot: BotEntry, now: int, f: BotFilter) -> bool:
    status = bot.status(now)
    return (
        (f.join_at_after is None or bot.start_us >= f.join_at_after)
        and (f.join_at_before is None or bot.start_us <= f.join_at_before)
        and (not f.statuses or (status is not None and status.code in f.statuses))
        and all(
            key in bot.spec.metadata and _text(bot.spec.metadata[key]) == value
            for key, value in f.metadata
        )
    )


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def _ordinary_bot_ranges(world: World, now: int, f: BotFilter) -> list[range]:
    n = world.ordinary_count
    if f.metadata or n == 0:
        return []  # ordinary bots carry no metadata
    start = world.ordinary_start_us
    window = _clip(0, n, start, f.join_at_after, f.join_at_before)
    if not f.statuses:
        return [window]
    changes = world.ordinary_plan.status_changes
    ranges = []
    for k, change in enumerate(changes):
        if change.code not in f.statuses:
            continue
        # In status k while offset_k <= now - start(i) < offset_{k+1}.
        lo = 0 if k + 1 == len(changes) else _started_up_to(world, now - changes[k + 1].at)
        hi = _started_up_to(world, now - change.at)
        ranges.append(_intersect(range(lo, max(lo, hi)), window))
    return sorted((r for r in ranges if r), key=lambda r: r.start)


def _started_up_to(world: World, instant: int) -> int:
    """Number of ordinary bots that started at or before ``instant``."""
    return first_true(0, world.ordinary_count, lambda i: world.ordinary_start_us(i) > instant)


def bot_page(
    world: World, now: int, f: BotFilter, page: int, size: int
) -> tuple[int, list[BotEntry]]:
    """(count, bots on 1-based ``page``), ordered by index (= join time for ordinary bots)."""
    ranges = _ordinary_bot_ranges(world, now, f)
    added = [b for b in world.added if b.registered_us <= now and _bot_matches(b, now, f)]
    count = sum(len(r) for r in ranges) + len(added)
    skip, out = (page - 1) * size, list[BotEntry]()
    for r in ranges:
        if skip >= len(r):
            skip -= len(r)
            continue
        out += [world.ordinary_bot(i) for i in r[skip : skip + size - len(out)]]
        skip = 0
        if len(out) == size:
            return count, out
    return count, out + added[skip : skip + size - len(out)]


def _status_range(
    world: World,
    now: int,
    code: str | None,
    *,
    finished_at: int,
    failed: bool,
    expires_at: int | None = None,
) -> range:
    """Ordinary indices in status ``code`` when the object finishes ``finished_at`` after start
    (and, unless it failed, is deleted ``expires_at`` after start)."""
    n = world.ordinary_count
    if code is None:
        return range(n)
    finished = _started_up_to(world, now - finished_at)  # [0, finished) are over
    deleted = 0  # [0, deleted) are gone (the earliest bots expire first): no longer "done"
    if expires_at is not None and not failed:
        deleted = _started_up_to(world, now - max(expires_at, finished_at))
    if code == ("failed" if failed else "done"):
        return range(deleted, finished)
    return range(finished, n) if code == "processing" else range(0)


def recording_streams(world: World, now: int, f: MediaFilter) -> list[Stream]:
    return _streams(world, now, f, video_separate=False)


def video_separate_streams(world: World, now: int, f: MediaFilter) -> list[Stream]:
    return _streams(world, now, f, video_separate=True)


def _streams(world: World, now: int, f: MediaFilter, *, video_separate: bool) -> list[Stream]:
    only_bot, only_recording = _single_targets(world, f)
    if only_bot == -2:
        return []
    streams: list[Stream] = []
    n = world.ordinary_count
    for j, rec in enumerate(world.ordinary_plan.recordings):
        if only_recording is not None and only_recording[1] != j:
            continue
        created = rec.vs_created if video_separate else rec.started
        finished = rec.vs_finished if video_separate else rec.done
        if created is None or finished is None:
            continue
        key = _offset_key(world, created)
        span = _clip(0, n, key, f.created_after, f.created_before)
        span = _intersect(span, range(_started_up_to(world, now - created)))  # exists by now
        failed = rec.vs_failed and video_separate
        status = _status_range(
            world, now, f.status_code, finished_at=finished, failed=failed, expires_at=rec.expires
        )
        span = _intersect(span, status)
        if only_bot is not None:
            span = _intersect(span, range(only_bot, only_bot + 1))
        streams.append(IndexStream(span, key, _maker(world, j, video_separate)))
    added = _added_items(
        world,
        now,
        f,
        video_separate=video_separate,
        only_bot=only_bot,
        only_recording=only_recording,
    )
    streams.append(ListStream(added))
    return streams


def _offset_key(world: World, offset: int) -> Callable[[int], int]:
    def key(i: int) -> int:
        return world.ordinary_start_us(i) + offset

    return key


def _single_targets(world: World, f: MediaFilter) -> tuple[int | None, tuple[int, int] | None]:
    """Decode ``bot_id``/``recording_id`` filters to indices; bot index -2 matches nothing."""
    only_bot: int | None = None
    only_recording: tuple[int, int] | None = None
    if f.bot_id is not None:
        bot = world.bot_by_id(f.bot_id)
        only_bot = -2 if bot is None else bot.index
    if f.recording_id is not None:
        rec = world.recording_by_id_any_time(f.recording_id)
        if rec is None or (only_bot is not None and only_bot != rec.bot.index):
            return -2, None
        only_bot, only_recording = rec.bot.index, (rec.bot.index, rec.index)
    return only_bot, only_recording


def _maker(world: World, j: int, video_separate: bool) -> Callable[[int], Item]:
    def make(i: int) -> Item:
        rec = world.recording(world.ordinary_bot(i), j)
        if video_separate:
            assert rec.vs_created_us is not None
            return rec.vs_created_us, rec.video_separate_id, rec
        return rec.created_us, rec.id, rec

    return make


def _added_items(
    world: World,
    now: int,
    f: MediaFilter,
    *,
    video_separate: bool,
    only_bot: int | None,
    only_recording: tuple[int, int] | None,
) -> Iterator[Item]:
    for bot in world.added:
        if only_bot is not None and bot.index != only_bot:
            continue
        for rec in world.recordings(bot):
            if only_recording is not None and only_recording[1] != rec.index:
                continue
            if video_separate:
                if not rec.vs_exists(now):
                    continue
                key, item_id, code = rec.vs_created_us, rec.video_separate_id, rec.vs_status(now)[0]
            else:
                if not rec.exists(now):
                    continue
                key, item_id, code = rec.created_us, rec.id, rec.status(now)[0]
            assert key is not None
            if (
                (f.created_after is None or key >= f.created_after)
                and (f.created_before is None or key <= f.created_before)
                and (f.status_code is None or code == f.status_code)
            ):
                yield key, item_id, rec
