"""kiln.track: runs, metrics and artifacts in one store (a SQLite file, or PostgreSQL by URL).

store = kiln.track.Store()                      # $KILN_STORE, or ./kiln.db
with store.create_run("lenet5", config={"lr": 1e-3}) as run:
    run.log_metrics({"loss": 0.3}, step=100)    # queued, written in the background
store.metrics(run.id, ["loss"], downsample=1000)
"""

from kiln.track._callback import TrackingCallback
from kiln.track._records import ArtifactInfo, MetricPoint, RunInfo, RunNotFoundError, Series, Status
from kiln.track._run import Run
from kiln.track._store import Store
from kiln.track._system import system_info


def open_store(url: str | None = None) -> Store:
    """The store at ``url`` (default ``$KILN_STORE`` or ``./kiln.db``), migrated to the newest
    schema."""
    return Store(url)


__all__ = [
    "ArtifactInfo",
    "MetricPoint",
    "Run",
    "RunInfo",
    "RunNotFoundError",
    "Series",
    "Status",
    "Store",
    "TrackingCallback",
    "open_store",
    "system_info",
]
