"""list indexes (issue 17): keyset pages of the case lists, the stats' time ranges and
the case page's history, each read through an index on a desk with a year of cases

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# name, table, columns. The lists page by (created_at, id) newest first, after an
# optional status or priority filter; the composite indexes replace the single-column
# ones on created_at and status, which they start with.
INDEXES = (
    ("ix_escalations_created_at_id", "escalations", ["created_at", "id"]),
    ("ix_escalations_status_created_at_id", "escalations", ["status", "created_at", "id"]),
    ("ix_escalations_priority_created_at_id", "escalations", ["priority", "created_at", "id"]),
    # Earlier cases of a merchant or terminal, and the repeat flag's window per SN.
    ("ix_escalations_merchant_id_created_at", "escalations", ["merchant_id", "created_at"]),
    ("ix_escalations_terminal_serial_created_at", "escalations", ["terminal_serial", "created_at"]),
    # The stats' rating averages over a period.
    ("ix_escalations_satisfaction_at", "escalations", ["satisfaction_at"]),
    ("ix_outcomes_rated_at", "outcomes", ["rated_at"]),
    # A conversation's diagnostics runs on the case page.
    ("ix_outcomes_sender_id_at", "outcomes", ["sender_id", "at"]),
)
REPLACED = (("ix_escalations_created_at", ["created_at"]), ("ix_escalations_status", ["status"]))


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)
    for name, _ in REPLACED:
        op.drop_index(name, table_name="escalations")


def downgrade() -> None:
    for name, columns in REPLACED:
        op.create_index(name, "escalations", columns)
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
