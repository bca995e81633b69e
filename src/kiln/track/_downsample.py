"""Server-side downsampling that keeps extrema: per step bucket, the lowest and highest point.

A curve of 1,000,000 steps drawn 1,000 pixels wide needs at most two points per pixel column:
its minimum and its maximum. A spike (a NaN-free loss jump) survives any downsampling, unlike
in averaging or stride sampling. The work runs in SQL (window functions, on SQLite and
PostgreSQL), so only the points kept travel to the client.
"""

from __future__ import annotations

from typing import Any

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
