"""the agent's tools: notes, canned replies, display names, outcome and satisfaction

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("escalations") as table:
        table.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("resolved_by", sa.String(length=64), nullable=True))
        table.add_column(sa.Column("satisfaction", sa.Integer(), nullable=True))
        table.add_column(sa.Column("satisfaction_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("messages") as table:
        table.add_column(sa.Column("buttons", sa.JSON(), nullable=True))
    with op.batch_alter_table("agents") as table:
        table.add_column(sa.Column("display_name", sa.String(length=64), nullable=True))
    op.create_table(
        "canned_replies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("title", sa.String(length=80), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("canned_replies")
    with op.batch_alter_table("agents") as table:
        table.drop_column("display_name")
    with op.batch_alter_table("messages") as table:
        table.drop_column("buttons")
    with op.batch_alter_table("escalations") as table:
        for column in ("satisfaction_at", "satisfaction", "resolved_by", "claimed_at"):
            table.drop_column(column)
