"""Exceptions that carry a message meant for the user (the CLI prints it, no traceback)."""


class ClusterWorkersError(Exception):
    """Base class: a failure the user should read about in one line."""

    exit_code = 1


class ConfigError(ClusterWorkersError):
    """A setting or command-line value is invalid."""

    exit_code = 2


class DatabaseError(ClusterWorkersError):
    """The database is missing, unreadable, locked or lacks the experiment tables."""


class BadVectorError(ClusterWorkersError):
    """An embedding vector has the wrong byte length, mixed dimensions or NaN/inf values."""


class WorkerFailed(ClusterWorkersError):
    """A worker process crashed, was killed, raised or passed its timeout."""


class Interrupted(ClusterWorkersError):
    """The run was stopped by SIGINT/SIGTERM."""

    exit_code = 130


class EngineUnavailable(ClusterWorkersError):
    """A clustering engine cannot run with the libraries installed."""
