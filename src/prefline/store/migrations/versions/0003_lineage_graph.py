"""lineage graph: artifact_inputs replaces artifacts.parent_id and artifacts.snapshot_id

An artifact now has any number of typed inputs. Existing rows move over as:
- ``artifacts.snapshot_id`` → an input with role ``snapshot`` (position 0);
- ``artifacts.parent_id`` → an input with role ``parent`` (after the snapshot). The old
  column never said *what* the parent was to the child (the demo stored a reward model as a
  policy's parent), so the migration does not guess a typed role; ``parent`` is the
  generic role kept in ``INPUT_ROLES`` for these rows.
``artifacts.snapshot_hash`` stays: it is the training data's fingerprint, for files too.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

INPUTS = sa.table(
    "artifact_inputs", sa.column("artifact_id"), sa.column("role"),
    sa.column("input_artifact_id"), sa.column("snapshot_id"), sa.column("position"),
)


def upgrade() -> None:
    # Read the old links first: on SQLite dropping a column rebuilds ``artifacts`` (DROP TABLE
    # + rename), and with foreign keys on, that DROP would cascade into artifact_inputs rows
    # inserted before it. So: read, drop the columns, then create and fill the new table.
    old = sa.table("artifacts", sa.column("id"), sa.column("snapshot_id"),
                   sa.column("parent_id"))
    conn = op.get_bind()
    links = conn.execute(sa.select(old.c.id, old.c.snapshot_id, old.c.parent_id).where(
        (old.c.snapshot_id.isnot(None)) | (old.c.parent_id.isnot(None))).order_by(old.c.id)).all()
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_column("parent_id")
        batch_op.drop_column("snapshot_id")
    _create_inputs_table()
    rows = _input_rows(links)
    if rows:
        op.bulk_insert(INPUTS, rows)


def _input_rows(links: Sequence[Any]) -> list[dict[str, Any]]:
    rows = []
    for art_id, snapshot_id, parent_id in links:
        position = 0
        if snapshot_id is not None:
            rows.append({"artifact_id": art_id, "role": "snapshot", "input_artifact_id": None,
                         "snapshot_id": snapshot_id, "position": position})
            position += 1
        if parent_id is not None:
            rows.append({"artifact_id": art_id, "role": "parent", "input_artifact_id": parent_id,
                         "snapshot_id": None, "position": position})
    return rows


def _create_inputs_table() -> None:
    op.create_table(
        "artifact_inputs",
        sa.Column("id", PK, autoincrement=True, nullable=False),
        sa.Column("artifact_id", PK, nullable=False),
        sa.Column("role", sa.String(length=40), nullable=False),
        sa.Column("input_artifact_id", PK, nullable=True),
        sa.Column("snapshot_id", PK, nullable=True),
        sa.Column("ref", sa.Text(), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["artifact_id"], ["artifacts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["input_artifact_id"], ["artifacts.id"]),
        sa.ForeignKeyConstraint(["snapshot_id"], ["snapshots.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("artifact_id", "position"),
    )
    with op.batch_alter_table("artifact_inputs", schema=None) as batch_op:
        for column in ("artifact_id", "input_artifact_id", "snapshot_id"):
            batch_op.create_index(batch_op.f(f"ix_artifact_inputs_{column}"), [column],
                                  unique=False)


def downgrade() -> None:
    """Lossy by nature: keeps the first snapshot input and the first artifact input."""
    if op.get_bind().dialect.name == "sqlite":
        # ADD COLUMN ... REFERENCES is plain SQLite and avoids a table rebuild (see upgrade).
        op.execute("ALTER TABLE artifacts ADD COLUMN snapshot_id INTEGER REFERENCES snapshots (id)")
        op.execute("ALTER TABLE artifacts ADD COLUMN parent_id INTEGER REFERENCES artifacts (id)")
    else:
        op.add_column("artifacts", sa.Column("snapshot_id", PK, nullable=True))
        op.add_column("artifacts", sa.Column("parent_id", PK, nullable=True))
        op.create_foreign_key("artifacts_snapshot_id_fkey", "artifacts", "snapshots",
                              ["snapshot_id"], ["id"])
        op.create_foreign_key("artifacts_parent_id_fkey", "artifacts", "artifacts",
                              ["parent_id"], ["id"])
    op.execute(
        "UPDATE artifacts SET "
        "snapshot_id = (SELECT i.snapshot_id FROM artifact_inputs i WHERE i.artifact_id = "
        "artifacts.id AND i.snapshot_id IS NOT NULL ORDER BY i.position LIMIT 1), "
        "parent_id = (SELECT i.input_artifact_id FROM artifact_inputs i WHERE i.artifact_id = "
        "artifacts.id AND i.input_artifact_id IS NOT NULL ORDER BY i.position LIMIT 1)"
    )
    with op.batch_alter_table("artifact_inputs", schema=None) as batch_op:
        for column in ("snapshot_id", "input_artifact_id", "artifact_id"):
            batch_op.drop_index(batch_op.f(f"ix_artifact_inputs_{column}"))
    op.drop_table("artifact_inputs")
