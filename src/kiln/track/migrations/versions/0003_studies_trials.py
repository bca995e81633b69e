"""kiln.tune's studies and trials, in the store.

Before this revision kiln.tune made its own tables (kiln_tune_studies, kiln_tune_trials) in any
database URL it was given; their rows move into the new tables and the old tables go.

Revision ID: 0003
Revises: 0002
"""

import json
import time

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False, index=True),
    )
    op.create_table(
        "trials",
        sa.Column(
            "study",
            sa.String(255),
            sa.ForeignKey("studies.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("heartbeat_at", sa.Double, nullable=False),
        sa.Column("record", sa.Text, nullable=False),
    )
    if sa.inspect(op.get_bind()).has_table("kiln_tune_studies"):
        _adopt_old_tune_tables()


def _adopt_old_tune_tables() -> None:
    bind, now = op.get_bind(), time.time()
    studies = sa.table("studies", sa.column("name"), sa.column("config", sa.JSON),
                       sa.column("created_at"))  # fmt: skip
    trials = sa.table("trials", sa.column("study"), sa.column("number"), sa.column("state"),
                      sa.column("heartbeat_at"), sa.column("record"))  # fmt: skip
    old = bind.execute(sa.text("SELECT name, config FROM kiln_tune_studies")).all()
    rows = [{"name": n, "config": json.loads(c), "created_at": now} for n, c in old]
    if rows:
        op.bulk_insert(studies, rows)
    old = bind.execute(sa.text("SELECT study, number, state, record FROM kiln_tune_trials")).all()
    rows = [{"study": s, "number": n, "state": state, "record": record,
             "heartbeat_at": json.loads(record).get("heartbeat", now)}
            for s, n, state, record in old]  # fmt: skip
    if rows:
        op.bulk_insert(trials, rows)
    op.drop_table("kiln_tune_trials")
    op.drop_table("kiln_tune_studies")


def downgrade() -> None:
    op.drop_table("trials")
    op.drop_table("studies")
