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
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("priority", sa.String(16), nullable=False),
    sa.Column("merchant_id", sa.String(32)),
    sa.Column("terminal_serial", sa.String(64)),
    sa.Column("error_code", sa.String(16)),
    sa.Column("contact", sa.String(255)),
    sa.Column("summary", sa.Text),
    sa.Column("diagnostics", sa.JSON, nullable=False),
    sa.Column("claimed_by", sa.String(128)),
    sa.Column("claimed_at", sa.DateTime(timezone=True)),
    sa.Column("resolution_note", sa.Text),
    sa.Column("resolution_category", sa.String(64)),
    sa.Column("expected_reply_by", sa.DateTime(timezone=True)),
    sa.Column("first_reply_at", sa.DateTime(timezone=True)),
    sa.Column("resolved_at", sa.DateTime(timezone=True)),
    sa.Column("resolved_by", sa.String(128)),
    # The merchant's 1-5 rating of the agent's help, once per resolved case.
    sa.Column("satisfaction", sa.Integer),
    sa.Column("satisfaction_at", sa.DateTime(timezone=True)),
    # The WeCom KF session as the channel reported it: "pool" (待接入池, state 2) or
    # "agent" (人工, state 3: a WeCom agent answers in the WeCom client).
    sa.Column("platform_session", sa.String(16)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # The lists page by (created_at, id) newest first (migration 0005).
    sa.Index("ix_escalations_created_at_id", "created_at", "id"),
    sa.Index("ix_escalations_status_created_at_id", "status", "created_at", "id"),
    sa.Index("ix_escalations_priority_created_at_id", "priority", "created_at", "id"),
    sa.Index("ix_escalations_merchant_id_created_at", "merchant_id", "created_at"),
    sa.Index("ix_escalations_terminal_serial_created_at", "terminal_serial", "created_at"),
    sa.Index("ix_escalations_satisfaction_at", "satisfaction_at"),
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
    sa.Column("author", sa.String(128)),
    # transcript | merchant | reply | notice | note (private, never sent) | closing and
    # handback (both resume the bot) | rating (the satisfaction question after a closing)
    # | resume (the bot takes over without a word: the WeCom session ended) | wecom_agent
    # (a WeCom agent answered in the WeCom client)
    sa.Column("kind", sa.String(16), nullable=False),
    # Buttons of a bot message (the rating question's 1-5 choices).
    sa.Column("buttons", sa.JSON),
    # Agent replies and the closing message wait here until Rasa has them.
    sa.Column("delivered_at", sa.DateTime(timezone=True)),
    sa.Column("delivery_error", sa.Text),
    # Rasa tracker event timestamp, so a merchant message is copied once (unique per
    # case: two desk processes filing the same event keep one row).
    sa.Column("source_ts", sa.Float),
    # What the merchant's channel reported (wecom_kf, wechat): "sent" or "held", its
    # reason, and the report's time (a later report wins, an older one is ignored).
    sa.Column("channel_state", sa.String(8)),
    sa.Column("channel_reason", sa.Text),
    sa.Column("channel_at", sa.Float),
    # A picture the merchant sent (``[image]`` messages).
    sa.Column("attachment_id", sa.Integer, sa.ForeignKey("attachments.id", ondelete="SET NULL")),
    sa.Index("uq_messages_escalation_source_ts", "escalation_id", "source_ts", unique=True),
)

# Known outages (issue 17): posted by an operator (``active``) or proposed by the desk
# from the merchants' reports (``proposed``, then confirmed, ``dismissed``, or ``withdrawn``
# when a confirmed incident linked its reporters), ``resolved``
# when closed. ``scope`` is {"regions", "channels", "gateways", "terminal_models"}: an
# empty list matches anyone; ``region`` is the legacy single label the bot still reads.
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
    sa.Column("scope", sa.JSON),
    sa.Column("ended_at", sa.DateTime(timezone=True)),
    # When it became active (posted, or a proposal confirmed): the stats' "first report
    # to incident posted" ends here.
    sa.Column("posted_at", sa.DateTime(timezone=True)),
    # When the last linked merchant was told that it is over.
    sa.Column("all_told_at", sa.DateTime(timezone=True)),
    sa.Column("close_note", sa.Text),
    # The incident case (ticket INC-…) that stands for every linked merchant.
    sa.Column("escalation_id", sa.Integer, sa.ForeignKey("escalations.id", ondelete="SET NULL")),
    # A proposal's evidence: which scope value ("regions:4403") or answer key
    # ("answers:连接主机超时"), how many merchants, when.
    sa.Column("proposal_key", sa.String(128)),
    sa.Column("report_count", sa.Integer),
    sa.Column("first_report_at", sa.DateTime(timezone=True)),
    sa.Column("last_report_at", sa.DateTime(timezone=True)),
    # One open proposal per scope value, also with two desk processes taking reports.
    sa.Index(
        "uq_incidents_open_proposal",
        "proposal_key",
        unique=True,
        sqlite_where=sa.text("status = 'proposed'"),
        postgresql_where=sa.text("status = 'proposed'"),
    ),
)

