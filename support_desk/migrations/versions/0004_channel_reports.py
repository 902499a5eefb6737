"""channel reports (issue 15): delivery states, WeCom sessions, attachments, the bot's
rating, and one copy of each Rasa message per case across desk processes

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "channel_reports",
        sa.Column("report_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("sender_id", sa.String(length=255), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("report_id"),
    )
    op.create_table(
        "attachments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("escalation_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("msgid", sa.String(length=128), nullable=False),
        sa.Column("content_type", sa.String(length=32), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["escalation_id"], ["escalations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("channel", "msgid", name="uq_attachments_channel_msgid"),
    )
    op.create_index("ix_attachments_escalation_id", "attachments", ["escalation_id"])
    with op.batch_alter_table("escalations") as table:
        table.add_column(sa.Column("platform_session", sa.String(length=16), nullable=True))
        # "wecom:<servicer_userid>": a WeCom userid is up to 64 characters itself.
        for column in ("claimed_by", "resolved_by"):
            table.alter_column(column, type_=sa.String(length=128), existing_type=sa.String(length=64))
    with op.batch_alter_table("outcomes") as table:
        table.add_column(sa.Column("rating", sa.Integer(), nullable=True))
        table.add_column(sa.Column("rated_at", sa.DateTime(timezone=True), nullable=True))
    # Two desk processes could both have copied one Rasa message before this index
    # existed: keep the first copy.
    op.execute(
        "DELETE FROM messages WHERE source_ts IS NOT NULL AND id NOT IN ("
        "SELECT MIN(id) FROM messages WHERE source_ts IS NOT NULL GROUP BY escalation_id, source_ts)"
    )
    with op.batch_alter_table("messages") as table:
        # "WeCom <servicer_userid>"
        table.alter_column("author", type_=sa.String(length=128), existing_type=sa.String(length=64))
        table.add_column(sa.Column("channel_state", sa.String(length=8), nullable=True))
        table.add_column(sa.Column("channel_reason", sa.Text(), nullable=True))
        table.add_column(sa.Column("channel_at", sa.Float(), nullable=True))
        table.add_column(sa.Column("attachment_id", sa.Integer(), nullable=True))
        table.create_foreign_key("fk_messages_attachment_id", "attachments", ["attachment_id"], ["id"], ondelete="SET NULL")
        table.create_index("uq_messages_escalation_source_ts", ["escalation_id", "source_ts"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("messages") as table:
        table.drop_index("uq_messages_escalation_source_ts")
        table.drop_constraint("fk_messages_attachment_id", type_="foreignkey")
        for column in ("attachment_id", "channel_at", "channel_reason", "channel_state"):
            table.drop_column(column)
        table.alter_column("author", type_=sa.String(length=64), existing_type=sa.String(length=128))
    with op.batch_alter_table("outcomes") as table:
        table.drop_column("rated_at")
        table.drop_column("rating")
    with op.batch_alter_table("escalations") as table:
        table.drop_column("platform_session")
        for column in ("claimed_by", "resolved_by"):
            table.alter_column(column, type_=sa.String(length=64), existing_type=sa.String(length=128))
    op.drop_index("ix_attachments_escalation_id", table_name="attachments")
    op.drop_table("attachments")
    op.drop_table("channel_reports")
