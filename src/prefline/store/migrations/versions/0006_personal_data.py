"""personal data: user id and segment on feedback and served responses; consents

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Nullable columns: SQLite adds them without rebuilding the table; old rows have no user.
    op.add_column("feedback", sa.Column("user_id", sa.String(length=200), nullable=True))
    op.add_column("feedback", sa.Column("segment", sa.JSON(), nullable=True))
    op.create_index("ix_feedback_user_id", "feedback", ["user_id"], unique=False)
    op.add_column("served_responses", sa.Column("segment_attrs", sa.JSON(), nullable=True))
    op.create_table(
        "consents",
        sa.Column("id", PK, autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=200), nullable=False),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_consents_user_id", "consents", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_consents_user_id", table_name="consents")
    op.drop_table("consents")
    # Plain DROP COLUMN (SQLite >= 3.35): a batch rebuild would rewrite feedback's inline
    # foreign keys as table constraints, which 0004's downgrade then cannot drop.
    op.drop_column("served_responses", "segment_attrs")
    op.drop_index("ix_feedback_user_id", table_name="feedback")
    op.drop_column("feedback", "segment")
    op.drop_column("feedback", "user_id")
