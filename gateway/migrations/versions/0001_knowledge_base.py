"""knowledge base

Revision ID: 0001
Revises:
Create Date: 2026-11-22 07:39:39.452571
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import common.db

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "kb_entry",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=32), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("agent_note", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("audience", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("valid_from", common.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("valid_to", common.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", common.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", common.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_entry")),
        sa.UniqueConstraint("external_id", name=op.f("uq_kb_entry_external_id")),
    )
    with op.batch_alter_table("kb_entry", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_kb_entry_category"), ["category"], unique=False)
        batch_op.create_index(batch_op.f("ix_kb_entry_status"), ["status"], unique=False)

    op.create_table(
        "kb_audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=True),
        sa.Column("external_id", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("at", common.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["kb_entry.id"], name=op.f("fk_kb_audit_log_entry_id_kb_entry"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_audit_log")),
    )
    with op.batch_alter_table("kb_audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_kb_audit_log_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_kb_audit_log_entry_id"), ["entry_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_kb_audit_log_external_id"), ["external_id"], unique=False)

    op.create_table(
        "kb_entry_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", common.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["kb_entry.id"], name=op.f("fk_kb_entry_version_entry_id_kb_entry"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_entry_version")),
        sa.UniqueConstraint("entry_id", "version", name=op.f("uq_kb_entry_version_entry_id_version")),
    )
    with op.batch_alter_table("kb_entry_version", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_kb_entry_version_entry_id"), ["entry_id"], unique=False)

    op.create_table(
        "kb_similar_question",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("text", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["kb_entry.id"], name=op.f("fk_kb_similar_question_entry_id_kb_entry"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_similar_question")),
        sa.UniqueConstraint("entry_id", "position", name=op.f("uq_kb_similar_question_entry_id_position")),
    )
    with op.batch_alter_table("kb_similar_question", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_kb_similar_question_entry_id"), ["entry_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("kb_similar_question", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_kb_similar_question_entry_id"))

    op.drop_table("kb_similar_question")
    with op.batch_alter_table("kb_entry_version", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_kb_entry_version_entry_id"))

    op.drop_table("kb_entry_version")
    with op.batch_alter_table("kb_audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_kb_audit_log_external_id"))
        batch_op.drop_index(batch_op.f("ix_kb_audit_log_entry_id"))
        batch_op.drop_index(batch_op.f("ix_kb_audit_log_at"))

    op.drop_table("kb_audit_log")
    with op.batch_alter_table("kb_entry", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_kb_entry_status"))
        batch_op.drop_index(batch_op.f("ix_kb_entry_category"))

    op.drop_table("kb_entry")
