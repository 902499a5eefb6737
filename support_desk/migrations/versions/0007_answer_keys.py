"""answer keys (issue 17): the server-status step's answers made comparable, so that
similar answers from merchants anywhere propose an incident

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Reports kept before this revision have no key: they still count for their region,
    # model and channel, and the proposal window (minutes) is long past them anyway.
    with op.batch_alter_table("incident_reports") as table:
        table.add_column(sa.Column("answer_key", sa.String(length=64), nullable=True))
    op.create_index("ix_incident_reports_answer_key_at", "incident_reports", ["answer_key", "at"])


def downgrade() -> None:
    op.drop_index("ix_incident_reports_answer_key_at", table_name="incident_reports")
    with op.batch_alter_table("incident_reports") as table:
        table.drop_column("answer_key")