# The merchants linked to an incident (instead of one escalation each) and what became
# of the "it is over" message: notice_state pending → sending (committed before the Rasa
# call) → sent, or held when the channel could not send it (48-hour window).
incident_merchants = sa.Table(
    "incident_merchants",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id", ondelete="CASCADE"), nullable=False),
    sa.Column("sender_id", sa.String(255), nullable=False),
    sa.Column("channel", sa.String(64), nullable=False),
    sa.Column("language", sa.String(8), nullable=False),
    sa.Column("merchant_id", sa.String(32)),
    sa.Column("terminal_serial", sa.String(64)),
    sa.Column("terminal_model", sa.String(64)),
    sa.Column("region", sa.String(16)),
    sa.Column("contact", sa.String(255)),
    sa.Column("summary", sa.Text),
    sa.Column("wants_person", sa.Boolean, nullable=False),
    sa.Column("subscribed", sa.Boolean, nullable=False),
    sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("notice_state", sa.String(8)),
    # The notice's row in messages (on the incident case): its id is the
    # desk_message_id the channels report by.
    sa.Column("notice_message_id", sa.Integer, sa.ForeignKey("messages.id", ondelete="SET NULL")),
    sa.Column("notice_attempt_at", sa.DateTime(timezone=True)),
    sa.Column("notice_reason", sa.Text),
    sa.Column("told_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("incident_id", "sender_id", name="uq_incident_merchants_sender"),
    sa.Index("ix_incident_merchants_notice_state", "notice_state"),
)

# What the bot reports while merchants see error 1000 ("reported", "server_status_failed"):
# the evidence proposals are made of.
incident_reports = sa.Table(
    "incident_reports",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("sender_id", sa.String(255), nullable=False),
    sa.Column("channel", sa.String(64), nullable=False),
    sa.Column("language", sa.String(8), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("region", sa.String(16)),
    sa.Column("terminal_model", sa.String(64)),
    sa.Column("merchant_id", sa.String(32)),
    sa.Column("answer", sa.Text),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    # The server-status answer's key (support_desk/answer_keys.py): similar answers
    # propose an incident whatever the region, model or channel.
    sa.Column("answer_key", sa.String(64)),
    sa.Index("ix_incident_reports_answer_key_at", "answer_key", "at"),
)

# Who did what among the operators' actions (post, confirm, dismiss, close an incident).
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(128), nullable=False),
    sa.Column("detail", sa.JSON),
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
    # "agent" or "operator" (operators also post and close incidents).
    sa.Column("role", sa.String(16), nullable=False, server_default="agent"),
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
    # The merchant's 1-5 rating of the bot's help after a fixed terminal, once.
    sa.Column("rating", sa.Integer),
    sa.Column("rated_at", sa.DateTime(timezone=True)),
    sa.Index("ix_outcomes_rated_at", "rated_at"),
    sa.Index("ix_outcomes_sender_id_at", "sender_id", "at"),
)

