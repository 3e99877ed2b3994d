"""Scheduled jobs that fire exactly once across replicas. See ``docs/scheduling.md``."""

from incidentbot.scheduler.registry import JobContext, job, registered

__all__ = ["JobContext", "job", "registered"]
