"""incidents (issue 17): scope, proposals, linked merchants and their "it is over"
messages, the bot's reports, operator roles and the audit log

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as table:
        table.add_column(sa.Column("scope", sa.JSON(), nullable=True))
        for name in ("ended_at", "posted_at", "all_told_at", "first_report_at", "last_report_at"):
            table.add_column(sa.Column(name, sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("close_note", sa.Text(), nullable=True))
        table.add_column(sa.Column("escalation_id", sa.Integer(), nullable=True))
        table.add_column(sa.Column("proposal_key", sa.String(length=128), nullable=True))
        table.add_column(sa.Column("report_count", sa.Integer(), nullable=True))
        table.create_foreign_key("fk_incidents_escalation_id", "escalations", ["escalation_id"], ["id"], ondelete="SET NULL")
    # Incidents posted before scopes existed were posted when they were created.
    op.execute("UPDATE incidents SET posted_at = created_at WHERE posted_at IS NULL")
    op.create_index(
        "uq_incidents_open_proposal",
        "incidents",
        ["proposal_key"],
        unique=True,
        sqlite_where=sa.text("status = 'proposed'"),
        postgresql_where=sa.text("status = 'proposed'"),
    )
    op.create_table(
        "incident_merchants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("sender_id", sa.String(length=255), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=True),
        sa.Column("terminal_serial", sa.String(length=64), nullable=True),
        sa.Column("terminal_model", sa.String(length=64), nullable=True),
        sa.Column("region", sa.String(length=16), nullable=True),
        sa.Column("contact", sa.String(length=255), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("wants_person", sa.Boolean(), nullable=False),
        sa.Column("subscribed", sa.Boolean(), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("notice_state", sa.String(length=8), nullable=True),
        sa.Column("notice_message_id", sa.Integer(), nullable=True),
        sa.Column("notice_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("notice_reason", sa.Text(), nullable=True),
        sa.Column("told_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["notice_message_id"], ["messages.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("incident_id", "sender_id", name="uq_incident_merchants_sender"),
    )
    op.create_index("ix_incident_merchants_notice_state", "incident_merchants", ["notice_state"])
    op.create_table(
        "incident_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sender_id", sa.String(length=255), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("region", sa.String(length=16), nullable=True),
        sa.Column("terminal_model", sa.String(length=64), nullable=True),
        sa.Column("merchant_id", sa.String(length=32), nullable=True),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_incident_reports_at", "incident_reports", ["at"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=128), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("agents") as table:
        table.add_column(sa.Column("role", sa.String(length=16), nullable=False, server_default="agent"))
    # The first run's account has run the desk so far: it keeps doing so.
    op.execute("UPDATE agents SET role = 'operator' WHERE username = 'admin'")


def downgrade() -> None:
    with op.batch_alter_table("agents") as table:
        table.drop_column("role")
    op.drop_table("audit_log")
    op.drop_index("ix_incident_reports_at", table_name="incident_reports")
    op.drop_table("incident_reports")
    op.drop_index("ix_incident_merchants_notice_state", table_name="incident_merchants")
    op.drop_table("incident_merchants")
    op.drop_index("uq_incidents_open_proposal", table_name="incidents")
    with op.batch_alter_table("incidents") as table:
        table.drop_constraint("fk_incidents_escalation_id", type_="foreignkey")
        for name in (
            "report_count",
            "proposal_key",
            "escalation_id",
            "close_note",
            "last_report_at",
            "first_report_at",
            "all_told_at",
            "posted_at",
            "ended_at",
            "scope",
        ):
            table.drop_column(name)
