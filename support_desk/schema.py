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
    sa.Column("claimed_at", sa.DateTime(timezone=True)),
    sa.Column("resolution_note", sa.Text),
    sa.Column("resolution_category", sa.String(64)),
    sa.Column("expected_reply_by", sa.DateTime(timezone=True)),
    sa.Column("first_reply_at", sa.DateTime(timezone=True)),
    sa.Column("resolved_at", sa.DateTime(timezone=True)),
    sa.Column("resolved_by", sa.String(64)),
    # The merchant's 1-5 rating of the agent's help, once per resolved case.
    sa.Column("satisfaction", sa.Integer),
    sa.Column("satisfaction_at", sa.DateTime(timezone=True)),
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
    # transcript | merchant | reply | notice | note (private, never sent) | closing and
    # handback (both resume the bot) | rating (the satisfaction question after a closing)
    sa.Column("kind", sa.String(16), nullable=False),
    # Buttons of a bot message (the rating question's 1-5 choices).
    sa.Column("buttons", sa.JSON),
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
    # The name the merchant sees ("客服小王"); the username when not set.
    sa.Column("display_name", sa.String(64)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# Replies agents wrote once to pick with "/" in the reply box (per merchant language).
canned_replies = sa.Table(
    "canned_replies",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("language", sa.String(8), nullable=False),
    sa.Column("title", sa.String(80), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False),
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
