"""rollout: feature flags (arms of a served model) and the log of served responses

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rollout_flags",
        sa.Column("id", PK, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("production_id", PK, nullable=True),
        sa.Column("candidate_id", PK, nullable=True),
        sa.Column("previous_id", PK, nullable=True),
        sa.Column("percent", sa.Float(), nullable=False),
        sa.Column("allow_segments", sa.JSON(), nullable=False),
        sa.Column("deny_segments", sa.JSON(), nullable=False),
        sa.Column("guardrails", sa.JSON(), nullable=False),
        sa.Column("canary_started_at", sa.DateTime(), nullable=True),
        sa.Column("updated_by", sa.String(length=200), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["production_id"], ["artifacts.id"]),
        sa.ForeignKeyConstraint(["candidate_id"], ["artifacts.id"]),
        sa.ForeignKeyConstraint(["previous_id"], ["artifacts.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "served_responses",
        sa.Column("id", PK, autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("response_id", PK, nullable=True),
        sa.Column("artifact_id", PK, nullable=False),
        sa.Column("model_version", sa.String(length=200), nullable=False),
        sa.Column("flag", sa.String(length=100), nullable=False),
        sa.Column("arm", sa.String(length=20), nullable=False),
        sa.Column("user_hash", sa.String(length=64), nullable=False),
        sa.Column("segment", sa.String(length=100), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["response_id"], ["responses.id"]),
        sa.ForeignKeyConstraint(["artifact_id"], ["artifacts.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_id"),
    )
    for col in ("response_id", "artifact_id", "flag", "created_at"):
        op.create_index(f"ix_served_responses_{col}", "served_responses", [col], unique=False)


def downgrade() -> None:
    for col in ("created_at", "flag", "artifact_id", "response_id"):
        op.drop_index(f"ix_served_responses_{col}", table_name="served_responses")
    op.drop_table("served_responses")
    op.drop_table("rollout_flags")
