"""The task handlers and the worker pools that run them (see DESIGN.md, "The flow of work")."""

from downloader.pipeline.context import PipelineContext
from downloader.pipeline.runner import lease_keeper, run_job, run_pools, worker_loop

__all__ = ["PipelineContext", "lease_keeper", "run_job", "run_pools", "worker_loop"]
