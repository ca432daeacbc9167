"""Index orders by creation time: recent orders, and the newest order a restore
drill or a restore compares with the live database.

Revision ID: 0002_orders_created_at
Revises: 0001_initial
Create Date: 2026-12-07

Phase: expand. Built CONCURRENTLY (outside the migration's transaction), so
orders keep being written while it builds.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002_orders_created_at"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_orders_created_at",
            "orders",
            ["created_at"],
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_orders_created_at", "orders", postgresql_concurrently=True, if_exists=True
        )