# Every channel report the desk has taken (``POST /api/channel/reports``): a report_id
# seen before is ignored, also when the retry reaches another desk process.
channel_reports = sa.Table(
    "channel_reports",
    metadata,
    sa.Column("report_id", sa.String(128), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("sender_id", sa.String(255), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)

# Pictures merchants sent during a handoff, fetched by the channel from the platform.
attachments = sa.Table(
    "attachments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("escalation_id", sa.Integer, sa.ForeignKey("escalations.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("msgid", sa.String(128), nullable=False),
    sa.Column("content_type", sa.String(32), nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("channel", "msgid", name="uq_attachments_channel_msgid"),
)

# The NLU inbox (issue 18): what the bot probably got wrong, one row per normalised text
# (``support_desk.nlu_data.normalised``: near-duplicates share a row and a count). The
# reasons seen are flags that only ever become true; ``status`` new → labelled /
# out_of_scope / ignored by an operator; ``version`` grows with every review, so two
# operators labelling one row at once get one label and one 409.
nlu_inbox = sa.Table(
    "nlu_inbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("key", sa.String(255), nullable=False, unique=True),
    # The first text seen, card and phone numbers masked.
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("language", sa.String(8), nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
    # The bot's guess (``faq/<key>`` for the retrieval intent) and its confidence, as last seen.
    sa.Column("bot_intent", sa.String(128)),
    sa.Column("bot_confidence", sa.Float),
    sa.Column("ranking", sa.JSON),
    sa.Column("low_confidence", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("clarified", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("fallback", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("out_of_scope", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("before_handoff", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("flagged_by", sa.String(128)),
    # The button the merchant chose on the clarifying question: a label the merchant gave.
    sa.Column("suggested", sa.String(128)),
    sa.Column("status", sa.String(16), nullable=False, server_default="new"),
    sa.Column("label", sa.String(128)),
    # Labelled, but the training data has the same text already: not written again.
    sa.Column("in_training", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("reviewed_by", sa.String(128)),
    sa.Column("reviewed_at", sa.DateTime(timezone=True)),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    # The inbox pages newest first or most frequent first, per status.
    sa.Index("ix_nlu_inbox_status_last_at_id", "status", "last_at", "id"),
    sa.Index("ix_nlu_inbox_status_count_last_at_id", "status", "count", "last_at", "id"),
)

# The last few typed messages of every conversation (masked, with what NLU made of them),
# so that events arriving in later batches can be read against them: the button chosen on
# the clarifying question labels the message before it, a handoff marks the messages
# that led to it. A few rows per conversation; older than a day they are deleted.
nlu_recent = sa.Table(
    "nlu_recent",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("sender_id", sa.String(255), nullable=False),
    sa.Column("source_ts", sa.Float, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("language", sa.String(8), nullable=False),
    sa.Column("intent", sa.String(128)),
    sa.Column("confidence", sa.Float),
    sa.Column("ranking", sa.JSON),
    # The bot answered it with the clarifying question (its buttons are the next message).
    sa.Column("clarify_asked", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.UniqueConstraint("sender_id", "source_ts", name="uq_nlu_recent_sender_source_ts"),
)

# Retraining from the console (issue 18, support_desk/training.py): one row per press of
# Train. state: running → evaluating → switched | refused | failed; a switched one may
# later be rolled_back. Figures (JSON): {"zh": {"intent_macro_f1", "faq_macro_f1"}, "en":
# {...}, "stories": {"correct", "total"}} of the candidate and of the model running then.
TRAINING_ACTIVE = ("running", "evaluating")
trainings = sa.Table(
    "trainings",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    # What the job trains for; one active job per slot (the index below).
    sa.Column("slot", sa.String(32), nullable=False, server_default="model"),
    sa.Column("started_by", sa.String(128), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),  # full | finetune
    # sha256 of config.yml and domain/: a later job fine-tunes only on the same one.
    sa.Column("fingerprint", sa.String(64), nullable=False),
    # The desk process running it ("host:pid") and when it last wrote (progress).
    sa.Column("owner", sa.String(128), nullable=False),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("progress", sa.JSON),  # {"component", "epoch", "of"}
    sa.Column("candidate_model", sa.Text),  # models/candidates/… as trained
    sa.Column("served_model", sa.Text),  # the versioned copy switched in
    sa.Column("previous_model", sa.Text),  # what ran before (for the rollback)
    sa.Column("candidate_figures", sa.JSON),
    sa.Column("running_figures", sa.JSON),
    # sha256 of the held-out sets and test stories both figures were scored on.
    sa.Column("scored_on", sa.String(64)),
    sa.Column("error", sa.Text),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("rolled_back_by", sa.String(128)),
    sa.Column("rolled_back_at", sa.DateTime(timezone=True)),
    # One training at a time, also with two desk processes pressing Train together.
    sa.Index(
        "uq_trainings_active",
        "slot",
        unique=True,
        sqlite_where=sa.text("state IN ('running', 'evaluating')"),
        postgresql_where=sa.text("state IN ('running', 'evaluating')"),
    ),
    sa.Index("ix_trainings_started_at", "started_at"),
)
