"""Server-side downsampling that keeps extrema: per step bucket, the lowest and highest point.

A curve of 1,000,000 steps drawn 1,000 pixels wide needs at most two points per pixel column:
its minimum and its maximum. A spike (a loss jump) survives any downsampling, unlike in
averaging or stride sampling. On PostgreSQL the work runs in SQL (window functions), so only the
points kept leave the database; SQLite, in the server's process anyway, sorts twice for the
same query (5x slower), so there the rows are read in step order and reduced with numpy. Both
keep the same points (tests/track checks them against one numpy oracle).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import Connection, func, or_, select

from kiln.track._schema import MetricRow as M


def series_rows(conn: Connection, run_id: int, key: str, downsample: int | None) -> list[Any]:
    """Rows (step, epoch, value, wall_time) of one metric, ordered by step; at most
    ``downsample`` of them when it is set (two per bucket: the bucket's min and max)."""
    where = (M.run_id == run_id, M.key == key)
    columns = (M.step, M.epoch, M.value, M.wall_time)
    if downsample is None:
        return list(conn.execute(select(*columns).where(*where).order_by(M.step, M.id)))
    count, lo, hi = conn.execute(select(func.count(), func.min(M.step), func.max(M.step))
                                 .where(*where)).one()  # fmt: skip
    if count <= downsample:
        return list(conn.execute(select(*columns).where(*where).order_by(M.step, M.id)))
    buckets = max(1, downsample // 2)
    span = hi - lo + 1
    if conn.dialect.name == "sqlite":  # the DB-API cursor: SQLAlchemy rows cost 3x here
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        rows = cursor.execute(_SQLITE_ROWS, (run_id, key)).fetchall()
        return _extrema(rows, lo, span, buckets)
    bucket = ((M.step - lo) * buckets // span).label("bucket")
    inner = select(*columns, bucket).where(*where, M.value.is_not(None)).subquery()
    ranked = select(
        inner,
        func.row_number()
        .over(partition_by=inner.c.bucket, order_by=(inner.c.value.asc(), inner.c.step))
        .label("rmin"),
        func.row_number()
        .over(partition_by=inner.c.bucket, order_by=(inner.c.value.desc(), inner.c.step))
        .label("rmax"),
    ).subquery()
    query = (
        select(ranked.c.step, ranked.c.epoch, ranked.c.value, ranked.c.wall_time)
        .where(or_(ranked.c.rmin == 1, ranked.c.rmax == 1))
        .order_by(ranked.c.step)
    )
    return list(conn.execute(query))


_SQLITE_ROWS = (
    "SELECT step, epoch, value, wall_time FROM metrics WHERE run_id = ? AND key = ? "
    "AND value IS NOT NULL ORDER BY step, id"
)


def _extrema(rows: list[Any], lo: int, span: int, buckets: int) -> list[Any]:
    """The rows that hold each bucket's min and max value (the earliest step on ties)."""
    if not rows:
        return rows
    steps = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    values = np.fromiter((r[2] for r in rows), np.float64, len(rows))
    bucket = (steps - lo) * buckets // span
    keep = []
    for signed in (values, -values):
        order = np.lexsort((steps, signed, bucket))  # by bucket, then value, then step
        keep.append(order[np.unique(bucket[order], return_index=True)[1]])
    return [rows[i] for i in np.unique(np.concatenate(keep))]  # rows are in step order
