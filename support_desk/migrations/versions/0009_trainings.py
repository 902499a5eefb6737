"""trainings (issue 18): retraining from the console, one job at a time, its figures and
the models switched in and out

Revision ID: 0009
Revises: 0007 (to be rebased onto 0008_nlu_inbox when that lands)
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trainings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slot", sa.String(length=32), server_default="model", nullable=False),
        sa.Column("started_by", sa.String(length=128), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("progress", sa.JSON(), nullable=True),
        sa.Column("candidate_model", sa.Text(), nullable=True),
        sa.Column("served_model", sa.Text(), nullable=True),
        sa.Column("previous_model", sa.Text(), nullable=True),
        sa.Column("candidate_figures", sa.JSON(), nullable=True),
        sa.Column("running_figures", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rolled_back_by", sa.String(length=128), nullable=True),
        sa.Column("rolled_back_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "uq_trainings_active",
        "trainings",
        ["slot"],
        unique=True,
        sqlite_where=sa.text("state IN ('running', 'evaluating')"),
        postgresql_where=sa.text("state IN ('running', 'evaluating')"),
    )
    op.create_index("ix_trainings_started_at", "trainings", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_trainings_started_at", table_name="trainings")
    op.drop_index("uq_trainings_active", table_name="trainings")
    op.drop_table("trainings")
