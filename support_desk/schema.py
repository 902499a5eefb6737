"""The desk's tables (SQLAlchemy Core). Changes go through an alembic migration."""
from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

escalations = sa.Table(
    "escalations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("ticket", sa.String(32), nullable=False, unique=True),
    sa.Column("sender_id", sa.String(255), nullable=False, index=True),
    sa.Column("channel", sa.String(64), nullable=False),
    sa.Column("language", sa.String(8), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("priority", sa.String(16), nullable=False),
    sa.Column("merchant_id", sa.String(32)),
    sa.Column("terminal_serial", sa.String(64)),
    sa.Column("error_code", sa.String(16)),
    sa.Column("contact", sa.String(255)),
    sa.Column("summary", sa.Text),
    sa.Column("diagnostics", sa.JSON, nullable=False),
    sa.Column("claimed_by", sa.String(64)),
    sa.Column("resolution_note", sa.Text),
    sa.Column("resolution_category", sa.String(64)),
    sa.Column("expected_reply_by", sa.DateTime(timezone=True)),
    sa.Column("first_reply_at", sa.DateTime(timezone=True)),
    sa.Column("resolved_at", sa.DateTime(timezone=True)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# The conversation as the agent sees it: what the bot sent with the escalation, what
# the merchant wrote afterwards, and the agents' replies (with their delivery state).
messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "escalation_id",
        sa.Integer,
        sa.ForeignKey("escalations.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("role", sa.String(8), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("author", sa.String(64)),
    # transcript | merchant | reply | notice | closing (closing also resumes the bot)
    sa.Column("kind", sa.String(16), nullable=False),
    # Agent replies and the closing message wait here until Rasa has them.
    sa.Column("delivered_at", sa.DateTime(timezone=True)),
    sa.Column("delivery_error", sa.Text),
    # Rasa tracker event timestamp, so a merchant message is copied once.
    sa.Column("source_ts", sa.Float),
)

incidents = sa.Table(
    "incidents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("region", sa.String(64), nullable=False),
    sa.Column("message_zh", sa.Text, nullable=False),
    sa.Column("message_en", sa.Text, nullable=False),
    sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expected_end", sa.DateTime(timezone=True)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

agents = sa.Table(
    "agents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# How each guided diagnostics ended, reported by the bot (resolved / unresolved /
# known_incident), so the stats can compare bot-solved cases with escalations.
outcomes = sa.Table(
    "outcomes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("sender_id", sa.String(255), nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("fixed_step", sa.String(32)),
    sa.Column("language", sa.String(8), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
)
