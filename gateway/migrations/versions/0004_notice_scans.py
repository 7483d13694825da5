"""scheduled notice scans: scan runs, demo billing balances and package expiry

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 15:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import common.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "demo_billing_account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("balance", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("points_expire_on", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_demo_billing_account")),
        sa.UniqueConstraint("phone", name=op.f("uq_demo_billing_account_phone")),
    )
    op.create_table(
        "notice_scan_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scan", sa.String(length=64), nullable=False),
        sa.Column("run_on", sa.Date(), nullable=False),
        sa.Column("started_at", common.db.UTCDateTime(), nullable=False),
        sa.Column("finished_at", common.db.UTCDateTime(), nullable=True),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=300), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notice_scan_run")),
        sa.UniqueConstraint("scan", "run_on", name=op.f("uq_notice_scan_run_scan_run_on")),
    )
    with op.batch_alter_table("demo_billing_package", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_on", sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("demo_billing_package", schema=None) as batch_op:
        batch_op.drop_column("expires_on")
    op.drop_table("notice_scan_run")
    op.drop_table("demo_billing_account")
