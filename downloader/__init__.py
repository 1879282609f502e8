"""recall-dl: bulk, resumable, verified downloads of Recall.ai per-participant separate videos."""

__version__ = "0.1.0"
