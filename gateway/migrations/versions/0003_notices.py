"""proactive notices, business events, demo billing

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 12:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import common.db

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "business_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("customer", sa.JSON(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("urgent", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.String(length=200), nullable=False),
        sa.Column("received_at", common.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_business_event")),
        sa.UniqueConstraint("key", name=op.f("uq_business_event_key")),
    )
    op.create_table(
        "demo_billing_package",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("package", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("closed_at", common.db.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_demo_billing_package")),
    )
    with op.batch_alter_table("demo_billing_package", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_demo_billing_package_phone"), ["phone"], unique=False)
    op.create_table(
        "notice",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("dedup_key", sa.String(length=160), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=128), nullable=False),
        sa.Column("kb_entry_id", sa.String(length=32), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("asks_decision", sa.Boolean(), nullable=False),
        sa.Column("action", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", common.db.UTCDateTime(), nullable=False),
        sa.Column("last_error", sa.String(length=300), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("conversation_id", sa.Integer(), nullable=True),
        sa.Column("created_at", common.db.UTCDateTime(), nullable=False),
        sa.Column("sent_at", common.db.UTCDateTime(), nullable=True),
        sa.Column("decided_at", common.db.UTCDateTime(), nullable=True),
        sa.Column("expires_at", common.db.UTCDateTime(), nullable=True),
        sa.Column("action_result", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contact.id"], name=op.f("fk_notice_contact_id_contact"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversation.id"],
            name=op.f("fk_notice_conversation_id_conversation"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["event_id"], ["business_event.id"], name=op.f("fk_notice_event_id_business_event"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["message_id"], ["message.id"], name=op.f("fk_notice_message_id_message"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notice")),
        sa.UniqueConstraint("token", name=op.f("uq_notice_token")),
    )
    with op.batch_alter_table("notice", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notice_contact_id"), ["contact_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_notice_conversation_id"), ["conversation_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_notice_dedup_key"), ["dedup_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_notice_event_id"), ["event_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_notice_next_attempt_at"), ["next_attempt_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_notice_status"), ["status"], unique=False)


def downgrade() -> None:
    op.drop_table("notice")
    op.drop_table("demo_billing_package")
    op.drop_table("business_event")
