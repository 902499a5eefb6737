"""NLU inbox (issue 18): what the bot probably got wrong, grouped by normalised text, for
operators to label; and the last typed messages of each conversation it is read from

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nlu_inbox",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.String(length=255), nullable=False, unique=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bot_intent", sa.String(length=128)),
        sa.Column("bot_confidence", sa.Float),
        sa.Column("ranking", sa.JSON),
        sa.Column("low_confidence", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("clarified", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("fallback", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("out_of_scope", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("before_handoff", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("flagged_by", sa.String(length=128)),
        sa.Column("suggested", sa.String(length=128)),
        sa.Column("status", sa.String(length=16), nullable=False, server_default="new"),
        sa.Column("label", sa.String(length=128)),
        sa.Column("in_training", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("reviewed_by", sa.String(length=128)),
        sa.Column("reviewed_at", sa.DateTime(timezone=True)),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    )
    op.create_index("ix_nlu_inbox_status_last_at_id", "nlu_inbox", ["status", "last_at", "id"])
    op.create_index("ix_nlu_inbox_status_count_last_at_id", "nlu_inbox", ["status", "count", "last_at", "id"])
    op.create_table(
        "nlu_recent",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sender_id", sa.String(length=255), nullable=False),
        sa.Column("source_ts", sa.Float, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("intent", sa.String(length=128)),
        sa.Column("confidence", sa.Float),
        sa.Column("ranking", sa.JSON),
        sa.Column("clarify_asked", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("sender_id", "source_ts", name="uq_nlu_recent_sender_source_ts"),
    )
    op.create_index("ix_nlu_recent_at", "nlu_recent", ["at"])


def downgrade() -> None:
    op.drop_index("ix_nlu_recent_at", table_name="nlu_recent")
    op.drop_table("nlu_recent")
    op.drop_index("ix_nlu_inbox_status_count_last_at_id", table_name="nlu_inbox")
    op.drop_index("ix_nlu_inbox_status_last_at_id", table_name="nlu_inbox")
    op.drop_table("nlu_inbox")
