"""list indexes (issue 17): keyset pages of the case lists, the stats' time ranges and
the case page's history, each read through an index on a desk with a year of cases

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
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
# The queue's search box matches substrings (upper-case ticket, merchant number, SN, and
# the contact's digits): on PostgreSQL trigram GIN indexes on exactly the expressions
# support_desk/store.py searches, when the pg_trgm extension can be created; without it
# (or on SQLite) a search reads the table. Spelled out here, not imported: a migration
# keeps the expression it built even if the store's code changes later.
_CONTACT_DIGITS = "contact"
for _separator in (" ", "-", "(", ")", ".", "+"):
    _CONTACT_DIGITS = f"replace({_CONTACT_DIGITS}, '{_separator}', '')"
TRIGRAM_INDEXES = (
    ("ix_escalations_ticket_trgm", "upper(ticket)"),
    ("ix_escalations_merchant_id_trgm", "upper(merchant_id)"),
    ("ix_escalations_terminal_serial_trgm", "upper(terminal_serial)"),
    ("ix_escalations_contact_digits_trgm", _CONTACT_DIGITS),
)


def _has_trigrams() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    try:
        with bind.begin_nested():  # a refusal (no privilege, not installed) leaves the migration going
            bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except sa.exc.DBAPIError:
        return False
    return True


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)
    for name, _ in REPLACED:
        op.drop_index(name, table_name="escalations")
    if _has_trigrams():
        for name, expression in TRIGRAM_INDEXES:
            op.execute(f"CREATE INDEX {name} ON escalations USING gin (({expression}) gin_trgm_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, _ in TRIGRAM_INDEXES:
            op.execute(f"DROP INDEX IF EXISTS {name}")
    for name, columns in REPLACED:
        op.create_index(name, "escalations", columns)
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
