"""Prometheus metrics of the service, on a registry of its own (prometheus-client).

Counters that the pipeline and the API client already keep (``PipelineContext.stats``,
``ClientStats``) are exported by a collector that reads them at scrape time, so the hot path
pays one dict increment and nothing else. Queue depths come from the store and are refreshed
by the status task (a scrape never waits for the database).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from downloader.lifecycle import JobKind, JobState

if TYPE_CHECKING:
    from downloader.pipeline.context import PipelineContext

PREFIX = "recall_dl"
PART = JobKind.DOWNLOAD_PART.value


class _PipelineCollector(Collector):
    """Exports the pipeline's and the API client's own counters."""

    def __init__(self) -> None:
        self.ctx: PipelineContext | None = None

    def collect(self) -> Iterator[Metric]:
        ctx = self.ctx
        stats: Mapping[str, int] = ctx.stats if ctx is not None else {}
        reasons: Mapping[tuple[str, str], int] = ctx.reasons if ctx is not None else {}
        yield _counter(
            "downloaded_bytes", "Bytes of parts downloaded", stats.get("bytes_downloaded", 0)
        )
        parts = CounterMetricFamily(
            f"{PREFIX}_parts", "Part jobs by outcome and reason", labels=["outcome", "reason"]
        )
        parts.add_metric(["done", ""], stats.get(f"{PART}_done", 0))
        for outcome in ("failed", "retried"):
            name = f"{PART}_{outcome}"
            by_reason = {r: n for (k, r), n in reasons.items() if k == name}
            for reason, n in sorted(by_reason.items()):
                parts.add_metric([outcome, reason], n)
            rest = stats.get(name, 0) - sum(by_reason.values())
            if rest > 0 or not by_reason:
                parts.add_metric([outcome, "unknown"], rest)
        yield parts
        jobs = CounterMetricFamily(
            f"{PREFIX}_job_outcomes", "Jobs of every kind by outcome", labels=["kind", "outcome"]
        )
        for kind in JobKind:
            for outcome in ("done", "failed", "retried"):
                jobs.add_metric([kind.value, outcome], stats.get(f"{kind.value}_{outcome}", 0))
        yield jobs
        yield _counter(
            "lease_reclaims", "Expired leases returned to the queue", stats.get("lease_reclaims", 0)
        )
        yield _counter(
            "url_refreshes", "Expired part URLs re-minted", stats.get("url_refreshes", 0)
        )
        yield from self._api(ctx)

    def _api(self, ctx: PipelineContext | None) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            f"{PREFIX}_api_requests", "Recall API requests by endpoint class", labels=["endpoint"]
        )
        limited = CounterMetricFamily(
            f"{PREFIX}_api_rate_limited",
            "Recall API 429 answers by endpoint class",
            labels=["endpoint"],
        )
        if ctx is not None:
            client = ctx.client.stats
            for cls, n in client.requests.items():
                requests.add_metric([cls.value], n)
            for cls, n in client.rate_limited.items():
                limited.add_metric([cls.value], n)
        yield requests
        yield limited


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", documentation, value=value)


class ServiceMetrics:
    """Every metric ``/metrics`` serves. One instance per service."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._pipeline = _PipelineCollector()
        self.registry.register(self._pipeline)
        self.webhook_deliveries = Counter(
            f"{PREFIX}_webhook_deliveries",
            "Webhook deliveries by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.sweeps = Counter(
            f"{PREFIX}_sweeps", "Sweep rounds by result", ["result"], registry=self.registry
        )
        self.sweep_enqueued = Counter(
            f"{PREFIX}_sweep_enqueued_jobs",
            "Jobs queued by the sweep for recordings no one announced",
            registry=self.registry,
        )
        self.jobs = Gauge(
            f"{PREFIX}_jobs", "Jobs per kind and state", ["kind", "state"], registry=self.registry
        )
        self.oldest_pending = Gauge(
            f"{PREFIX}_oldest_pending_job_age_seconds",
            "Age of the oldest job not yet finished, per kind (0 when none)",
            ["kind"],
            registry=self.registry,
        )
        self.draining = Gauge(
            f"{PREFIX}_draining", "1 while the service is shutting down", registry=self.registry
        )
        self.workers = Gauge(
            f"{PREFIX}_workers", "Workers per pool", ["pool"], registry=self.registry
        )
        self.reloads = Counter(
            f"{PREFIX}_config_reloads",
            "SIGHUP reloads by result",
            ["result"],
            registry=self.registry,
        )

    def bind(self, ctx: PipelineContext) -> None:
        self._pipeline.ctx = ctx

    def set_queue(self, counts: Mapping[tuple[JobKind, JobState], int]) -> None:
        for kind in JobKind:
            for state in JobState:
                self.jobs.labels(kind.value, state.value).set(counts.get((kind, state), 0))

    def set_oldest(self, ages: Mapping[JobKind, float]) -> None:
        for kind in JobKind:
            self.oldest_pending.labels(kind.value).set(ages.get(kind, 0.0))
