"""The throwaway PostgreSQL server fixtures, re-exported for pytest (as tests/contract does)."""

from __future__ import annotations

from downloader.store.pytest_plugin import pg_server, pg_url

__all__ = ["pg_server", "pg_url"]  # fixtures, re-exported for pytest
