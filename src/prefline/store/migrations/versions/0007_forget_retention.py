"""forget and retention: contains_forgotten_data on snapshots and artifacts; audit-log
rows may be redacted (never deleted)

- ``snapshots.contains_forgotten_data``, ``artifacts.contains_forgotten_data`` (NOT NULL,
  default false): set by ``prefline users forget`` and ``prefline store prune`` on every
  snapshot that lost items and every artifact built from one, transitively.
- ``audit_log.redacted_at``: the audit log stays append-only for DELETE; an UPDATE is
  allowed only when it sets ``redacted_at`` and keeps ``id``, ``action`` and
  ``created_at``, so forgetting a user can blank their id out of old rows (``user:alice``)
  without erasing that something happened.

Added columns only: SQLite needs no table rebuild.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_FLAGGED = ("snapshots", "artifacts")
_REDACTION = ("NEW.redacted_at IS NOT NULL AND NEW.id = OLD.id AND NEW.action = OLD.action "
              "AND NEW.created_at = OLD.created_at")


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    for table in _FLAGGED:
        op.add_column(table, sa.Column("contains_forgotten_data", sa.Boolean(), nullable=False,
                                       server_default=sa.false()))
    op.add_column("audit_log", sa.Column("redacted_at", sa.DateTime(), nullable=True))
    if _sqlite():
        op.execute("DROP TRIGGER audit_log_no_update")
        op.execute("CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
                   f"WHEN NOT ({_REDACTION}) BEGIN SELECT RAISE(ABORT, 'audit_log is "
                   "append-only (an update may only redact a row)'); END")
    else:
        op.execute(
            "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$ BEGIN "
            f"IF TG_OP = 'UPDATE' AND {_REDACTION} THEN RETURN NEW; END IF; "
            "RAISE EXCEPTION 'audit_log is append-only (an update may only redact a row)'; "
            "END; $$ LANGUAGE plpgsql")


def downgrade() -> None:
    """Back to 0001's triggers (no UPDATE at all); redacted rows stay redacted."""
    if _sqlite():
        # The trigger names redacted_at: it must go before the column can.
        op.execute("DROP TRIGGER audit_log_no_update")
        op.execute("ALTER TABLE audit_log DROP COLUMN redacted_at")
        op.execute("CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
                   "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END")
        for table in _FLAGGED:
            op.execute(f"ALTER TABLE {table} DROP COLUMN contains_forgotten_data")
        return
    op.execute(
        "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$ BEGIN "
        "RAISE EXCEPTION 'audit_log is append-only'; END; $$ LANGUAGE plpgsql")
    op.drop_column("audit_log", "redacted_at")
    for table in _FLAGGED:
        op.drop_column(table, "contains_forgotten_data")
