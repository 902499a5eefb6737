"""trainings.scored_on: the held-out sets and test stories a job's figures were scored on
(sha256), so figures kept from an earlier job are reused only against the same sets

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trainings") as batch:
        batch.add_column(sa.Column("scored_on", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trainings") as batch:
        batch.drop_column("scored_on")
