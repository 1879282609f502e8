"""Named SQL: each backend keeps its statements in one file under ``sql/``.

A file is a sequence of blocks, each starting with a line ``-- name: <name>``; the text up to
the next such line is that statement (or script). Keeping SQL out of Python strings makes it
reviewable as SQL, and keeps one place to look when a query plan matters.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_NAME_LINE = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def parse(text: str) -> dict[str, str]:
    """Split a named-SQL file into ``{name: statement}``; duplicate names are an error."""
    parts = _NAME_LINE.split(text)
    queries: dict[str, str] = {}
    # parts = [preamble, name1, body1, name2, body2, ...]
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"duplicate SQL name {name!r}")
        queries[name] = body.strip()
    return queries


@cache
def load(filename: str) -> dict[str, str]:
    """The named statements of ``downloader/store/sql/<filename>`` (read once)."""
    text = resources.files(__package__).joinpath("sql", filename).read_text(encoding="utf-8")
    return parse(text)


def migrations(queries: dict[str, str]) -> list[str]:
    """The scripts named ``migration_NNNN``, in order; version N means the first N applied."""
    names = sorted(n for n in queries if n.startswith("migration_"))
    expected = [f"migration_{i:04d}" for i in range(1, len(names) + 1)]
    if names != expected:
        raise ValueError(f"migrations must be numbered without gaps: {names}")
    return [queries[n] for n in names]
