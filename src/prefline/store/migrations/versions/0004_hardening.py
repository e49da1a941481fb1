"""hardening: API idempotency scoped by key id, body hashes, label supersession, skip reasons,
unique snapshot names with aliases

- ``feedback.api_key_id`` (FK api_keys) + ``feedback.api_idempotency_key``, unique together:
  an API client's key is scoped by its API key's id. Before, API rows kept
  ``"<key name>/<client key>"`` in the global ``idempotency_key``, so key ``a/b`` + ``c`` and
  key ``a`` + ``b/c`` collided. Existing API rows move over (their ``source`` is
  ``api:<key name>``, which says where the key name ends), and their ``idempotency_key``
  becomes NULL; imports, judges and the UI keep using ``idempotency_key``.
- ``feedback.body_hash``: the event as sent, so a retry with another body is a 409 (NULL on
  old rows: they are not checked).
- ``feedback.supersedes_id`` (FK feedback): an annotator's undo/edit is a new row pointing at
  the one it replaces; ``assignments.skip_reason``: why an item was skipped.
- ``snapshot_names``: unique names, several per snapshot allowed. Existing names move over;
  where one name was used twice, the newest snapshot keeps it (what lookups picked before).

Every change is an added column, index or table, so SQLite needs no table rebuild (a rebuild
of ``feedback`` would drop it, and with foreign keys on that fails while assignments point at
its rows); the downgrade drops them with plain ``ALTER TABLE ... DROP COLUMN``.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# (table, column, type, referenced "table (column)" or None)
_COLUMNS = (
    ("feedback", "api_key_id", PK, "api_keys (id)"),
    ("feedback", "api_idempotency_key", sa.String(length=200), None),
    ("feedback", "body_hash", sa.String(length=64), None),
    ("feedback", "supersedes_id", PK, "feedback (id)"),
    ("assignments", "skip_reason", sa.Text(), None),
)
_INDEXES = (
    ("ix_feedback_api_key_id", ["api_key_id"], False),
    ("ix_feedback_supersedes_id", ["supersedes_id"], False),
    ("uq_feedback_api_idempotency", ["api_key_id", "api_idempotency_key"], True),
)


def _add_column(table: str, name: str, type_: sa.types.TypeEngine, ref: str | None) -> None:
    if ref is not None and op.get_bind().dialect.name == "sqlite":
        # ADD COLUMN ... REFERENCES is plain SQLite: no table rebuild (see the docstring).
        op.execute(f"ALTER TABLE {table} ADD COLUMN {name} INTEGER REFERENCES {ref}")
        return
    op.add_column(table, sa.Column(name, type_, nullable=True))
    if ref is not None:
        target, column = ref.replace(")", "").split(" (")
        op.create_foreign_key(f"{table}_{name}_fkey", table, target, [name], [column])


def upgrade() -> None:
    for table, name, type_, ref in _COLUMNS:
        _add_column(table, name, type_, ref)
    for index, columns, unique in _INDEXES:
        op.create_index(index, "feedback", columns, unique=unique)
    # API rows: source 'api:<name>' and idempotency_key '<name>/<client key>'.
    op.execute(
        "UPDATE feedback SET api_key_id = (SELECT k.id FROM api_keys k "
        "WHERE feedback.source = 'api:' || k.name) WHERE source LIKE 'api:%'")
    op.execute(
        "UPDATE feedback SET api_idempotency_key = substr(idempotency_key, length(source) - 2), "
        "idempotency_key = NULL WHERE api_key_id IS NOT NULL AND idempotency_key IS NOT NULL "
        "AND substr(idempotency_key, 1, length(source) - 3) = substr(source, 5) || '/'")
    _create_snapshot_names()


def _create_snapshot_names() -> None:
    op.create_table(
        "snapshot_names",
        sa.Column("id", PK, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("snapshot_id", PK, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["snapshot_id"], ["snapshots.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_index("ix_snapshot_names_snapshot_id", "snapshot_names", ["snapshot_id"])
    op.execute(
        "INSERT INTO snapshot_names (name, snapshot_id, created_at) "
        "SELECT s.name, s.id, s.created_at FROM snapshots s WHERE s.name IS NOT NULL "
        "AND s.id = (SELECT max(t.id) FROM snapshots t WHERE t.name = s.name)")


def downgrade() -> None:
    """Lossy: supersession links, skip reasons, body hashes and aliases go; API keys go back
    into the joined ``idempotency_key`` (their old, collision-prone form)."""
    # Two keys can now map to one joined string: the first row keeps it, later ones get NULL.
    joined = "substr({t}.source, 5) || '/' || {t}.api_idempotency_key"
    op.execute(
        f"UPDATE feedback SET idempotency_key = {joined.format(t='feedback')} "
        "WHERE api_idempotency_key IS NOT NULL AND source LIKE 'api:%' AND feedback.id = "
        f"(SELECT min(f2.id) FROM feedback f2 WHERE f2.source LIKE 'api:%' AND "
        f"{joined.format(t='f2')} = {joined.format(t='feedback')})")
    op.drop_index("ix_snapshot_names_snapshot_id", table_name="snapshot_names")
    op.drop_table("snapshot_names")
    for index, _, _ in reversed(_INDEXES):
        op.drop_index(index, table_name="feedback")
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, name, _, _ in reversed(_COLUMNS):
        if sqlite:  # plain DROP COLUMN: no rebuild of a table others point at
            op.execute(f"ALTER TABLE {table} DROP COLUMN {name}")
        else:
            op.drop_column(table, name)
